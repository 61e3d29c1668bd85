-- Indexes led by the record a lookup names rather than by the dealer or the
-- connection, so the planner has no wrong index to choose, and indexes that
-- serve a lookup's filter and its order together.
--
-- Without statistics (autovacuum off, no ANALYZE) PostgreSQL takes every
-- equality to keep 0.5% of the rows. An index whose leading columns are the
-- dealer, or the connection and kind, then looks as selective as the primary
-- key or the unique constraint a lookup is meant to use, and ties are settled
-- by a hair of cost: a billing upsert's primary-key lookup read all of the
-- dealer's sites through billing_sites_customer, and each link insert read all
-- links of its connection through the other side's unique constraint.
-- Generic plans, cached by prepared statements while a table is small, made it
-- worse; the store now plans every execution (see db::PostgresSetup).

-- one link per record on each side (S6), led by the record: lookups of either
-- side, one record or a list, go to their own constraint
ALTER TABLE links
    DROP CONSTRAINT links_billing_key,
    DROP CONSTRAINT links_external_key,
    ADD CONSTRAINT links_billing_key UNIQUE (billing_id, connection_id, kind),
    ADD CONSTRAINT links_external_key UNIQUE (external_id, connection_id, kind);

-- the links of one record, by either side, in id order: the list's billing_id
-- and external_id filters page through them without reading the dealer's
-- other links; links of a billing record (delete checks, Auto Sync) check the
-- kind on the few rows of one billing id
CREATE INDEX links_billing ON links (billing_id, dealer, id);
CREATE INDEX links_external ON links (external_id, dealer, id);
DROP INDEX links_dealer_billing;

-- the deliberate unlinks of a record, from either side (forgotten when it is
-- linked again), led by the record for the same reason
ALTER TABLE deliberate_unlinks
    DROP CONSTRAINT deliberate_unlinks_pkey,
    ADD PRIMARY KEY (billing_id, connection_id, kind, external_id);
DROP INDEX deliberate_unlinks_external;
CREATE INDEX deliberate_unlinks_external ON deliberate_unlinks (external_id, connection_id, kind);
-- the deliberate unlinks of one connection (reconcile skips them), among the
-- dealer's: an index that has the connection in it at all would be scanned
-- for the connection alone when a record is forgotten
CREATE INDEX deliberate_unlinks_dealer ON deliberate_unlinks (dealer);

-- the sites of a customer, in id order (delete checks name the first few)
DROP INDEX billing_sites_customer;
CREATE INDEX billing_sites_customer ON billing_sites (customer_id, dealer, id);

-- the systems of a site, in id order
DROP INDEX billing_systems_site;
CREATE INDEX billing_systems_site ON billing_systems (site_id, dealer, id);
