-- The change feed, the outbound webhook subscriptions it is delivered to, and
-- the inbox of callbacks Stages sends in. Deliveries are jobs (kind
-- webhook_delivery), written in the same transaction as their event.

CREATE TABLE events (
    -- position in the feed. Event inserts take a per-dealer advisory lock
    -- until commit, so a dealer's seqs become visible in order and a reader
    -- paging with "after" never skips one committed late
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT COLLATE "C" NOT NULL,
    dealer        TEXT      NOT NULL,
    event_type    TEXT      NOT NULL,
    subject_kind  TEXT      NOT NULL,
    subject_id    TEXT      NOT NULL,
    -- no foreign key: the feed outlives the connection
    connection_id TEXT COLLATE "C",
    -- JSON
    data          TEXT      NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    CONSTRAINT events_id_key UNIQUE (id)
);

-- one dealer's feed in order
CREATE INDEX events_dealer_seq ON events (dealer, seq);

CREATE TABLE webhook_subscriptions (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    dealer          TEXT      NOT NULL,
    url             TEXT      NOT NULL,
    -- JSON array of event types; empty means all
    types           TEXT      NOT NULL,
    -- versioned AEAD blob of the signing secret, never the plain secret
    secret          BYTEA     NOT NULL,
    -- 'active' or 'disabled'
    status          TEXT      NOT NULL,
    disabled_reason TEXT,
    version         BIGINT    NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);

-- keyset paging of one dealer's subscriptions
CREATE INDEX webhook_subscriptions_dealer_id ON webhook_subscriptions (dealer, id);

CREATE TABLE webhook_inbox (
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    dealer        TEXT      NOT NULL,
    -- the sender's id of the event: a repeat is acknowledged and ignored
    event_id      TEXT COLLATE "C" NOT NULL,
    -- JSON, as received
    payload       TEXT      NOT NULL,
    received_at   TIMESTAMP NOT NULL,
    -- how processing ended (applied, echo, unmatched: ...); null until then
    outcome       TEXT,
    processed_at  TIMESTAMP,
    PRIMARY KEY (connection_id, event_id)
);
