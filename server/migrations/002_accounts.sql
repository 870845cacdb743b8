-- Accounts, areas and devices. Never edit a released migration: add the next one.

-- county (县) > street (街道) > community (社区) > grid (网格). Records belong to grids.
CREATE TABLE areas (
    id        TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES areas (id),
    level     TEXT NOT NULL CHECK (level IN ('county', 'street', 'community', 'grid')),
    name      TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('grid_worker', 'volunteer', 'office', 'admin')),
    password_hash TEXT NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL
) WITHOUT ROWID;

-- The areas a user works in: grids for grid workers and volunteers, a community for office staff.
CREATE TABLE user_areas (
    user_id TEXT NOT NULL REFERENCES users (id),
    area_id TEXT NOT NULL REFERENCES areas (id),
    PRIMARY KEY (user_id, area_id)
) WITHOUT ROWID;

-- Grids a user was moved away from: their devices may still upload changes made there before
-- the move (never lose unsynced work), but receive nothing more from them.
CREATE TABLE former_grids (
    user_id TEXT NOT NULL REFERENCES users (id),
    grid_id TEXT NOT NULL,
    since   TEXT NOT NULL,
    PRIMARY KEY (user_id, grid_id)
) WITHOUT ROWID;

-- A device signed in once; its long-lived token is stored only as a SHA-256 hash.
CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    token_hash   BLOB NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT,
    revoked_at   TEXT
) WITHOUT ROWID;

-- Automerge actor ids bound to a device at enrolment: a change signed by an actor of another
-- device is refused, so a device cannot write as another.
CREATE TABLE device_actors (
    actor     TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id)
) WITHOUT ROWID;
