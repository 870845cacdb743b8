-- A change the document's snapshot holds byte for byte is stored once, in the snapshot. Never
-- edit a released migration: add the next one.

-- Its log entry keeps everything but the bytes: `bytes` is empty and `size` says how long the
-- change is (what a catch-up batch budgets for it). The relay stores a change so only when the
-- snapshot written in the same commit reproduces it exactly; a device that needs it (one holding
-- part of the record) is sent it rebuilt from the relay's copy of the document, which checks
-- its hash. Entries from before this migration keep their bytes and no size.
ALTER TABLE log ADD COLUMN size BIGINT;
