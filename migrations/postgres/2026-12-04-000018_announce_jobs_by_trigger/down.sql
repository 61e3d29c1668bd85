DROP TRIGGER jobs_announce ON jobs;
DROP FUNCTION crosslink_announce_job();
