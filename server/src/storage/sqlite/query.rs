//! The dashboard's queries in SQL: lists, counts, facts, review flags, change sources; and the
//! API's records changed since a log seq.

use gridsync_core::record::{IndexRow, Kind};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, Transaction, params, params_from_iter};

use super::{kinds_json, to_hash};
use crate::storage::query::{TallyPlan, grid_totals, sum_tallies};
use crate::storage::{
    ChangeSource, Changed, DocUpdate, GridCount, KindFilter, ListedRecord, RecordFacts, RecordPage,
    RecordQuery, Result, Settled, StorageError, Tally,
};

const FROM: &str = "FROM records r
    LEFT JOIN record_facts f ON f.doc_id = r.doc_id
    LEFT JOIN review_flags rf ON rf.doc_id = r.doc_id";

/// The WHERE clause of a query and its parameters (numbered, so one can be used twice).
fn where_clause(q: &RecordQuery) -> (String, Vec<Sql>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    let mut arg = |v: String| {
        args.push(Sql::Text(v));
        format!("?{}", args.len())
    };
    conds.push(format!(
        "r.grid_id IN (SELECT value FROM json_each({}))",
        arg(kinds_json(&q.grids))
    ));
    if let KindFilter::Only(kinds) = &q.kinds {
        let names: Vec<String> = kinds.iter().map(|k| k.as_str().to_string()).collect();
        let p = arg(kinds_json(&names));
        conds.push(format!("r.kind IN (SELECT value FROM json_each({p}))"));
    }
    if !q.statuses.is_empty() {
        let p = arg(kinds_json(&q.statuses));
        conds.push(format!("r.status IN (SELECT value FROM json_each({p}))"));
    }
    if let Some(t) = &q.subtype {
        conds.push(format!("f.subtype = {}", arg(t.clone())));
    }
    if let Some(w) = &q.worker {
        let p = arg(w.clone());
        conds.push(format!("(r.assigned_to = {p} OR f.created_by = {p})"));
    }
    if let Some(from) = &q.from {
        conds.push(format!("f.occurred_at >= {}", arg(from.clone())));
    }
    if let Some(to) = &q.to {
        conds.push(format!("f.occurred_at < {}", arg(to.clone())));
    }
    if let Some(d) = &q.due_before {
        conds.push(format!("r.due_at < {}", arg(d.clone())));
    }
    if let Some(s) = &q.search {
        let p = arg(s.clone());
        conds.push(format!(
            "(instr(lower(r.title), lower({p})) > 0
              OR instr(lower(COALESCE(f.summary, '')), lower({p})) > 0 OR r.doc_id = {p})"
        ));
    }
    if q.needs_review {
        conds.push(
            "(r.has_conflicts = 1 OR (rf.doc_id IS NOT NULL AND rf.settled_at IS NULL))".into(),
        );
    }
    if let Some(since) = &q.settled_since {
        conds.push(format!("rf.settled_at >= {}", arg(since.clone())));
    }
    if let Some(h) = &q.household {
        conds.push(format!("r.household_id = {}", arg(h.clone())));
    }
    if !q.ids.is_empty() {
        let p = arg(kinds_json(&q.ids));
        conds.push(format!("r.doc_id IN (SELECT value FROM json_each({p}))"));
    }
    if !q.include_deleted {
        conds.push("r.deleted = 0".into());
    }
    (format!(" WHERE {}", conds.join(" AND ")), args)
}

