-- A claim walks the queued jobs dealer by dealer and counts each dealer's
-- running jobs (B15): both read an index, however long one dealer's queue.
CREATE INDEX IF NOT EXISTS jobs_queued_by_dealer ON jobs (dealer, run_at, id) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_running_by_dealer ON jobs (dealer) WHERE state = 'running';
