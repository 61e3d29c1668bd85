-- Batches (B7): one background job runs many items of one operation; each
-- item keeps its input until it runs and its outcome once it has.

-- One batch; its id is the id of the job that runs it (state and progress live there).
CREATE TABLE batches (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    dealer         TEXT    NOT NULL,
    -- link, push, sync, account_sync, test, end_test
    operation      TEXT    NOT NULL,
    connection_id  TEXT,
    dry_run        BOOLEAN NOT NULL,
    total          BIGINT  NOT NULL,
    succeeded      BIGINT  NOT NULL,
    failed         BIGINT  NOT NULL,
    -- how the batch ended, once its summary event is written
    finished_state TEXT,
    created_by     TEXT    NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP
);
CREATE INDEX batches_dealer_id ON batches (dealer, id);

CREATE TABLE batch_items (
    batch_id    TEXT    NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    -- the item's place in the request, from 0
    position    BIGINT  NOT NULL,
    -- what the item names (a billing id, a link id, a device id), for lists
    subject     TEXT    NOT NULL,
    -- the single operation's input, as JSON
    input       TEXT    NOT NULL,
    -- pending, succeeded, failed, cancelled
    state       TEXT    NOT NULL,
    -- the single operation's answer or problem, as JSON
    result      TEXT,
    problem     TEXT,
    finished_at TIMESTAMP,
    PRIMARY KEY (batch_id, position)
);
-- The job reads the next pending items in order; lists filter by state.
CREATE INDEX batch_items_state ON batch_items (batch_id, state, position);
