-- Which billing record is which external record on one connection, the
-- records someone deliberately unlinked, and the audit trail of link changes.

CREATE TABLE links (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    dealer        TEXT      NOT NULL,
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    -- 'site' or 'system'
    kind          TEXT      NOT NULL,
    billing_id    TEXT COLLATE "C" NOT NULL,
    -- the Stages site number or device id
    external_id   TEXT COLLATE "C" NOT NULL,
    -- a system link's site link: unlinking the site removes its systems' links
    parent_id     TEXT COLLATE "C" REFERENCES links (id) ON DELETE CASCADE,
    version       BIGINT    NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    -- JSON: the values last pushed or pulled, for echo suppression
    last_synced   TEXT,
    -- one link per record on each side (S6)
    CONSTRAINT links_billing_key UNIQUE (connection_id, kind, billing_id),
    CONSTRAINT links_external_key UNIQUE (connection_id, kind, external_id)
);

-- keyset paging of one dealer's links
CREATE INDEX links_dealer_id ON links (dealer, id);
-- the links of one billing record on every connection (delete checks)
CREATE INDEX links_dealer_billing ON links (dealer, kind, billing_id);
-- the children of a site link (unlink, cascade)
CREATE INDEX links_parent ON links (parent_id);

CREATE TABLE deliberate_unlinks (
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind          TEXT      NOT NULL,
    billing_id    TEXT COLLATE "C" NOT NULL,
    external_id   TEXT COLLATE "C" NOT NULL,
    dealer        TEXT      NOT NULL,
    unlinked_at   TIMESTAMP NOT NULL,
    actor         TEXT      NOT NULL,
    PRIMARY KEY (connection_id, kind, billing_id, external_id)
);

-- forgetting the unlinks of a record linked again, from its external side
CREATE INDEX deliberate_unlinks_external ON deliberate_unlinks (connection_id, kind, external_id);

CREATE TABLE audit_log (
    -- uuid v7: id order is time order
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    dealer        TEXT      NOT NULL,
    at            TIMESTAMP NOT NULL,
    actor         TEXT      NOT NULL,
    action        TEXT      NOT NULL,
    -- no foreign key: the trail outlives the connection
    connection_id TEXT COLLATE "C",
    kind          TEXT      NOT NULL,
    billing_id    TEXT,
    external_id   TEXT,
    -- JSON
    before_json   TEXT,
    after_json    TEXT
);

CREATE INDEX audit_log_dealer_at ON audit_log (dealer, at);
-- newest-first keyset paging
CREATE INDEX audit_log_dealer_id ON audit_log (dealer, id);
