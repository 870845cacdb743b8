-- The relay's copy of each document as an ordinary (rowid) table. As a WITHOUT ROWID table each
-- row is an index entry, which SQLite keeps inline only up to about a quarter of a page: a
-- snapshot of a 1 KB record (about 1.7 KB) spilled into an overflow page of its own, so the table
-- took 2.6 times its contents on disk. A rowid table keeps rows of up to a page inline; the
-- primary key on doc_id becomes an index beside it.
CREATE TABLE docs_by_rowid (
    doc_id       TEXT PRIMARY KEY,
    grid_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    snapshot     BLOB,
    snapshot_seq INTEGER NOT NULL DEFAULT 0,
    heads        BLOB NOT NULL
);
INSERT INTO docs_by_rowid (doc_id, grid_id, kind, snapshot, snapshot_seq, heads)
    SELECT doc_id, grid_id, kind, snapshot, snapshot_seq, heads FROM docs;
DROP TABLE docs;
ALTER TABLE docs_by_rowid RENAME TO docs;
CREATE INDEX docs_grid ON docs (grid_id, doc_id);
