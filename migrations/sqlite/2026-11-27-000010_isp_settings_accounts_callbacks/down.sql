DROP TABLE callback_log;
DROP TABLE isp_accounts;
ALTER TABLE connections DROP COLUMN settings;
