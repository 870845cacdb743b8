-- The co-construction pages and the assessment figures. Never edit a released migration: add
-- the next one.

-- What the dashboard counts of units, volunteers, activities, the love supermarket, tasks and
-- patrol shifts, derived from the relay's copy of each document in the same commit as its index
-- row, like the facts of migration 003. Records stored before this migration get them at their
-- next change.
-- when a patrol shift or an activity ended
ALTER TABLE record_facts ADD COLUMN ended_at TEXT;
-- when a task was handled (its last handling entry, else the write that handled it), kept from
-- the first write that saw it handled until it is sent back
ALTER TABLE record_facts ADD COLUMN handled_at TEXT;
-- a volunteer's unit, an activity's organising unit, the unit a task is dispatched to
ALTER TABLE record_facts ADD COLUMN unit_id TEXT;
-- the record a task came from (a report, a patrol, a visit, an activity)
ALTER TABLE record_facts ADD COLUMN source_id TEXT;
-- a stock item's low-stock level and unit of measure
ALTER TABLE record_facts ADD COLUMN low_at REAL;
ALTER TABLE record_facts ADD COLUMN measure TEXT;
-- an activity's participants as JSON: [{"volunteer_id": ..., "unit_id": ..., "hours": ...}]
ALTER TABLE record_facts ADD COLUMN participants TEXT NOT NULL DEFAULT '[]';
-- a stock item's movements as JSON: [{"kind": "in"|"out", "quantity": ..., "at": ...,
-- "household_id": ..., "case_id": ..., "donor_unit_id": ..., "donor_name": ...}]
ALTER TABLE record_facts ADD COLUMN movements TEXT NOT NULL DEFAULT '[]';
