-- How a connection settles a field both sides changed since the last sync
-- ('hold', 'billing_wins', 'stages_wins', 'newest_wins'), and the fields of
-- links that did not sync: conflicts held, values Stages refused.
ALTER TABLE connections ADD COLUMN conflict_policy TEXT NOT NULL DEFAULT 'hold';

CREATE TABLE link_field_issues (
    -- uuid v7: id order is the order issues were first seen
    id            TEXT NOT NULL PRIMARY KEY,
    dealer        TEXT      NOT NULL,
    link_id       TEXT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    -- 'site' or 'system', with both records' ids: the inbox reads no other table
    record_kind   TEXT      NOT NULL,
    billing_id    TEXT      NOT NULL,
    external_id   TEXT      NOT NULL,
    field         TEXT      NOT NULL,
    -- 'conflict' or 'refused'
    issue         TEXT      NOT NULL,
    billing_value TEXT      NOT NULL,
    stages_value  TEXT      NOT NULL,
    last_synced   TEXT,
    reason        TEXT,
    first_seen_at TEXT      NOT NULL,
    last_seen_at  TEXT      NOT NULL,
    CONSTRAINT link_field_issues_key UNIQUE (link_id, field, issue)
);

-- the inbox: one dealer's issues, newest first
CREATE INDEX link_field_issues_dealer_id ON link_field_issues (dealer, id);
