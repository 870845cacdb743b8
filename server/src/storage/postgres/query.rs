//! The dashboard's queries in PostgreSQL's SQL: lists, counts, facts, review flags, change
//! sources; and the API's records changed since a log seq. The same queries as SQLite's
//! (`sqlite/query.rs`), with arrays where SQLite takes JSON lists.

use deadpool_postgres::{Client, GenericClient, Transaction};
use gridsync_core::record::{IndexRow, Kind};
use tokio_postgres::types::ToSql;

use super::to_hash;
use crate::storage::query::{TallyPlan, grid_totals, sum_tallies};
use crate::storage::{
    ChangeSource, Changed, DocUpdate, GridCount, ListedRecord, RecordFacts, RecordPage,
    RecordQuery, Result, Settled, StorageError, Tally,
};

const FROM: &str = "FROM records r
    LEFT JOIN record_facts f ON f.doc_id = r.doc_id
    LEFT JOIN review_flags rf ON rf.doc_id = r.doc_id";

type Arg = Box<dyn ToSql + Sync + Send>;

/// The WHERE clause of a query and its parameters (numbered, so one can be used twice).
fn where_clause(q: &RecordQuery) -> (String, Vec<Arg>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut arg = |v: Arg| {
        args.push(v);
        format!("${}", args.len())
    };
    let list = |v: &[String]| -> Arg { Box::new(v.to_vec()) };
    let text = |v: &String| -> Arg { Box::new(v.clone()) };
    conds.push(format!("r.grid_id = ANY({}::text[])", arg(list(&q.grids))));
    if let Some(kinds) = super::kind_names(&q.kinds) {
        conds.push(format!("r.kind = ANY({}::text[])", arg(list(&kinds))));
    }
    if !q.statuses.is_empty() {
        conds.push(format!(
            "r.status = ANY({}::text[])",
            arg(list(&q.statuses))
        ));
    }
    if let Some(t) = &q.subtype {
        conds.push(format!("f.subtype = {}::text", arg(text(t))));
    }
    if let Some(w) = &q.worker {
        let p = arg(text(w));
        conds.push(format!(
            "(r.assigned_to = {p}::text OR f.created_by = {p}::text)"
        ));
    }
    if let Some(from) = &q.from {
        conds.push(format!("f.occurred_at >= {}::text", arg(text(from))));
    }
    if let Some(to) = &q.to {
        conds.push(format!("f.occurred_at < {}::text", arg(text(to))));
    }
    if let Some(d) = &q.due_before {
        conds.push(format!("r.due_at < {}::text", arg(text(d))));
    }
    if let Some(s) = &q.search {
        // Lower case in the C collation is ASCII's alone, as in SQLite and the memory backend.
        let p = arg(text(s));
        conds.push(format!(
            "(strpos(lower(r.title), lower({p}::text COLLATE \"C\")) > 0
              OR strpos(lower(COALESCE(f.summary, '')), lower({p}::text COLLATE \"C\")) > 0
              OR r.doc_id = {p}::text)"
        ));
    }
    if q.needs_review {
        conds.push("(r.has_conflicts OR (rf.doc_id IS NOT NULL AND rf.settled_at IS NULL))".into());
    }
    if let Some(since) = &q.settled_since {
        conds.push(format!("rf.settled_at >= {}::text", arg(text(since))));
    }
    if let Some(h) = &q.household {
        conds.push(format!("r.household_id = {}::text", arg(text(h))));
    }
    if !q.ids.is_empty() {
        conds.push(format!("r.doc_id = ANY({}::text[])", arg(list(&q.ids))));
    }
    if !q.include_deleted {
        conds.push("NOT r.deleted".into());
    }
    (format!(" WHERE {}", conds.join(" AND ")), args)
}

fn refs(args: &[Arg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn from_json<T: serde::de::DeserializeOwned + Default>(json: Option<String>) -> T {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

pub(super) async fn list_records(c: &Client, q: &RecordQuery) -> Result<RecordPage> {
    let (clause, args) = where_clause(q);
    let params = refs(&args);
    let total: i64 = c
        .query_one(&format!("SELECT COUNT(*) {FROM}{clause}"), &params)
        .await?
        .get(0);
    let limit = q.limit.map_or("ALL".to_string(), |l| l.to_string());
    let sql = format!(
        "SELECT r.doc_id, r.kind, r.grid_id, r.household_id, r.status, r.assigned_to, r.due_at,
                r.title, r.created_at, r.updated_at, r.deleted, r.has_conflicts, r.received_at,
                f.subtype, f.urgency, f.occurred_at, f.phoned_in_at, f.closed_at, f.created_by,
                f.summary, f.incidents, rf.doc_id IS NOT NULL AND rf.settled_at IS NULL,
                (SELECT h.title FROM records h WHERE h.doc_id = r.household_id AND r.kind <> 'household'),
                f.ended_at, f.handled_at, f.unit_id, f.source_id, f.low_at, f.participants,
                f.movements, f.measure, rf.settled_at,
                (SELECT l.worker_id FROM log l WHERE l.doc_id = r.doc_id AND l.seq <= rf.settled_seq
                 ORDER BY l.seq DESC LIMIT 1)
         {FROM}{clause}
         ORDER BY COALESCE(r.updated_at, r.received_at) DESC, r.doc_id
         LIMIT {limit} OFFSET {}",
        q.offset
    );
    let rows = c.query(&sql, &params).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let kind: String = r.get(1);
        let kind: Kind = kind
            .parse()
            .map_err(|_| StorageError::Corrupt(format!("unknown kind {kind} in the index")))?;
        let settled_at: Option<String> = r.get(31);
        out.push(ListedRecord {
            row: IndexRow {
                id: r.get(0),
                kind,
                grid_id: r.get(2),
                household_id: r.get(3),
                status: r.get(4),
                assigned_to: r.get(5),
                due_at: r.get(6),
                title: r.get(7),
                created_at: r.get(8),
                updated_at: r.get(9),
                deleted: r.get(10),
                has_conflicts: r.get(11),
            },
            received_at: r.get(12),
            facts: RecordFacts {
                subtype: r.get(13),
                urgency: r.get(14),
                occurred_at: r.get(15),
                phoned_in_at: r.get(16),
                closed_at: r.get(17),
                created_by: r.get(18),
                summary: r.get::<_, Option<String>>(19).unwrap_or_default(),
                incidents: from_json(r.get(20)),
                ended_at: r.get(23),
                handled_at: r.get(24),
                unit_id: r.get(25),
                source_id: r.get(26),
                low_at: r.get(27),
                measure: r.get(30),
                participants: from_json(r.get(28)),
                movements: from_json(r.get(29)),
            },
            parallel: r.get(21),
            household_title: r.get(22),
            settled: settled_at.map(|at| Settled { at, by: r.get(32) }),
        });
    }
    Ok(RecordPage {
        rows: out,
        total: total as u64,
    })
}

pub(super) async fn tally(c: &mut Client, q: &RecordQuery) -> Result<Vec<Tally>> {
    match TallyPlan::of(q) {
        Some(plan) => tallied(c, q, &plan).await,
        None => Ok(sum_tallies(tally_indexed(&*c, q).await?)),
    }
}

/// As SQLite's: the whole days from `record_tallies`, the partial days at the range's ends over
/// the index, in one read-only snapshot.
async fn tallied(c: &mut Client, q: &RecordQuery, plan: &TallyPlan) -> Result<Vec<Tally>> {
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut conds = vec!["grid_id = ANY($1::text[])".to_string()];
    let mut args: Vec<Arg> = vec![Box::new(q.grids.clone())];
    let mut arg = |cond: &str, v: Arg| {
        args.push(v);
        conds.push(cond.replace('?', &format!("${}", args.len())));
    };
    if let Some(kinds) = super::kind_names(&q.kinds) {
        arg("kind = ANY(?::text[])", Box::new(kinds));
    }
    if !q.statuses.is_empty() {
        arg("status = ANY(?::text[])", Box::new(q.statuses.clone()));
    }
    if let Some(t) = &q.subtype {
        arg("subtype = ?::text", Box::new(t.clone()));
    }
    if let Some(d) = &plan.after_day {
        arg("day > ?::text", Box::new(d.clone()));
    }
    if let Some(d) = &plan.before_day {
        arg("day < ?::text", Box::new(d.clone()));
    }
    if plan.dated {
        conds.push("day <> ''".into());
    }
    let sql = format!(
        "SELECT grid_id, kind, status, subtype, SUM(n)::bigint FROM record_tallies WHERE {}
         GROUP BY grid_id, kind, status, subtype HAVING SUM(n) > 0",
        conds.join(" AND ")
    );
    let named = |s: String| (!s.is_empty()).then_some(s);
    let mut parts: Vec<Tally> = tx
        .query(&sql, &refs(&args))
        .await?
        .iter()
        .map(|r| Tally {
            grid_id: r.get(0),
            kind: r.get(1),
            status: named(r.get(2)),
            subtype: named(r.get(3)),
            count: r.get::<_, i64>(4) as u64,
        })
        .collect();
    for edge in &plan.edges {
        parts.extend(tally_partial_day(&tx, edge).await?);
    }
    tx.commit().await?;
    Ok(sum_tallies(parts))
}

/// A partial day's count at a range's end: read from the facts' `occurred_at` index first (a
/// day of records), then their index rows. Left to itself the planner may start from the grids'
/// records instead, which are a county's (seconds on a million records).
async fn tally_partial_day(c: &impl GenericClient, q: &RecordQuery) -> Result<Vec<Tally>> {
    let (clause, mut args) = where_clause(q);
    args.push(Box::new(q.from.clone()));
    args.push(Box::new(q.to.clone()));
    let (from, to) = (args.len() - 1, args.len());
    let sql = format!(
        "WITH day AS MATERIALIZED (
             SELECT * FROM record_facts WHERE occurred_at >= ${from}::text AND occurred_at < ${to}::text)
         SELECT r.grid_id, r.kind, r.status, f.subtype, COUNT(*)
         FROM day f JOIN records r ON r.doc_id = f.doc_id
             LEFT JOIN review_flags rf ON rf.doc_id = r.doc_id{clause}
         GROUP BY r.grid_id, r.kind, r.status, f.subtype"
    );
    Ok(tally_rows(&c.query(&sql, &refs(&args)).await?))
}

/// A count over the index itself.
async fn tally_indexed(c: &impl GenericClient, q: &RecordQuery) -> Result<Vec<Tally>> {
    let (clause, args) = where_clause(q);
    let sql = format!(
        "SELECT r.grid_id, r.kind, r.status, f.subtype, COUNT(*) {FROM}{clause}
         GROUP BY r.grid_id, r.kind, r.status, f.subtype"
    );
    Ok(tally_rows(&c.query(&sql, &refs(&args)).await?))
}

/// The rows of a grouped count: grid, kind, status, subtype, count.
fn tally_rows(rows: &[tokio_postgres::Row]) -> Vec<Tally> {
    rows.iter()
        .map(|r| Tally {
            grid_id: r.get(0),
            kind: r.get(1),
            status: r.get(2),
            subtype: r.get(3),
            count: r.get::<_, i64>(4) as u64,
        })
        .collect()
}

/// As SQLite's: the urgencies' cut-offs ride as two parallel arrays; the facts and review flags
/// are joined only when a filter needs them, so counting a county's households reads the
/// `records` index alone.
pub(super) async fn grid_counts(
    c: &mut Client,
    q: &RecordQuery,
    overdue_before: &[(String, String)],
) -> Result<Vec<GridCount>> {
    if overdue_before.is_empty()
        && let Some(plan) = TallyPlan::of(q)
    {
        return Ok(grid_totals(tallied(c, q, &plan).await?));
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
        "0::bigint".to_string()
    } else {
        let urgencies: Vec<String> = overdue_before.iter().map(|(u, _)| u.clone()).collect();
        let instants: Vec<String> = overdue_before.iter().map(|(_, at)| at.clone()).collect();
        args.push(Box::new(urgencies));
        let u = args.len();
        args.push(Box::new(instants));
        let at = args.len();
        format!(
            "SUM(CASE WHEN f.occurred_at < (SELECT o.at FROM unnest(${u}::text[], ${at}::text[])
                                                  AS o(urgency, at)
                                           WHERE o.urgency = f.urgency)
                      THEN 1 ELSE 0 END)::bigint"
        )
    };
    let sql = format!("SELECT r.grid_id, COUNT(*), {overdue} {from}{clause} GROUP BY r.grid_id");
    let rows = c.query(&sql, &refs(&args)).await?;
    Ok(rows
        .iter()
        .map(|r| GridCount {
            grid_id: r.get(0),
            count: r.get::<_, i64>(1) as u64,
            overdue: r.get::<_, Option<i64>>(2).unwrap_or(0) as u64,
        })
        .collect())
}

