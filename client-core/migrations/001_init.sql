-- Replica schema, version 1. Never edit a released migration: add the next one.

-- Identity and settings of this replica: device_id, actor, worker_id, grids, server_url, last_sync.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- The latest compacted snapshot of each document (NULL until the first compaction).
CREATE TABLE docs (
    doc_id   TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    grid_id  TEXT NOT NULL,
    snapshot BLOB
) WITHOUT ROWID;

-- Changes since each document's snapshot. Loading a document = snapshot + these rows, and
-- compaction keeps their number bounded.
CREATE TABLE doc_changes (
    doc_id TEXT NOT NULL,
    hash   BLOB NOT NULL,
    bytes  BLOB NOT NULL,
    PRIMARY KEY (doc_id, hash)
) WITHOUT ROWID;

-- Local changes the server has not acknowledged yet, in the order they were written.
-- A row is deleted only when the server has made it durable. Compaction never touches it.
CREATE TABLE outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id   TEXT NOT NULL,
    grid_id  TEXT NOT NULL,
    hash     BLOB NOT NULL UNIQUE,
    bytes    BLOB NOT NULL,
    -- Set when the server refused the change; it is kept, shown, and no longer blocks uploads.
    rejected TEXT
);

-- Where this replica stands in each grid's log on the server.
CREATE TABLE cursors (
    grid_id TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    BLOB
) WITHOUT ROWID;

-- Where the server's log stood when it acknowledged this replica's latest upload to each grid,
-- while the cursor has not caught up with it (see protocol.md, "Repair").
CREATE TABLE witnesses (
    grid_id TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    BLOB
) WITHOUT ROWID;

-- The query index: the fields lists filter on, updated in the same transaction as the document.
CREATE TABLE records (
    doc_id        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    grid_id       TEXT NOT NULL,
    household_id  TEXT,
    status        TEXT,
    assigned_to   TEXT,
    due_at        TEXT,
    title         TEXT NOT NULL,
    created_at    TEXT,
    updated_at    TEXT,
    deleted       INTEGER NOT NULL DEFAULT 0,
    has_conflicts INTEGER NOT NULL DEFAULT 0,
    heads         BLOB NOT NULL
) WITHOUT ROWID;

CREATE INDEX records_kind_grid_status ON records (kind, grid_id, status);
CREATE INDEX records_kind_due ON records (kind, due_at);
CREATE INDEX records_household ON records (household_id);
CREATE INDEX records_conflicts ON records (has_conflicts) WHERE has_conflicts = 1;
