-- Tokens other systems (the street office's, the county's) read the API under `/api/v1` with.
-- Never edit a released migration: add the next one.

-- Only the SHA-256 of a token is kept, as for devices; the admin sees the token once.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   BLOB NOT NULL UNIQUE,
    -- whether it may read residents' sensitive data (household_private records, any field the
    -- kinds mark sensitive); otherwise those are left out of every answer
    sensitive    INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
) WITHOUT ROWID;

-- The areas a token reads, as users have them: every grid at or below them.
CREATE TABLE api_token_areas (
    token_id TEXT NOT NULL REFERENCES api_tokens (id),
    area_id  TEXT NOT NULL REFERENCES areas (id),
    PRIMARY KEY (token_id, area_id)
) WITHOUT ROWID;
