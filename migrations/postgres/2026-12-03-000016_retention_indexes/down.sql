DROP INDEX imports_ended;
DROP INDEX jobs_ended;
DROP INDEX callback_log_received_at;
DROP INDEX audit_log_at;
DROP INDEX events_created_at;