/// Goods on hand summed from the item's movements in SQL, as `RecordFacts::on_hand` sums them.
pub(super) async fn low_stock_counts(c: &Client, grids: &[String]) -> Result<Vec<(String, u64)>> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT r.grid_id, COUNT(*) FROM records r JOIN record_facts f ON f.doc_id = r.doc_id
                 WHERE r.kind = 'stock' AND NOT r.deleted AND f.low_at IS NOT NULL
                   AND r.grid_id = ANY($1::text[])
                   AND COALESCE((SELECT SUM(CASE m->>'kind'
                                              WHEN 'in' THEN (m->>'quantity')::double precision
                                              WHEN 'out' THEN -(m->>'quantity')::double precision
                                              ELSE 0 END)
                                 FROM jsonb_array_elements(f.movements::jsonb) m), 0) <= f.low_at
                 GROUP BY r.grid_id",
            )
            .await?,
            &[&grids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect())
}

pub(super) async fn change_sources(c: &Client, doc_id: &str) -> Result<Vec<ChangeSource>> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT hash, seq, device_id, worker_id, received_at FROM log
                 WHERE doc_id = $1 ORDER BY seq",
            )
            .await?,
            &[&doc_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ChangeSource {
                hash: to_hash(r.get(0))?,
                seq: r.get::<_, i64>(1) as u64,
                device_id: r.get(2),
                worker_id: r.get(3),
                received_at: r.get(4),
            })
        })
        .collect()
}

