-- Grid adjustment (网格调整): records the office moved to another grid. Never edit a released
-- migration: add the next one.

-- One row per document moved. `seq` is the log entry of the move's change in the new grid (its
-- arrival: new-grid devices catching up past it get the whole document); `left_hash` the move's
-- change in the old grid's log, which tells old-grid devices the record left. The relay accepts
-- a change an old-grid author made before that change (an offline edit) and files it under the
-- document's grid now, `docs.grid_id`.
CREATE TABLE grid_moves (
    seq       INTEGER PRIMARY KEY,
    doc_id    TEXT NOT NULL,
    from_grid TEXT NOT NULL,
    to_grid   TEXT NOT NULL,
    left_hash BLOB NOT NULL,
    -- the user id of whoever moved it
    moved_by  TEXT NOT NULL,
    moved_at  TEXT NOT NULL
);
CREATE INDEX grid_moves_doc ON grid_moves (doc_id, seq);
CREATE INDEX grid_moves_to ON grid_moves (to_grid, seq);
