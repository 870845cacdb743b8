-- The office dashboard. Never edit a released migration: add the next one.

-- What the dashboard's lists, overview and monthly report filter and count on beyond the
-- `records` index: the record's type, its date, report timing and patrol incidents. Written in
-- the same commit as the index row, from the relay's own copy of the document.
CREATE TABLE record_facts (
    doc_id       TEXT PRIMARY KEY,
    -- case_type, report category, visit_type or household_type
    subtype      TEXT,
    -- a report's urgency
    urgency      TEXT,
    -- the day the record is about, in UTC: visit/patrol start, report discovery, else creation
    occurred_at  TEXT,
    phoned_in_at TEXT,
    -- when a case or report was first seen closed (the closing write's own stamp)
    closed_at    TEXT,
    created_by   TEXT,
    -- free text lists show and search (never sensitive resident data)
    summary      TEXT NOT NULL DEFAULT '',
    -- a patrol's incidents as JSON: [{"kind": ..., "at": ...}]
    incidents    TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID;
CREATE INDEX record_facts_occurred ON record_facts (occurred_at);

-- Records whose relay copy received concurrent branches (two people edited it in parallel,
-- possibly on different fields), until office staff review them. Field-level conflicts are
-- `records.has_conflicts`; this is ODK Central's "parallel update".
CREATE TABLE review_flags (
    doc_id     TEXT PRIMARY KEY,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    flagged_at TEXT NOT NULL
) WITHOUT ROWID;

-- Browser sessions of office staff and admins. Only the SHA-256 of the cookie's id is kept.
CREATE TABLE sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user_id);

-- The server-side "device" a staff member's dashboard writes come from: a row in `devices`
-- (its token is never handed out) with its own Automerge actor, so office changes are logged,
-- checked and synced exactly like a phone's.
CREATE TABLE dashboard_devices (
    user_id   TEXT PRIMARY KEY REFERENCES users (id),
    device_id TEXT NOT NULL REFERENCES devices (id)
) WITHOUT ROWID;