/// Only records with an index row: a document whose first change has not arrived is no record
/// yet. `kinds`: `None` for every kind.
pub(super) async fn changed_since(
    c: &Client,
    grids: &[String],
    kinds: Option<Vec<String>>,
    after: u64,
    limit: usize,
) -> Result<(Vec<Changed>, bool)> {
    let wanted = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT l.doc_id, MAX(l.seq) AS last FROM log l JOIN records r ON r.doc_id = l.doc_id
                 WHERE l.grid_id = ANY($1::text[]) AND l.seq > $2
                   AND ($3::text[] IS NULL OR r.kind = ANY($3::text[]))
                 GROUP BY l.doc_id ORDER BY last LIMIT $4",
            )
            .await?,
            &[&grids, &(after as i64), &kinds, &wanted],
        )
        .await?;
    let mut out: Vec<Changed> = rows
        .iter()
        .map(|r| Changed {
            doc_id: r.get(0),
            seq: r.get::<_, i64>(1) as u64,
        })
        .collect();
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

/// The facts and review flag of one document in a commit (inside its transaction).
pub(super) async fn commit_doc(
    tx: &Transaction<'_>,
    d: &DocUpdate,
    last: i64,
    now: &str,
) -> Result<()> {
    if let Some(f) = &d.facts {
        let json = |name: &str, v: Result<String, serde_json::Error>| {
            v.map_err(|e| StorageError::Invalid(format!("{name}: {e}")))
        };
        let incidents = json("incidents", serde_json::to_string(&f.incidents))?;
        let participants = json("participants", serde_json::to_string(&f.participants))?;
        let movements = json("movements", serde_json::to_string(&f.movements))?;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO record_facts (doc_id, subtype, urgency, occurred_at, phoned_in_at,
                    closed_at, created_by, summary, incidents, ended_at, handled_at, unit_id,
                    source_id, low_at, participants, movements, measure)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
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
            )
            .await?,
            &[
                &d.doc_id,
                &f.subtype,
                &f.urgency,
                &f.occurred_at,
                &f.phoned_in_at,
                &f.closed_at,
                &f.created_by,
                &f.summary,
                &incidents,
                &f.ended_at,
                &f.handled_at,
                &f.unit_id,
                &f.source_id,
                &f.low_at,
                &participants,
                &movements,
                &f.measure,
            ],
        )
        .await?;
    }
    let conflicts = d.index.as_ref().is_some_and(|i| i.has_conflicts);
    if d.parallel {
        // Raised again after it was settled, it is a new flag.
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO review_flags (doc_id, first_seq, last_seq, flagged_at, had_conflicts)
                 VALUES ($1, $2, $2, $3, $4)
                 ON CONFLICT (doc_id) DO UPDATE SET
                    last_seq = excluded.last_seq,
                    first_seq = CASE WHEN review_flags.settled_at IS NULL THEN review_flags.first_seq
                                     ELSE excluded.first_seq END,
                    flagged_at = CASE WHEN review_flags.settled_at IS NULL THEN review_flags.flagged_at
                                      ELSE excluded.flagged_at END,
                    had_conflicts = CASE WHEN review_flags.settled_at IS NULL
                                         THEN review_flags.had_conflicts OR excluded.had_conflicts
                                         ELSE excluded.had_conflicts END,
                    settled_at = NULL, settled_seq = NULL",
            )
            .await?,
            &[&d.doc_id, &last, &now, &conflicts],
        )
        .await?;
    } else if conflicts {
        tx.execute(
            &tx.prepare_cached(
                "UPDATE review_flags SET had_conflicts = TRUE
                 WHERE doc_id = $1 AND settled_at IS NULL",
            )
            .await?,
            &[&d.doc_id],
        )
        .await?;
    } else if d.index.is_some() {
        // One head and nothing held twice: whoever wrote this change had both branches before
        // them and settled the fields that differed.
        tx.execute(
            &tx.prepare_cached(
                "UPDATE review_flags SET settled_at = $3, settled_seq = $2
                 WHERE doc_id = $1 AND settled_at IS NULL AND had_conflicts",
            )
            .await?,
            &[&d.doc_id, &last, &now],
        )
        .await?;
    }
    Ok(())
}
