-- Connections and the credentials they use. Timestamps are UTC without a zone,
-- as on SQLite, so one schema.rs serves both.

CREATE TABLE connections (
    -- "C" collation: keyset paging compares ids bytewise, as SQLite does
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    dealer     TEXT      NOT NULL,
    name       TEXT      NOT NULL,
    -- lowercased name: names are unique per dealer regardless of case
    name_key   TEXT      NOT NULL,
    provider   TEXT      NOT NULL,
    endpoint   TEXT      NOT NULL,
    auth_mode  TEXT      NOT NULL,
    auto_sync  BOOLEAN   NOT NULL,
    status     TEXT      NOT NULL,
    version    BIGINT    NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT connections_dealer_name_key UNIQUE (dealer, name_key)
);

-- keyset paging of one dealer's connections
CREATE INDEX connections_dealer_id ON connections (dealer, id);

CREATE TABLE credentials (
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    dealer        TEXT      NOT NULL,
    -- 'dealer' or 'user:<user id>'
    owner         TEXT      NOT NULL,
    username      TEXT      NOT NULL,
    -- versioned AEAD blob, never the plain password
    secret        BYTEA     NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (connection_id, owner)
);

CREATE TABLE inbound_credentials (
    connection_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    dealer        TEXT      NOT NULL,
    username      TEXT      NOT NULL,
    secret        BYTEA     NOT NULL,
    rotated_at    TIMESTAMP NOT NULL,
    -- Stages authenticates with the username alone, so it must name one connection
    CONSTRAINT inbound_credentials_username_key UNIQUE (username)
);
