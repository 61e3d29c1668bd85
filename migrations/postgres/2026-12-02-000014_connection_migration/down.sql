ALTER TABLE connections DROP COLUMN migration_job_id;
ALTER TABLE connections DROP COLUMN migrate_on_connect;
