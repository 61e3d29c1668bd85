DROP INDEX jobs_running_by_key;
DROP INDEX jobs_queued_unique_key;

CREATE UNIQUE INDEX jobs_unfinished_unique_key ON jobs (dealer, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
