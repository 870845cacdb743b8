-- The relay's schema on PostgreSQL, version 1: what SQLite's migrations 001 to 008 made, in
-- PostgreSQL's dialect. Never edit a released migration: add the next one.
--
-- Values are those SQLite holds: instants are RFC 3339 text in UTC (text order is time order),
-- hashes and documents are bytes. Every text column compares byte by byte (COLLATE "C"), as
-- SQLite's do, so that lists and pages come in the same order on both backends whatever the
-- database's locale.

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

-- The append-only log of every accepted change. `seq` numbers are global and increasing, and
-- allocated in commit order (a commit holds the log's advisory lock from its first seq to its
-- end, docs/protocol.md); each grid's log is the subsequence of its entries, which is what a
-- device's cursor points into. A rolled-back commit leaves a gap, which no cursor minds.
CREATE TABLE log (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grid_id     TEXT COLLATE "C" NOT NULL,
    doc_id      TEXT COLLATE "C" NOT NULL,
    -- The record's kind, so a role that may not read a kind is never sent its changes.
    kind        TEXT COLLATE "C" NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    bytes       BYTEA NOT NULL,
    device_id   TEXT COLLATE "C" NOT NULL,
    worker_id   TEXT COLLATE "C" NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX log_grid_seq ON log (grid_id, seq);
CREATE INDEX log_doc_seq ON log (doc_id, seq);

-- The server's own copy of each document: a snapshot covering the log up to snapshot_seq.
CREATE TABLE docs (
    doc_id       TEXT COLLATE "C" PRIMARY KEY,
    grid_id      TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    snapshot     BYTEA,
    snapshot_seq BIGINT NOT NULL DEFAULT 0,
    heads        BYTEA NOT NULL
);
CREATE INDEX docs_grid ON docs (grid_id, doc_id);

-- The query index the office dashboard and reports read; same columns as on devices.
CREATE TABLE records (
    doc_id        TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT COLLATE "C" NOT NULL,
    grid_id       TEXT COLLATE "C" NOT NULL,
    household_id  TEXT COLLATE "C",
    status        TEXT COLLATE "C",
    assigned_to   TEXT COLLATE "C",
    due_at        TEXT COLLATE "C",
    title         TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C",
    updated_at    TEXT COLLATE "C",
    deleted       BOOLEAN NOT NULL DEFAULT FALSE,
    has_conflicts BOOLEAN NOT NULL DEFAULT FALSE,
    received_at   TEXT COLLATE "C" NOT NULL,
    updated_seq   BIGINT NOT NULL
);
CREATE INDEX records_kind_grid_status ON records (kind, grid_id, status);
CREATE INDEX records_kind_due ON records (kind, due_at);
-- A household's page lists its visits, cases and tasks from the index.
CREATE INDEX records_household ON records (household_id);

-- The dashboard's facts beyond the index (SQLite's 003 and 005); see those for each column.
CREATE TABLE record_facts (
    doc_id       TEXT COLLATE "C" PRIMARY KEY,
    subtype      TEXT COLLATE "C",
    urgency      TEXT COLLATE "C",
    occurred_at  TEXT COLLATE "C",
    phoned_in_at TEXT COLLATE "C",
    closed_at    TEXT COLLATE "C",
    created_by   TEXT COLLATE "C",
    summary      TEXT COLLATE "C" NOT NULL DEFAULT '',
    incidents    TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    ended_at     TEXT COLLATE "C",
    handled_at   TEXT COLLATE "C",
    unit_id      TEXT COLLATE "C",
    source_id    TEXT COLLATE "C",
    low_at       DOUBLE PRECISION,
    measure      TEXT COLLATE "C",
    participants TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    movements    TEXT COLLATE "C" NOT NULL DEFAULT '[]'
);
CREATE INDEX record_facts_occurred ON record_facts (occurred_at);

