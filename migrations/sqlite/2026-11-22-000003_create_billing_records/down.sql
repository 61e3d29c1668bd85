DROP TABLE billing_users;
DROP TABLE billing_systems;
DROP TABLE billing_sites;
DROP TABLE billing_customers;
