-- A new job wakes every replica's runners (LISTEN crosslink_jobs) through
-- the insert itself. The enqueue used to send NOTIFY as a statement of its
-- own: one more round trip for each billing edit and each callback. A row
-- trigger fires only for a row inserted, not for an insert that coalesced
-- into a queued job (ON CONFLICT DO NOTHING), and PostgreSQL delivers one
-- notification per channel and payload per transaction, at commit. The
-- payload names the schema, so deployments (or tests) sharing a database can
-- tell their announcements apart; the runners only need to wake.
CREATE FUNCTION crosslink_announce_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crosslink_jobs', current_schema());
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_announce AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION crosslink_announce_job();
