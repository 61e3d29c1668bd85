-- Coalescing covers queued jobs only. A job that is already running read its
-- inputs when it started; a change made while it runs needs a job of its own,
-- queued beside it, or the later values would never be acted on. A queued job
-- is not claimed while another job of its key runs (see claim_job), so the
-- jobs of one key still run one after the other.

DROP INDEX jobs_unfinished_unique_key;

-- at most one queued job per key and dealer; enqueue relies on it to coalesce
CREATE UNIQUE INDEX jobs_queued_unique_key ON jobs (dealer, unique_key)
    WHERE unique_key IS NOT NULL AND state = 'queued';

-- is a job of this key running? (claims hold a queued job back while one is)
CREATE INDEX jobs_running_by_key ON jobs (dealer, unique_key)
    WHERE unique_key IS NOT NULL AND state = 'running';