pub(super) fn list_records(c: &Connection, q: &RecordQuery) -> Result<RecordPage> {
    let (clause, args) = where_clause(q);
    let total: i64 = c.query_row(
        &format!("SELECT COUNT(*) {FROM}{clause}"),
        params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    let limit = q.limit.map_or(-1, |l| l as i64);
    let sql = format!(
        "SELECT r.doc_id, r.kind, r.grid_id, r.household_id, r.status, r.assigned_to, r.due_at,
                r.title, r.created_at, r.updated_at, r.deleted, r.has_conflicts, r.received_at,
                f.subtype, f.urgency, f.occurred_at, f.phoned_in_at, f.closed_at, f.created_by,
                f.summary, f.incidents, rf.doc_id IS NOT NULL AND rf.settled_at IS NULL,
                (SELECT h.title FROM records h WHERE h.doc_id = r.household_id AND r.kind != 'household'),
                f.ended_at, f.handled_at, f.unit_id, f.source_id, f.low_at, f.participants,
                f.movements, f.measure, rf.settled_at,
                (SELECT l.worker_id FROM log l WHERE l.doc_id = r.doc_id AND l.seq <= rf.settled_seq
                 ORDER BY l.seq DESC LIMIT 1)
         {FROM}{clause}
         ORDER BY COALESCE(r.updated_at, r.received_at) DESC, r.doc_id
         LIMIT {limit} OFFSET {}",
        q.offset
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let kind: String = r.get(1)?;
        let kind: Kind = kind
            .parse()
            .map_err(|_| StorageError::Corrupt(format!("unknown kind {kind} in the index")))?;
        let incidents: Option<String> = r.get(20)?;
        let json = |i: usize| -> rusqlite::Result<Option<String>> { r.get(i) };
        let (participants, movements) = (json(28)?, json(29)?);
        out.push(ListedRecord {
            row: IndexRow {
                id: r.get(0)?,
                kind,
                grid_id: r.get(2)?,
                household_id: r.get(3)?,
                status: r.get(4)?,
                assigned_to: r.get(5)?,
                due_at: r.get(6)?,
                title: r.get(7)?,
                created_at: r.get(8)?,
                updated_at: r.get(9)?,
                deleted: r.get(10)?,
                has_conflicts: r.get(11)?,
            },
            received_at: r.get(12)?,
            facts: RecordFacts {
                subtype: r.get(13)?,
                urgency: r.get(14)?,
                occurred_at: r.get(15)?,
                phoned_in_at: r.get(16)?,
                closed_at: r.get(17)?,
                created_by: r.get(18)?,
                summary: r.get::<_, Option<String>>(19)?.unwrap_or_default(),
                incidents: incidents
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
                ended_at: r.get(23)?,
                handled_at: r.get(24)?,
                unit_id: r.get(25)?,
                source_id: r.get(26)?,
                low_at: r.get(27)?,
                measure: r.get(30)?,
                participants: participants
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
                movements: movements
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
            },
            parallel: r.get(21)?,
            household_title: r.get(22)?,
            settled: r
                .get::<_, Option<String>>(31)?
                .map(|at| -> rusqlite::Result<Settled> { Ok(Settled { at, by: r.get(32)? }) })
                .transpose()?,
        });
    }
    Ok(RecordPage {
        rows: out,
        total: total as u64,
    })
}

pub(super) fn tally(c: &Connection, q: &RecordQuery) -> Result<Vec<Tally>> {
    match TallyPlan::of(q) {
        Some(plan) => tallied(c, q, &plan),
        None => Ok(sum_tallies(tally_indexed(c, q)?)),
    }
}

/// A count from the tallies: the whole days from `record_tallies`, the partial days at the
/// range's ends over the index, in one read transaction so that a commit landing in between
/// is counted in both parts or in neither.
fn tallied(c: &Connection, q: &RecordQuery, plan: &TallyPlan) -> Result<Vec<Tally>> {
    let tx = c.unchecked_transaction()?;
    let mut conds = vec!["grid_id IN (SELECT value FROM json_each(?1))".to_string()];
    let mut args = vec![Sql::Text(kinds_json(&q.grids))];
    let mut arg = |cond: &str, v: String| {
        args.push(Sql::Text(v));
        conds.push(cond.replace('?', &format!("?{}", args.len())));
    };
    if let KindFilter::Only(kinds) = &q.kinds {
        let names: Vec<String> = kinds.iter().map(|k| k.as_str().to_string()).collect();
        arg(
            "kind IN (SELECT value FROM json_each(?))",
            kinds_json(&names),
        );
    }
    if !q.statuses.is_empty() {
        arg(
            "status IN (SELECT value FROM json_each(?))",
            kinds_json(&q.statuses),
        );
    }
    if let Some(t) = &q.subtype {
        arg("subtype = ?", t.clone());
    }
    if let Some(d) = &plan.after_day {
        arg("day > ?", d.clone());
    }
    if let Some(d) = &plan.before_day {
        arg("day < ?", d.clone());
    }
    if plan.dated {
        conds.push("day <> ''".into());
    }
    let sql = format!(
        "SELECT grid_id, kind, status, subtype, SUM(n) FROM record_tallies WHERE {}
         GROUP BY grid_id, kind, status, subtype HAVING SUM(n) > 0",
        conds.join(" AND ")
    );
    let mut parts = {
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
            let named = |s: String| (!s.is_empty()).then_some(s);
            Ok(Tally {
                grid_id: r.get(0)?,
                kind: r.get(1)?,
                status: named(r.get(2)?),
                subtype: named(r.get(3)?),
                count: r.get::<_, i64>(4)? as u64,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for edge in &plan.edges {
        parts.extend(tally_partial_day(&tx, edge)?);
    }
    drop(tx);
    Ok(sum_tallies(parts))
}

/// A partial day's count at a range's end: the facts of that day first, by their `occurred_at`
/// index (CROSS JOIN keeps SQLite to that order), then their index rows, never the other way
/// round over a county's records.
fn tally_partial_day(c: &Connection, q: &RecordQuery) -> Result<Vec<Tally>> {
    tally_from(
        c,
        q,
        "FROM record_facts f CROSS JOIN records r ON r.doc_id = f.doc_id
             LEFT JOIN review_flags rf ON rf.doc_id = r.doc_id",
    )
}

/// A count over the index itself.
fn tally_indexed(c: &Connection, q: &RecordQuery) -> Result<Vec<Tally>> {
    tally_from(c, q, FROM)
}

/// The grouped count of `q` over `from`, which joins `records r`, `record_facts f` and
/// `review_flags rf` in some order.
fn tally_from(c: &Connection, q: &RecordQuery, from: &str) -> Result<Vec<Tally>> {
    let (clause, args) = where_clause(q);
    let sql = format!(
        "SELECT r.grid_id, r.kind, r.status, f.subtype, COUNT(*) {from}{clause}
         GROUP BY r.grid_id, r.kind, r.status, f.subtype"
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
        Ok(Tally {
            grid_id: r.get(0)?,
            kind: r.get(1)?,
            status: r.get(2)?,
            subtype: r.get(3)?,
            count: r.get::<_, i64>(4)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// `overdue_before` rides as one JSON object (urgency → instant) that the count looks the
/// record's urgency up in; a record with no urgency, or one not named, is never overdue. The
/// facts and review flags are joined only when a filter needs them, so counting a county's
/// households reads the `records` index alone.
pub(super) fn grid_counts(
    c: &Connection,
    q: &RecordQuery,
    overdue_before: &[(String, String)],
) -> Result<Vec<GridCount>> {
    if overdue_before.is_empty()
        && let Some(plan) = TallyPlan::of(q)
    {
        return Ok(grid_totals(tallied(c, q, &plan)?));
    }
    let (clause, mut args) = where_clause(q);
    let mut from = String::from("FROM records r");
    let facts = !overdue_before.is_empty()
        || q.subtype.is_some()
        || q.worker.is_some()
        || q.from.is_some()
        || q.to.is_some()
        || q.search.is_some();
    if facts {
        from.push_str(" LEFT JOIN record_facts f ON f.doc_id = r.doc_id");
    }
    if q.needs_review || q.settled_since.is_some() {
        from.push_str(" LEFT JOIN review_flags rf ON rf.doc_id = r.doc_id");
    }
    let overdue = if overdue_before.is_empty() {
        "0".to_string()
    } else {
        let cutoffs: serde_json::Map<String, serde_json::Value> = overdue_before
            .iter()
            .map(|(u, at)| (u.clone(), serde_json::Value::String(at.clone())))
            .collect();
        args.push(Sql::Text(serde_json::Value::Object(cutoffs).to_string()));
        format!(
            "SUM(CASE WHEN f.occurred_at < (SELECT o.value FROM json_each(?{}) o
                                           WHERE o.key = f.urgency)
                      THEN 1 ELSE 0 END)",
            args.len()
        )
    };
    let sql = format!("SELECT r.grid_id, COUNT(*), {overdue} {from}{clause} GROUP BY r.grid_id");
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
        Ok(GridCount {
            grid_id: r.get(0)?,
            count: r.get::<_, i64>(1)? as u64,
            overdue: r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Goods on hand summed from the item's movements in SQL, as `RecordFacts::on_hand` sums them.
pub(super) fn low_stock_counts(c: &Connection, grids: &str) -> Result<Vec<(String, u64)>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.grid_id, COUNT(*) FROM records r JOIN record_facts f ON f.doc_id = r.doc_id
         WHERE r.kind = 'stock' AND r.deleted = 0 AND f.low_at IS NOT NULL
           AND r.grid_id IN (SELECT value FROM json_each(?1))
           AND COALESCE((SELECT SUM(CASE json_extract(m.value, '$.kind')
                                      WHEN 'in' THEN json_extract(m.value, '$.quantity')
                                      WHEN 'out' THEN -json_extract(m.value, '$.quantity')
                                      ELSE 0 END)
                         FROM json_each(f.movements) m), 0) <= f.low_at
         GROUP BY r.grid_id",
    )?;
    let rows = stmt.query_map([grids], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn change_sources(c: &Connection, doc_id: &str) -> Result<Vec<ChangeSource>> {
    let mut stmt = c.prepare_cached(
        "SELECT hash, seq, device_id, worker_id, received_at FROM log WHERE doc_id = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([doc_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(ChangeSource {
            hash: to_hash(r.get(0)?)?,
            seq: r.get::<_, i64>(1)? as u64,
            device_id: r.get(2)?,
            worker_id: r.get(3)?,
            received_at: r.get(4)?,
        });
    }
    Ok(out)
}

/// `grids` and `kinds` as JSON arrays (see `kinds_json`). Only records with an index row: a
/// document whose first change has not arrived is no record yet.
pub(super) fn changed_since(
    c: &Connection,
    grids: &str,
    kinds: &str,
    after: u64,
    limit: usize,
) -> Result<(Vec<Changed>, bool)> {
    let mut stmt = c.prepare_cached(
        "SELECT l.doc_id, MAX(l.seq) AS last FROM log l JOIN records r ON r.doc_id = l.doc_id
         WHERE l.grid_id IN (SELECT value FROM json_each(?1)) AND l.seq > ?2
           AND (?3 = '[]' OR r.kind IN (SELECT value FROM json_each(?3)))
         GROUP BY l.doc_id ORDER BY last LIMIT ?4",
    )?;
    let wanted = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
    let rows = stmt.query_map(params![grids, after as i64, kinds, wanted], |r| {
        Ok(Changed {
            doc_id: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
        })
    })?;
    let mut out = rows.collect::<Result<Vec<_>, _>>()?;
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

pub(super) fn clear_review(c: &Connection, doc_id: &str, seq: u64, now: &str) -> Result<()> {
    c.execute(
        "UPDATE review_flags SET settled_at = ?3, settled_seq = ?2
         WHERE doc_id = ?1 AND last_seq <= ?2 AND settled_at IS NULL",
        params![doc_id, seq as i64, now],
    )?;
    Ok(())
}

/// The facts and review flag of one document in a commit (inside its transaction).
pub(super) fn commit_doc(tx: &Transaction<'_>, d: &DocUpdate, last: i64, now: &str) -> Result<()> {
    if let Some(f) = &d.facts {
        let json = |name: &str, v: Result<String, serde_json::Error>| {
            v.map_err(|e| StorageError::Invalid(format!("{name}: {e}")))
        };
        let incidents = json("incidents", serde_json::to_string(&f.incidents))?;
        let participants = json("participants", serde_json::to_string(&f.participants))?;
        let movements = json("movements", serde_json::to_string(&f.movements))?;
        tx.prepare_cached(
            "INSERT INTO record_facts (doc_id, subtype, urgency, occurred_at, phoned_in_at,
                closed_at, created_by, summary, incidents, ended_at, handled_at, unit_id,
                source_id, low_at, participants, movements, measure)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (doc_id) DO UPDATE SET
                subtype = excluded.subtype, urgency = excluded.urgency,
                occurred_at = excluded.occurred_at, phoned_in_at = excluded.phoned_in_at,
                closed_at = CASE WHEN excluded.closed_at IS NULL THEN NULL
                                 ELSE COALESCE(record_facts.closed_at, excluded.closed_at) END,
                created_by = excluded.created_by, summary = excluded.summary,
                incidents = excluded.incidents, ended_at = excluded.ended_at,
                handled_at = CASE WHEN excluded.handled_at IS NULL THEN NULL
                                  ELSE COALESCE(record_facts.handled_at, excluded.handled_at) END,
                unit_id = excluded.unit_id, source_id = excluded.source_id,
                low_at = excluded.low_at, participants = excluded.participants,
                movements = excluded.movements, measure = excluded.measure",
        )?
        .execute(params![
            d.doc_id,
            f.subtype,
            f.urgency,
            f.occurred_at,
            f.phoned_in_at,
            f.closed_at,
            f.created_by,
            f.summary,
            incidents,
            f.ended_at,
            f.handled_at,
            f.unit_id,
            f.source_id,
            f.low_at,
            participants,
            movements,
            f.measure
        ])?;
    }
    let conflicts = d.index.as_ref().is_some_and(|i| i.has_conflicts);
    if d.parallel {
        // Raised again after it was settled, it is a new flag.
        tx.prepare_cached(
            "INSERT INTO review_flags (doc_id, first_seq, last_seq, flagged_at, had_conflicts)
             VALUES (?1, ?2, ?2, ?3, ?4)
             ON CONFLICT (doc_id) DO UPDATE SET
                last_seq = excluded.last_seq,
                first_seq = CASE WHEN review_flags.settled_at IS NULL THEN review_flags.first_seq
                                 ELSE excluded.first_seq END,
                flagged_at = CASE WHEN review_flags.settled_at IS NULL THEN review_flags.flagged_at
                                  ELSE excluded.flagged_at END,
                had_conflicts = CASE WHEN review_flags.settled_at IS NULL
                                     THEN MAX(review_flags.had_conflicts, excluded.had_conflicts)
                                     ELSE excluded.had_conflicts END,
                settled_at = NULL, settled_seq = NULL",
        )?
        .execute(params![d.doc_id, last, now, conflicts])?;
    } else if conflicts {
        tx.prepare_cached(
            "UPDATE review_flags SET had_conflicts = 1 WHERE doc_id = ?1 AND settled_at IS NULL",
        )?
        .execute(params![d.doc_id])?;
    } else if d.index.is_some() {
        // One head and nothing held twice: whoever wrote this change had both branches before
        // them and settled the fields that differed.
        tx.prepare_cached(
            "UPDATE review_flags SET settled_at = ?3, settled_seq = ?2
             WHERE doc_id = ?1 AND settled_at IS NULL AND had_conflicts = 1",
        )?
        .execute(params![d.doc_id, last, now])?;
    }
    Ok(())
}
