-- Automatic migration (S20). migrate_on_connect: take over the billing ids
-- already in Stages when the connection first works; the service writes it on
-- every new connection (default on). Connections made before this existed had
-- their first working credentials already, so they start with it off.
-- migration_job_id: the reconcile queued as the migration (its state is the
-- job's); set at most once, in the transaction that queues it, unless that
-- job failed.
ALTER TABLE connections ADD COLUMN migrate_on_connect BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE connections ADD COLUMN migration_job_id TEXT;
