-- The durable job queue: work that outlives a request, claimed by workers of
-- any replica with a lease (FOR UPDATE SKIP LOCKED).

CREATE TABLE jobs (
    -- uuid v7: id order is creation order
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    dealer           TEXT      NOT NULL,
    kind             TEXT      NOT NULL,
    -- JSON
    payload          TEXT      NOT NULL,
    -- queued, running, succeeded, failed, cancelled, dead
    state            TEXT      NOT NULL,
    attempts         BIGINT    NOT NULL,
    max_attempts     BIGINT    NOT NULL,
    run_at           TIMESTAMP NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMP,
    progress_done    BIGINT    NOT NULL,
    progress_total   BIGINT,
    -- JSON
    summary          TEXT,
    last_error       TEXT,
    unique_key       TEXT,
    -- a running job asked to stop: its next progress report answers false
    cancel_requested BOOLEAN   NOT NULL,
    created_by       TEXT      NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    started_at       TIMESTAMP,
    finished_at      TIMESTAMP
);

-- finding due jobs
CREATE INDEX jobs_state_run_at ON jobs (state, run_at);
-- newest-first keyset paging of one dealer's jobs
CREATE INDEX jobs_dealer_id ON jobs (dealer, id);
-- at most one unfinished job per key and dealer; enqueue relies on it to coalesce
CREATE UNIQUE INDEX jobs_unfinished_unique_key ON jobs (dealer, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
