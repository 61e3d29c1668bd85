DROP INDEX jobs_running_by_dealer;
DROP INDEX jobs_queued_by_dealer;
