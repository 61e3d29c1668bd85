-- Jobs that read and write the same Stages record (an Auto Sync push of a link,
-- a callback about its Stages record) run one at a time: claims skip a job
-- while another of its serial key runs, and this index makes a second one
-- running at once impossible, also when two claims race.
ALTER TABLE jobs ADD COLUMN serial_key TEXT;

CREATE UNIQUE INDEX jobs_running_serial_key ON jobs (dealer, serial_key)
    WHERE serial_key IS NOT NULL AND state = 'running';
