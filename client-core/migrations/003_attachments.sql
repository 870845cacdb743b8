-- Replica schema, version 3: photos and files on records (docs/protocol.md §13). Never edit a
-- released migration: add the next one. (Comments stay outside the statements: SQLite keeps a
-- statement's text in the schema page, and a schema past one page is lost sooner in a damaged
-- file, see store/salvage.rs.)

-- One row per attachment this device holds or wants, named by the SHA-256 of its bytes:
--   size        NULL for a fetched one until the relay's first piece says it
--   origin      'local': made on this device; 'fetched': downloaded from the relay (cached)
--   upload      of a local one: 'waiting', 'uploaded' (the relay said Complete), or 'refused'
--               with the relay's reason in `refused` (kept, shown, never sent again)
--   priority    1 when an urgent report names it: its upload goes first
--   stored      bytes held: `size` once every piece is here
--   wanted      of a fetched one: 1 while it is to be downloaded; `fetch_note` says why the
--               relay did not give it ('not_yet' or its reason)
--   verified    1 once the bytes were checked against the hash
--   last_used   a counter, not a clock: the least recently used is evicted first
-- The bytes are pieces in `attachment_pieces`, inside this same file: encrypted exactly like
-- the records when the replica is, and written in the same transaction as the record naming
-- them.
CREATE TABLE attachments (
    hash BLOB PRIMARY KEY,
    size INTEGER,
    media_type TEXT,
    width INTEGER,
    height INTEGER,
    origin TEXT NOT NULL CHECK (origin IN ('local', 'fetched')),
    upload TEXT CHECK (upload IN ('waiting', 'uploaded', 'refused')),
    refused TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    stored INTEGER NOT NULL DEFAULT 0,
    wanted INTEGER NOT NULL DEFAULT 0,
    fetch_note TEXT,
    verified INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    last_used INTEGER NOT NULL DEFAULT 0
);

-- The bytes, in pieces of protocol::BLOB_CHUNK starting at multiples of it: an upload reads the
-- piece the relay asks for, a download stores each piece as it arrives.
CREATE TABLE attachment_pieces (
    hash BLOB NOT NULL REFERENCES attachments (hash) ON DELETE CASCADE,
    offset INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (hash, offset)
) WITHOUT ROWID;
