-- Per-grid tallies (issue 13's county overview). Never edit a released migration: add the next
-- one.
--
-- How many live (not deleted) records each grid holds, by kind, status, subtype and the UTC day
-- of `occurred_at`, kept by the triggers below in the transaction that writes the index, so a
-- county's figures are a sum over a few rows per grid and day rather than a count over every
-- record. A missing status, subtype or day is ''. A tally that fell to 0 stays (readers skip
-- it): the keys a grid ever had are few. The dashboard's counts read whole days from here and
-- the partial days at a range's ends from the index (storage::query::TallyPlan).
CREATE TABLE record_tallies (
    kind    TEXT NOT NULL,
    day     TEXT NOT NULL,
    grid_id TEXT NOT NULL,
    status  TEXT NOT NULL,
    subtype TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (kind, day, grid_id, status, subtype)
) WITHOUT ROWID;

INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
SELECT r.kind, COALESCE(substr(f.occurred_at, 1, 10), ''), r.grid_id, COALESCE(r.status, ''),
       COALESCE(f.subtype, ''), COUNT(*)
FROM records r LEFT JOIN record_facts f ON f.doc_id = r.doc_id
WHERE r.deleted = 0
GROUP BY 1, 2, 3, 4, 5;

-- A record is counted under its facts' subtype and day, or under '' while it has no facts row:
-- the index row and the facts row are written one after the other, in either order.
CREATE TRIGGER records_tally_in AFTER INSERT ON records WHEN NEW.deleted = 0 BEGIN
    INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
    SELECT NEW.kind, COALESCE(substr(f.occurred_at, 1, 10), ''), NEW.grid_id,
           COALESCE(NEW.status, ''), COALESCE(f.subtype, ''), 1
    FROM (SELECT 1) LEFT JOIN record_facts f ON f.doc_id = NEW.doc_id
    WHERE true
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER records_tally_out AFTER DELETE ON records WHEN OLD.deleted = 0 BEGIN
    UPDATE record_tallies SET n = n - 1
    WHERE kind = OLD.kind AND grid_id = OLD.grid_id AND status = COALESCE(OLD.status, '')
      AND (day, subtype) = (SELECT COALESCE(substr(f.occurred_at, 1, 10), ''), COALESCE(f.subtype, '')
                            FROM (SELECT 1) LEFT JOIN record_facts f ON f.doc_id = OLD.doc_id);
END;

CREATE TRIGGER records_tally_moved AFTER UPDATE OF kind, grid_id, status, deleted ON records
WHEN OLD.kind IS NOT NEW.kind OR OLD.grid_id IS NOT NEW.grid_id OR OLD.status IS NOT NEW.status
     OR OLD.deleted IS NOT NEW.deleted
BEGIN
    UPDATE record_tallies SET n = n - 1
    WHERE OLD.deleted = 0
      AND kind = OLD.kind AND grid_id = OLD.grid_id AND status = COALESCE(OLD.status, '')
      AND (day, subtype) = (SELECT COALESCE(substr(f.occurred_at, 1, 10), ''), COALESCE(f.subtype, '')
                            FROM (SELECT 1) LEFT JOIN record_facts f ON f.doc_id = OLD.doc_id);
    INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
    SELECT NEW.kind, COALESCE(substr(f.occurred_at, 1, 10), ''), NEW.grid_id,
           COALESCE(NEW.status, ''), COALESCE(f.subtype, ''), 1
    FROM (SELECT 1) LEFT JOIN record_facts f ON f.doc_id = NEW.doc_id
    WHERE NEW.deleted = 0
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

-- The facts move a live record between subtypes and days.
CREATE TRIGGER facts_tally_in AFTER INSERT ON record_facts BEGIN
    UPDATE record_tallies SET n = n - 1
    WHERE (kind, grid_id, status) = (SELECT r.kind, r.grid_id, COALESCE(r.status, '')
                                     FROM records r WHERE r.doc_id = NEW.doc_id AND r.deleted = 0)
      AND day = '' AND subtype = '';
    INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
    SELECT r.kind, COALESCE(substr(NEW.occurred_at, 1, 10), ''), r.grid_id, COALESCE(r.status, ''),
           COALESCE(NEW.subtype, ''), 1
    FROM records r WHERE r.doc_id = NEW.doc_id AND r.deleted = 0
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER facts_tally_moved AFTER UPDATE OF occurred_at, subtype ON record_facts
WHEN substr(OLD.occurred_at, 1, 10) IS NOT substr(NEW.occurred_at, 1, 10)
     OR OLD.subtype IS NOT NEW.subtype
BEGIN
    UPDATE record_tallies SET n = n - 1
    WHERE (kind, grid_id, status) = (SELECT r.kind, r.grid_id, COALESCE(r.status, '')
                                     FROM records r WHERE r.doc_id = NEW.doc_id AND r.deleted = 0)
      AND day = COALESCE(substr(OLD.occurred_at, 1, 10), '') AND subtype = COALESCE(OLD.subtype, '');
    INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
    SELECT r.kind, COALESCE(substr(NEW.occurred_at, 1, 10), ''), r.grid_id, COALESCE(r.status, ''),
           COALESCE(NEW.subtype, ''), 1
    FROM records r WHERE r.doc_id = NEW.doc_id AND r.deleted = 0
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER facts_tally_out AFTER DELETE ON record_facts BEGIN
    UPDATE record_tallies SET n = n - 1
    WHERE (kind, grid_id, status) = (SELECT r.kind, r.grid_id, COALESCE(r.status, '')
                                     FROM records r WHERE r.doc_id = OLD.doc_id AND r.deleted = 0)
      AND day = COALESCE(substr(OLD.occurred_at, 1, 10), '') AND subtype = COALESCE(OLD.subtype, '');
    INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
    SELECT r.kind, '', r.grid_id, COALESCE(r.status, ''), '', 1
    FROM records r WHERE r.doc_id = OLD.doc_id AND r.deleted = 0
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
