-- Retention (B15): the purger deletes each kind of history by age, a few
-- hundred rows a statement. Without its age column indexed every batch would
-- read the whole table.
CREATE INDEX IF NOT EXISTS events_created_at ON events (created_at);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS callback_log_received_at ON callback_log (received_at);
-- ended jobs by state and end; partial, so no claim or queue figure (which
-- never name finished_at) can choose it
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;
-- imports that ended, whose items may go
CREATE INDEX IF NOT EXISTS imports_ended ON imports (finished_at) WHERE finished_at IS NOT NULL;
