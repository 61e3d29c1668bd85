DROP TABLE audit_log;
DROP TABLE deliberate_unlinks;
DROP TABLE links;
