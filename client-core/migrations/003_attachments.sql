-- Replica schema, version 3: photos and files on records (docs/protocol.md §13). Never edit a
-- released migration: add the next one.

-- One row per attachment this device holds or wants, named by the SHA-256 of its bytes. The
-- bytes are pieces in `attachment_pieces`, inside this same file: encrypted exactly like the
-- records when the replica is, and written in the same transaction as the record naming them.
CREATE TABLE attachments (
    hash        BLOB PRIMARY KEY,
    -- NULL for a fetched one until the relay's first piece says it.
    size        INTEGER,
    media_type  TEXT,
    width       INTEGER,
    height      INTEGER,
    -- 'local': made on this device; 'fetched': downloaded from the relay (a cache entry).
    origin      TEXT NOT NULL CHECK (origin IN ('local', 'fetched')),
    -- Of a local one: 'waiting' to be uploaded, 'uploaded' (the relay said Complete), or
    -- 'refused' with the relay's reason (kept, shown to the user, never sent again).
    upload      TEXT CHECK (upload IN ('waiting', 'uploaded', 'refused')),
    refused     TEXT,
    -- 1 when an urgent report names it: its upload goes first.
    priority    INTEGER NOT NULL DEFAULT 0,
    -- Bytes held: `size` once every piece is here.
    stored      INTEGER NOT NULL DEFAULT 0,
    -- Of a fetched one: 1 while it is to be downloaded; why the relay did not give it.
    wanted      INTEGER NOT NULL DEFAULT 0,
    fetch_note  TEXT,
    -- 1 once the bytes were checked against the hash (local ones on attach).
    verified    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    -- A counter, not a clock: the least recently used fetched attachment is evicted first.
    last_used   INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX attachments_upload ON attachments (upload, priority, created_at)
    WHERE upload = 'waiting';

-- The bytes, in pieces of protocol::BLOB_CHUNK starting at multiples of it: an upload reads the
-- piece the relay asks for, a download stores each piece as it arrives.
CREATE TABLE attachment_pieces (
    hash    BLOB NOT NULL REFERENCES attachments (hash) ON DELETE CASCADE,
    offset  INTEGER NOT NULL,
    bytes   BLOB NOT NULL,
    PRIMARY KEY (hash, offset)
) WITHOUT ROWID;
