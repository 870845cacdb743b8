-- Grid adjustment (网格调整), SQLite's 011: records the office moved to another grid. Never edit
-- a released migration: add the next one. See the SQLite migration for what each column means.
CREATE TABLE grid_moves (
    seq       BIGINT PRIMARY KEY,
    doc_id    TEXT COLLATE "C" NOT NULL,
    from_grid TEXT COLLATE "C" NOT NULL,
    to_grid   TEXT COLLATE "C" NOT NULL,
    left_hash BYTEA NOT NULL,
    moved_by  TEXT COLLATE "C" NOT NULL,
    moved_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX grid_moves_doc ON grid_moves (doc_id, seq);
CREATE INDEX grid_moves_to ON grid_moves (to_grid, seq);
