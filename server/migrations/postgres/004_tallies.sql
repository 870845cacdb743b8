-- Per-grid tallies, SQLite's 012 (see it for what they are). Never edit a released migration:
-- add the next one. Every commit holds the log's advisory lock, so the triggers' updates of a
-- tally row never wait on another relay's.
--
-- A bulk copy in one transaction (`admin migrate`) sets `gridsync.bulk` to 'on' for it: the
-- triggers then leave the tallies alone (one row updated a million times in one transaction
-- keeps every version, and each update walks them all), and the copy counts them afresh at
-- its end, still holding the log's lock.
CREATE TABLE record_tallies (
    kind    TEXT COLLATE "C" NOT NULL,
    day     TEXT COLLATE "C" NOT NULL,
    grid_id TEXT COLLATE "C" NOT NULL,
    status  TEXT COLLATE "C" NOT NULL,
    subtype TEXT COLLATE "C" NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (kind, day, grid_id, status, subtype)
);

INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
SELECT r.kind, COALESCE(substr(f.occurred_at, 1, 10), ''), r.grid_id, COALESCE(r.status, ''),
       COALESCE(f.subtype, ''), COUNT(*)
FROM records r LEFT JOIN record_facts f ON f.doc_id = r.doc_id
WHERE NOT r.deleted
GROUP BY 1, 2, 3, 4, 5;

-- Adds `n` to one tally.
CREATE FUNCTION tally_add(k TEXT, d TEXT, g TEXT, s TEXT, t TEXT, n BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
    VALUES (k, COALESCE(substr(d, 1, 10), ''), g, COALESCE(s, ''), COALESCE(t, ''), n)
    ON CONFLICT (kind, day, grid_id, status, subtype)
    DO UPDATE SET n = record_tallies.n + excluded.n
$$;

-- A record is counted under its facts' subtype and day, or under '' while it has no facts row.
CREATE FUNCTION records_tally() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    f record_facts%ROWTYPE;
BEGIN
    IF current_setting('gridsync.bulk', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT OLD.deleted THEN
        SELECT * INTO f FROM record_facts WHERE doc_id = OLD.doc_id;
        PERFORM tally_add(OLD.kind, f.occurred_at, OLD.grid_id, OLD.status, f.subtype, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NOT NEW.deleted THEN
        SELECT * INTO f FROM record_facts WHERE doc_id = NEW.doc_id;
        PERFORM tally_add(NEW.kind, f.occurred_at, NEW.grid_id, NEW.status, f.subtype, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER records_tally_in AFTER INSERT ON records
    FOR EACH ROW EXECUTE FUNCTION records_tally();
CREATE TRIGGER records_tally_out AFTER DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION records_tally();
CREATE TRIGGER records_tally_moved AFTER UPDATE OF kind, grid_id, status, deleted ON records
    FOR EACH ROW
    WHEN (OLD.kind IS DISTINCT FROM NEW.kind OR OLD.grid_id IS DISTINCT FROM NEW.grid_id
          OR OLD.status IS DISTINCT FROM NEW.status OR OLD.deleted IS DISTINCT FROM NEW.deleted)
    EXECUTE FUNCTION records_tally();

-- The facts move a live record between subtypes and days.
CREATE FUNCTION facts_tally() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r records%ROWTYPE;
BEGIN
    IF current_setting('gridsync.bulk', true) = 'on' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO r FROM records
    WHERE doc_id = CASE WHEN TG_OP = 'DELETE' THEN OLD.doc_id ELSE NEW.doc_id END;
    IF NOT FOUND OR r.deleted THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM tally_add(r.kind, NULL, r.grid_id, r.status, NULL, -1);
    ELSE
        PERFORM tally_add(r.kind, OLD.occurred_at, r.grid_id, r.status, OLD.subtype, -1);
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM tally_add(r.kind, NULL, r.grid_id, r.status, NULL, 1);
    ELSE
        PERFORM tally_add(r.kind, NEW.occurred_at, r.grid_id, r.status, NEW.subtype, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER facts_tally_in AFTER INSERT ON record_facts
    FOR EACH ROW EXECUTE FUNCTION facts_tally();
CREATE TRIGGER facts_tally_out AFTER DELETE ON record_facts
    FOR EACH ROW EXECUTE FUNCTION facts_tally();
CREATE TRIGGER facts_tally_moved AFTER UPDATE OF occurred_at, subtype ON record_facts
    FOR EACH ROW
    WHEN (substr(OLD.occurred_at, 1, 10) IS DISTINCT FROM substr(NEW.occurred_at, 1, 10)
          OR OLD.subtype IS DISTINCT FROM NEW.subtype)
    EXECUTE FUNCTION facts_tally();
