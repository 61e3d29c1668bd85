-- The indexes PostgreSQL gets in this migration, where SQLite can have them:
-- secondary indexes led by the record a lookup names, and indexes that serve
-- a lookup's filter and its order together. SQLite cannot reorder the unique
-- constraints of a table in place, and needs no reorder: its planner prefers
-- the index that matches the most equalities, the unique one.

-- the links of one record, by either side, in id order: the list's billing_id
-- and external_id filters page through them without reading the dealer's
-- other links; links of a billing record (delete checks, Auto Sync) check the
-- kind on the few rows of one billing id
CREATE INDEX links_billing ON links (billing_id, dealer, id);
CREATE INDEX links_external ON links (external_id, dealer, id);
DROP INDEX links_dealer_billing;

-- forgetting the unlinks of a record linked again, from its external side
DROP INDEX deliberate_unlinks_external;
CREATE INDEX deliberate_unlinks_external ON deliberate_unlinks (external_id, connection_id, kind);
-- (the deliberate unlinks of one connection keep the primary key, which
-- leads with the connection here)

-- the sites of a customer, in id order (delete checks name the first few)
DROP INDEX billing_sites_customer;
CREATE INDEX billing_sites_customer ON billing_sites (customer_id, dealer, id);

-- the systems of a site, in id order
DROP INDEX billing_systems_site;
CREATE INDEX billing_systems_site ON billing_systems (site_id, dealer, id);