-- Records edited in parallel until staff review them, and when and at which entry a review
-- was settled (SQLite's 003 and 006).
CREATE TABLE review_flags (
    doc_id        TEXT COLLATE "C" PRIMARY KEY,
    first_seq     BIGINT NOT NULL,
    last_seq      BIGINT NOT NULL,
    flagged_at    TEXT COLLATE "C" NOT NULL,
    had_conflicts BOOLEAN NOT NULL DEFAULT FALSE,
    settled_at    TEXT COLLATE "C",
    settled_seq   BIGINT
);
CREATE INDEX review_flags_settled ON review_flags (settled_at);

-- county (县) > street (街道) > community (社区) > grid (网格). Records belong to grids.
CREATE TABLE areas (
    id        TEXT COLLATE "C" PRIMARY KEY,
    parent_id TEXT COLLATE "C" REFERENCES areas (id),
    level     TEXT COLLATE "C" NOT NULL CHECK (level IN ('county', 'street', 'community', 'grid')),
    name      TEXT COLLATE "C" NOT NULL
);

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    username      TEXT COLLATE "C" NOT NULL UNIQUE,
    display_name  TEXT COLLATE "C" NOT NULL,
    role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('grid_worker', 'volunteer', 'office', 'admin')),
    password_hash TEXT COLLATE "C" NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TEXT COLLATE "C" NOT NULL,
    -- Moves on every change of the user's grids; an open sync session ends when it moved.
    scope_version BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE user_areas (
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    area_id TEXT COLLATE "C" NOT NULL REFERENCES areas (id),
    PRIMARY KEY (user_id, area_id)
);

-- Grids a user was moved away from (uploads of work done there are still taken).
CREATE TABLE former_grids (
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    grid_id TEXT COLLATE "C" NOT NULL,
    since   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, grid_id)
);

-- A device signed in once; its long-lived token is stored only as a SHA-256 hash.
CREATE TABLE devices (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    token_hash   BYTEA NOT NULL UNIQUE,
    name         TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    last_seen_at TEXT COLLATE "C",
    revoked_at   TEXT COLLATE "C"
);
CREATE INDEX devices_user ON devices (user_id);

-- Automerge actor ids bound to a device at enrolment.
CREATE TABLE device_actors (
    actor     TEXT COLLATE "C" PRIMARY KEY,
    device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id)
);
CREATE INDEX device_actors_device ON device_actors (device_id);

-- Browser sessions of office staff and admins. Only the SHA-256 of the cookie's id is kept.
CREATE TABLE sessions (
    id_hash    BYTEA PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    csrf       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- The server-side "device" a staff member's dashboard writes come from.
CREATE TABLE dashboard_devices (
    user_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES users (id),
    device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id)
);

-- Tokens other systems read the API under `/api/v1` with (only their SHA-256 is kept).
CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL,
    token_hash   BYTEA NOT NULL UNIQUE,
    sensitive    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TEXT COLLATE "C" NOT NULL,
    last_used_at TEXT COLLATE "C",
    revoked_at   TEXT COLLATE "C"
);

CREATE TABLE api_token_areas (
    token_id TEXT COLLATE "C" NOT NULL REFERENCES api_tokens (id),
    area_id  TEXT COLLATE "C" NOT NULL REFERENCES areas (id),
    PRIMARY KEY (token_id, area_id)
);

-- Attachments: which records name which bytes, and which bytes the relay holds (SQLite's 008).
-- The bytes themselves are files under the data directory (attachments/), whichever database.
CREATE TABLE attachment_refs (
    hash       BYTEA NOT NULL,
    doc_id     TEXT COLLATE "C" NOT NULL,
    grid_id    TEXT COLLATE "C" NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    media_type TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (hash, doc_id)
);
CREATE INDEX attachment_refs_doc ON attachment_refs (doc_id);
CREATE INDEX attachment_refs_grid ON attachment_refs (grid_id);

CREATE TABLE attachment_blobs (
    hash        BYTEA PRIMARY KEY,
    size        BIGINT NOT NULL,
    media_type  TEXT COLLATE "C" NOT NULL,
    device_id   TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    stored_at   TEXT COLLATE "C" NOT NULL,
    orphaned_at TEXT COLLATE "C"
);
CREATE INDEX attachment_blobs_device ON attachment_blobs (device_id);
