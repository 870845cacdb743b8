-- Attachments (photos and files on records): which records name which bytes, and which bytes
-- the relay holds. The bytes themselves are files under the data directory (attachments/).
-- Never edit a released migration: add the next one.

-- What each record's `attachments` field names, replaced whenever the record changes: the
-- scope of an attachment is the scope of the records that name it (grid and kind).
CREATE TABLE attachment_refs (
    hash       BLOB NOT NULL,
    doc_id     TEXT NOT NULL,
    grid_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (hash, doc_id)
) WITHOUT ROWID;
CREATE INDEX attachment_refs_doc ON attachment_refs (doc_id);
CREATE INDEX attachment_refs_grid ON attachment_refs (grid_id);

-- The attachments whose every byte the relay holds and checked, for quotas and stats.
CREATE TABLE attachment_blobs (
    hash        BLOB PRIMARY KEY,
    size        INTEGER NOT NULL,
    media_type  TEXT NOT NULL,
    -- who uploaded it (the quota is per device)
    device_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    stored_at   TEXT NOT NULL,
    -- when a purge first found no record naming it; cleared when one names it again
    orphaned_at TEXT
) WITHOUT ROWID;
CREATE INDEX attachment_blobs_device ON attachment_blobs (device_id);
