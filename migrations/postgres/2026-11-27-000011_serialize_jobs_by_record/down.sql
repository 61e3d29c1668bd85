DROP INDEX jobs_running_serial_key;
ALTER TABLE jobs DROP COLUMN serial_key;
