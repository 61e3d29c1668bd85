-- Connections and the credentials they use. Timestamps are UTC text in diesel's
-- "YYYY-MM-DD HH:MM:SS.ffffff" form, so text comparison is time order.

CREATE TABLE connections (
    id         TEXT    NOT NULL PRIMARY KEY,
    dealer     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    -- lowercased name: names are unique per dealer regardless of case
    name_key   TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    endpoint   TEXT    NOT NULL,
    auth_mode  TEXT    NOT NULL,
    auto_sync  BOOLEAN NOT NULL,
    status     TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    CONSTRAINT connections_dealer_name_key UNIQUE (dealer, name_key)
);

-- keyset paging of one dealer's connections
CREATE INDEX connections_dealer_id ON connections (dealer, id);

CREATE TABLE credentials (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    dealer        TEXT NOT NULL,
    -- 'dealer' or 'user:<user id>'
    owner         TEXT NOT NULL,
    username      TEXT NOT NULL,
    -- versioned AEAD blob, never the plain password
    secret        BLOB NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (connection_id, owner)
);

CREATE TABLE inbound_credentials (
    connection_id TEXT NOT NULL PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    dealer        TEXT NOT NULL,
    username      TEXT NOT NULL,
    secret        BLOB NOT NULL,
    rotated_at    TEXT NOT NULL,
    -- Stages authenticates with the username alone, so it must name one connection
    CONSTRAINT inbound_credentials_username_key UNIQUE (username)
);
