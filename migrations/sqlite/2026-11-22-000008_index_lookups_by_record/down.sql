DROP INDEX billing_systems_site;
CREATE INDEX billing_systems_site ON billing_systems (dealer, site_id, id);

DROP INDEX billing_sites_customer;
CREATE INDEX billing_sites_customer ON billing_sites (dealer, customer_id);

DROP INDEX deliberate_unlinks_external;
CREATE INDEX deliberate_unlinks_external ON deliberate_unlinks (connection_id, kind, external_id);

CREATE INDEX links_dealer_billing ON links (dealer, kind, billing_id);
DROP INDEX links_external;
DROP INDEX links_billing;
