-- Replica schema, version 2. Never edit a released migration: add the next one.

-- "How many open cases" without a grid (W3's question, and the home screen's): with kind and
-- status alone, SQLite used records_kind_due and then read every case's row for its status and
-- deleted flag. This index answers the count from its own entries.
CREATE INDEX records_kind_status ON records (kind, status, deleted);
