-- First answers to requests made with an Idempotency-Key, kept for replay.

CREATE TABLE idempotency_keys (
    dealer      TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    -- 'in_flight' or 'done'
    state       TEXT    NOT NULL,
    status      INTEGER,
    -- JSON array of [name, value] pairs
    headers     TEXT,
    body        BLOB,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (dealer, user_id, idem_key)
);

-- purging old keys
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
