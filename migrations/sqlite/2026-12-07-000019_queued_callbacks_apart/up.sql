-- A claim with no room left for Stages callbacks walks the queued jobs of
-- the other kinds: through the index of all queued jobs it stepped over
-- every queued callback to find them (22 ms a claim at 42,000 queued, a
-- burst of callbacks).
CREATE INDEX IF NOT EXISTS jobs_queued_but_callbacks ON jobs (dealer, run_at, id)
    WHERE state = 'queued' AND kind <> 'stages_callback';
-- And one with room for a few callbacks reads a few of them, not as many as
-- its batch could take of every kind.
CREATE INDEX IF NOT EXISTS jobs_queued_callbacks ON jobs (dealer, run_at, id)
    WHERE state = 'queued' AND kind = 'stages_callback';
