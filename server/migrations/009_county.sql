-- The county view. Never edit a released migration: add the next one.

-- The county overview counts records per grid over every grid of a county (households, open
-- cases, tasks overdue): this index answers those counts from the index alone, without a
-- lookup of each row for `deleted`.
CREATE INDEX IF NOT EXISTS records_kind_grid_live ON records (kind, grid_id, deleted, status);
