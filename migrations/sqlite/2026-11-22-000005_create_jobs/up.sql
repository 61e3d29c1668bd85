-- The durable job queue: work that outlives a request, claimed by workers with
-- a lease (on SQLite, one writer at a time claims).

CREATE TABLE jobs (
    -- uuid v7: id order is creation order
    id               TEXT    NOT NULL PRIMARY KEY,
    dealer           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    -- JSON
    payload          TEXT    NOT NULL,
    -- queued, running, succeeded, failed, cancelled, dead
    state            TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL,
    max_attempts     BIGINT  NOT NULL,
    run_at           TEXT    NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    progress_done    BIGINT  NOT NULL,
    progress_total   BIGINT,
    -- JSON
    summary          TEXT,
    last_error       TEXT,
    unique_key       TEXT,
    -- a running job asked to stop: its next progress report answers false
    cancel_requested BOOLEAN NOT NULL,
    created_by       TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);

-- finding due jobs
CREATE INDEX jobs_state_run_at ON jobs (state, run_at);
-- newest-first keyset paging of one dealer's jobs
CREATE INDEX jobs_dealer_id ON jobs (dealer, id);
-- at most one unfinished job per key and dealer; enqueue relies on it to coalesce
CREATE UNIQUE INDEX jobs_unfinished_unique_key ON jobs (dealer, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
