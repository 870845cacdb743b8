-- Relay schema, version 1. Never edit a released migration: add the next one.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- The append-only log of every accepted change. `seq` numbers are global and increasing; each
-- grid's log is the subsequence of its entries, which is what a device's cursor points into.
CREATE TABLE log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    grid_id     TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    -- The record's kind, so a role that may not read a kind is never sent its changes.
    kind        TEXT NOT NULL,
    hash        BLOB NOT NULL UNIQUE,
    bytes       BLOB NOT NULL,
    device_id   TEXT NOT NULL,
    worker_id   TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX log_grid_seq ON log (grid_id, seq);
CREATE INDEX log_doc_seq ON log (doc_id, seq);

-- The server's own copy of each document: a snapshot covering the log up to snapshot_seq.
CREATE TABLE docs (
    doc_id       TEXT PRIMARY KEY,
    grid_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    snapshot     BLOB,
    snapshot_seq INTEGER NOT NULL DEFAULT 0,
    heads        BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX docs_grid ON docs (grid_id, doc_id);

-- The query index the office dashboard and reports read; same columns as on devices.
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
    received_at   TEXT NOT NULL,
    updated_seq   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX records_kind_grid_status ON records (kind, grid_id, status);
CREATE INDEX records_kind_due ON records (kind, due_at);
