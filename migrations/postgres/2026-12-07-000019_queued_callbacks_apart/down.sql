DROP INDEX IF EXISTS jobs_queued_but_callbacks;
DROP INDEX IF EXISTS jobs_queued_callbacks;
