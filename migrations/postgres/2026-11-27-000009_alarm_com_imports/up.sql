-- Alarm.com imports (A1-A5): the billing fields an imported customer or user
-- carries, each run with its filters, options and counts, the outcome of each
-- record of a run, and which Alarm.com record became which billing record.

-- Customer fields of the import mapping and options.
ALTER TABLE billing_customers ADD COLUMN office_location TEXT NOT NULL DEFAULT '';
-- JSON array of strings
ALTER TABLE billing_customers ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
-- the billing user who sold the account (no foreign key: a user may go first)
ALTER TABLE billing_customers ADD COLUMN rep_id TEXT;
-- YYYY-MM-DD
ALTER TABLE billing_customers ADD COLUMN sale_date TEXT;
ALTER TABLE billing_customers ADD COLUMN two_way_voice BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE billing_customers ADD COLUMN account_number TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_customers ADD COLUMN receiver_number TEXT NOT NULL DEFAULT '';

-- User fields of the import mapping.
ALTER TABLE billing_users ADD COLUMN address1 TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_users ADD COLUMN address2 TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_users ADD COLUMN city TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_users ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_users ADD COLUMN zip TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_users ADD COLUMN user_field TEXT NOT NULL DEFAULT '';

-- One run; its id is the id of the job that runs it (state and progress live there).
CREATE TABLE imports (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    dealer           TEXT   NOT NULL,
    connection_id    TEXT   NOT NULL,
    -- 'customers' or 'users'
    kind             TEXT   NOT NULL,
    -- JSON
    filters          TEXT   NOT NULL,
    options          TEXT   NOT NULL,
    seen             BIGINT NOT NULL,
    imported         BIGINT NOT NULL,
    already_imported BIGINT NOT NULL,
    filtered_out     BIGINT NOT NULL,
    failed           BIGINT NOT NULL,
    -- how the run ended, once its summary event is written
    finished_state   TEXT,
    created_by       TEXT   NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    finished_at      TIMESTAMP
);

-- newest-first keyset paging of one dealer's runs
CREATE INDEX imports_dealer_id ON imports (dealer, id);

-- What happened to each record a run saw: written with the record's effects
-- in one transaction, so a resumed run skips exactly what is done.
CREATE TABLE import_items (
    import_id   TEXT   NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    -- order of recording within the run (paging)
    seq         BIGINT NOT NULL,
    external_id TEXT   NOT NULL,
    -- imported, already_imported, filtered_out, failed
    outcome     TEXT   NOT NULL,
    billing_id  TEXT,
    reason      TEXT,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (import_id, external_id),
    CONSTRAINT import_items_seq_key UNIQUE (import_id, seq)
);

-- Which Alarm.com record (customer id, user support id) became which billing
-- record: one row per record and connection, so nothing is imported twice.
CREATE TABLE imported_records (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    -- 'customer' or 'user'
    kind          TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    dealer        TEXT NOT NULL,
    billing_id    TEXT NOT NULL,
    import_id     TEXT NOT NULL,
    imported_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (connection_id, kind, external_id)
);
