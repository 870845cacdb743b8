-- The county view (SQLite's 009). Never edit a released migration: add the next one.

-- The county overview counts records per grid over every grid of a county: this index answers
-- those counts from the index alone.
CREATE INDEX IF NOT EXISTS records_kind_grid_live ON records (kind, grid_id, deleted, status);
