-- Documents and their changes as ordinary (rowid) tables. As WITHOUT ROWID tables each row was
-- an index entry, which SQLite keeps inline only up to about a quarter of a page: the snapshot of
-- a 1 KB record and its first change (1.5–1.7 KB each) spilled into an overflow page of their
-- own, so both tables took two to three times their contents on disk. A rowid table keeps rows of
-- up to a page inline; the keys become indexes beside them.
CREATE TABLE docs_by_rowid (
    doc_id   TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    grid_id  TEXT NOT NULL,
    snapshot BLOB
);
INSERT INTO docs_by_rowid (doc_id, kind, grid_id, snapshot)
    SELECT doc_id, kind, grid_id, snapshot FROM docs;
DROP TABLE docs;
ALTER TABLE docs_by_rowid RENAME TO docs;

CREATE TABLE doc_changes_by_rowid (
    doc_id TEXT NOT NULL,
    hash   BLOB NOT NULL,
    bytes  BLOB NOT NULL,
    UNIQUE (doc_id, hash)
);
INSERT INTO doc_changes_by_rowid (doc_id, hash, bytes)
    SELECT doc_id, hash, bytes FROM doc_changes;
DROP TABLE doc_changes;
ALTER TABLE doc_changes_by_rowid RENAME TO doc_changes;
