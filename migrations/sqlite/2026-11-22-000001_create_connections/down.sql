DROP TABLE inbound_credentials;
DROP TABLE credentials;
DROP TABLE connections;
