-- The review queue's settled records and a household's page. Never edit a released migration:
-- add the next one.

-- A review flag is no longer deleted when it ends: it is settled, so the queue can show what was
-- settled lately, by whom and when. A later change that leaves the record with one head and no
-- field holding concurrent values settles a flag whose record had such a field (a worker chose
-- the value on a phone); staff settle any flag from the review page. A flag raised again is
-- open again.
-- some field of the record held concurrent values while it was flagged
ALTER TABLE review_flags ADD COLUMN had_conflicts INTEGER NOT NULL DEFAULT 0;
-- when it was settled (UTC), and the log position of the change that settled it
ALTER TABLE review_flags ADD COLUMN settled_at TEXT;
ALTER TABLE review_flags ADD COLUMN settled_seq INTEGER;
CREATE INDEX review_flags_settled ON review_flags (settled_at);

-- A household's page lists its visits, cases and tasks from the index.
CREATE INDEX records_household ON records (household_id);

-- Flags raised before this migration whose record still holds concurrent values settle when a
-- later change settles them.
UPDATE review_flags SET had_conflicts = 1
    WHERE doc_id IN (SELECT doc_id FROM records WHERE has_conflicts = 1);
