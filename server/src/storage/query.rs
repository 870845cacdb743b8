//! What the office dashboard asks the store: filtered lists and counts over the query index,
//! the extra facts it filters on, and who uploaded each change of a document.
//!
//! Every list is answered from the index tables alone; no document is loaded.

use chrono::{DateTime, SecondsFormat, Utc};
use gridsync_core::protocol::Hash;
use gridsync_core::record::{IndexRow, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::KindFilter;

/// A list request. Every filter is optional except the grids: a record outside `grids` is
/// never returned (an empty list of grids returns nothing), so scope is decided by the caller
/// once and cannot be forgotten by a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordQuery {
    pub grids: Vec<String>,
    /// The kinds listed ([`KindFilter::All`] by default).
    pub kinds: KindFilter,
    /// Any of these statuses (all when empty).
    pub statuses: Vec<String>,
    /// Case type, report category, visit type or household type.
    pub subtype: Option<String>,
    /// The responsible worker or the record's author (username).
    pub worker: Option<String>,
    /// `occurred_at` at or after this instant (RFC 3339, UTC) ...
    pub from: Option<String>,
    /// ... and strictly before this one.
    pub to: Option<String>,
    /// Due strictly before this (a date or an instant): "overdue" lists.
    pub due_before: Option<String>,
    /// Part of the title or summary (ASCII case-insensitive), or the exact record id.
    pub search: Option<String>,
    /// Only records with field conflicts or parallel edits awaiting review.
    pub needs_review: bool,
    /// Only records whose review was settled at or after this instant (RFC 3339, UTC): the
    /// queue's "recently settled".
    pub settled_since: Option<String>,
    /// Only records about this household: its visits, cases and tasks (and the household
    /// itself, whose index row names it too).
    pub household: Option<String>,
    /// Only these records (all when empty).
    pub ids: Vec<String>,
    pub include_deleted: bool,
    pub offset: usize,
    /// At most this many rows (no limit when `None`).
    pub limit: Option<usize>,
}

/// The dashboard's facts about one record beyond the shared index row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordFacts {
    pub subtype: Option<String>,
    pub urgency: Option<String>,
    /// The instant the record is about (UTC, `YYYY-MM-DDTHH:MM:SSZ`): a visit's or patrol's
    /// start, a report's discovery, otherwise the creation.
    pub occurred_at: Option<String>,
    pub phoned_in_at: Option<String>,
    /// When a case or report was first seen closed; cleared when it is reopened.
    pub closed_at: Option<String>,
    pub created_by: Option<String>,
    pub summary: String,
    pub incidents: Vec<IncidentFact>,
    /// When a patrol shift or an activity ended (UTC, like `occurred_at`).
    pub ended_at: Option<String>,
    /// When a task was handled: the time on its last handling entry (`updates[]` with status
    /// `handled`), else the stamp of the write that handled it. Kept from the first write that
    /// saw it handled, verified or closed, and cleared when it is sent back or reopened.
    pub handled_at: Option<String>,
    /// A volunteer's unit, an activity's organising unit, the unit a task is dispatched to.
    pub unit_id: Option<String>,
    /// The record a task came from.
    pub source_id: Option<String>,
    /// A stock item's low-stock level ...
    pub low_at: Option<f64>,
    /// ... and its unit of measure (件, 袋, 斤).
    pub measure: Option<String>,
    /// An activity's participants with their hours.
    pub participants: Vec<ParticipantFact>,
    /// A stock item's movements, in and out.
    pub movements: Vec<MovementFact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentFact {
    pub kind: String,
    pub at: Option<String>,
}

/// Who took part in an activity, for how long.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParticipantFact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volunteer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<String>,
    #[serde(default)]
    pub hours: f64,
}

/// Goods coming into the love supermarket or going out of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MovementFact {
    /// `in` or `out`.
    pub kind: String,
    pub quantity: f64,
    /// UTC, like `occurred_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donor_unit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donor_name: Option<String>,
}

impl RecordFacts {
    /// Hours a patrol shift or an activity lasted, when both ends are known and in order.
    pub fn duration_hours(&self) -> Option<f64> {
        let at = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        };
        let (start, end) = (at(&self.occurred_at)?, at(&self.ended_at)?);
        let secs = (end - start).num_seconds();
        (secs >= 0).then(|| secs as f64 / 3600.0)
    }

    /// What a stock item has on hand: goods in minus goods out (as `stock::on_hand` computes
    /// it on devices).
    pub fn on_hand(&self) -> f64 {
        self.movements
            .iter()
            .map(|m| match m.kind.as_str() {
                "in" => m.quantity,
                "out" => -m.quantity,
                _ => 0.0,
            })
            .sum()
    }
}

/// One row of a list: the index row, when the relay first had the record, and its facts.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedRecord {
    pub row: IndexRow,
    /// When the relay first held the complete record (server clock).
    pub received_at: String,
    pub facts: RecordFacts,
    /// The title of the household a visit or case is about, when the relay holds it.
    pub household_title: Option<String>,
    /// Edited in parallel and not reviewed yet.
    pub parallel: bool,
    /// Its review was settled: by a later change that left no field holding concurrent values,
    /// or by staff on the review page. `None` while it awaits review or was never flagged.
    pub settled: Option<Settled>,
}

/// When a record's review was settled, and who wrote the change that settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// UTC, as the relay's clock had it.
    pub at: String,
    /// The user id the log names for the record's change that settled it.
    pub by: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordPage {
    pub rows: Vec<ListedRecord>,
    /// Rows matching the filters, before offset and limit.
    pub total: u64,
}

/// A count of matching records by grid, kind, status and subtype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub grid_id: String,
    pub kind: String,
    pub status: Option<String>,
    pub subtype: Option<String>,
    pub count: u64,
}

/// Per grid, how many records matched and how many of them were past a deadline
/// ([`crate::storage::Queries::grid_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GridCount {
    pub grid_id: String,
    pub count: u64,
    pub overdue: u64,
}

/// How a count is read from the per-grid tallies (SQLite's migration 012, PostgreSQL's 004):
/// the whole UTC days of an `occurred_at` range summed from `record_tallies`, the partial days
/// at its ends counted over the index as queries of their own. A county's month of visits is
/// then a few thousand tally rows and two partial days of records, not a count over every
/// record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TallyPlan {
    /// Tallies of days strictly after this one (UTC `YYYY-MM-DD`) ...
    pub after_day: Option<String>,
    /// ... and strictly before this one.
    pub before_day: Option<String>,
    /// Whether the range is bounded at all: then a record with no `occurred_at` is not counted
    /// (its tally's day is '').
    pub dated: bool,
    /// The partial days at the range's ends: the query narrowed to each, counted over the index.
    pub edges: Vec<RecordQuery>,
}

impl TallyPlan {
    /// The plan for counting `q`, or `None` when a filter is one no tally keeps (a worker, a
    /// search, a review state, a household, ids, a due date, deleted records, a status or
    /// subtype that is empty, a range within one day): then the count is made over the index.
    pub(crate) fn of(q: &RecordQuery) -> Option<TallyPlan> {
        let kept = q.worker.is_none()
            && q.due_before.is_none()
            && q.search.is_none()
            && !q.needs_review
            && q.settled_since.is_none()
            && q.household.is_none()
            && q.ids.is_empty()
            && !q.include_deleted
            && !q.statuses.iter().any(String::is_empty)
            && q.subtype.as_deref() != Some("");
        if !kept {
            return None;
        }
        let day = |t: &str| {
            let d = t.get(..10)?;
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
            Some(d.to_string())
        };
        let next_day = |d: &str| {
            let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
            Some(date.succ_opt()?.format("%Y-%m-%d").to_string())
        };
        let edge = |from: &str, to: &str| RecordQuery {
            from: Some(from.to_string()),
            to: Some(to.to_string()),
            offset: 0,
            limit: None,
            ..q.clone()
        };
        let (from, to) = (q.from.as_deref(), q.to.as_deref());
        // Either end that is not an instant: no plan.
        let first = match from {
            Some(f) => Some(day(f)?),
            None => None,
        };
        let last = match to {
            Some(t) => Some(day(t)?),
            None => None,
        };
        let mut edges = Vec::new();
        if let (Some(f), Some(first)) = (from, &first) {
            if last.as_ref().is_some_and(|last| last <= first) {
                return None;
            }
            edges.push(edge(f, &next_day(first)?));
        }
        if let (Some(t), Some(last)) = (to, &last) {
            // A bare date sorts before every instant of its day.
            edges.push(edge(last, t));
        }
        Some(TallyPlan {
            dated: from.is_some() || to.is_some(),
            after_day: first,
            before_day: last,
            edges,
        })
    }
}

/// Tallies of one key added up (the tallied whole days and the counted partial days), without
/// the keys that came to nothing.
pub(crate) fn sum_tallies(parts: impl IntoIterator<Item = Tally>) -> Vec<Tally> {
    let mut sums: std::collections::BTreeMap<_, u64> = std::collections::BTreeMap::new();
    for t in parts {
        *sums
            .entry((t.grid_id, t.kind, t.status, t.subtype))
            .or_default() += t.count;
    }
    sums.into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|((grid_id, kind, status, subtype), count)| Tally {
            grid_id,
            kind,
            status,
            subtype,
            count,
        })
        .collect()
}

/// Tallies added up per grid, as `grid_counts` answers (nothing is overdue: a count with
/// deadlines is made over the index).
pub(crate) fn grid_totals(parts: impl IntoIterator<Item = Tally>) -> Vec<GridCount> {
    let mut sums: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for t in parts {
        *sums.entry(t.grid_id).or_default() += t.count;
    }
    sums.into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(grid_id, count)| GridCount {
            grid_id,
            count,
            overdue: 0,
        })
        .collect()
}

/// Who uploaded one change of a document, from the relay's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSource {
    pub hash: Hash,
    pub seq: u64,
    pub device_id: String,
    pub worker_id: String,
    pub received_at: String,
}

/// An instant as `YYYY-MM-DDTHH:MM:SSZ` in UTC, so that text order is time order.
pub fn utc_string(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Normalises an RFC 3339 instant (any offset) or a plain date to [`utc_string`] form.
pub fn normalise_instant(s: &str) -> Option<String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(utc_string(t.with_timezone(&Utc)));
    }
    s.parse::<chrono::NaiveDate>()
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| utc_string(t.and_utc()))
}

impl RecordFacts {
    /// Every field [`RecordFacts::from_fields`] reads (see `IndexRow::FIELDS`).
    pub const FIELDS: &[&str] = &[
        "status",
        "updated_at",
        "created_at",
        "created_by",
        "household_type",
        "head_name",
        "visit_type",
        "started_at",
        "observations",
        "team",
        "incidents",
        "case_type",
        "subject_name",
        "responsible",
        "category",
        "urgency",
        "discovered_at",
        "phoned_in_at",
        "place",
        "description",
        "name",
        "contact_person",
        "post",
        "title",
        "item",
        "assignee",
        "source",
        "unit_type",
        "activity_type",
        "ended_at",
        "unit_id",
        "organiser_unit_id",
        "assignee_unit_id",
        "source_id",
        "updates",
        "low_at",
        "measure",
        "participants",
        "movements",
    ];

    /// Derives the facts from a record's fields.
    pub fn from_fields(kind: Kind, f: &Map<String, Value>) -> RecordFacts {
        let s = |name: &str| f.get(name).and_then(Value::as_str).map(str::to_string);
        let instant = |name: &str| s(name).as_deref().and_then(normalise_instant);
        let text = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| s(n))
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let closed = matches!(s("status").as_deref(), Some("closed"));
        let closed_at = closed
            .then(|| instant("updated_at").or_else(|| instant("created_at")))
            .flatten();
        let mut facts = RecordFacts {
            created_by: s("created_by"),
            closed_at,
            occurred_at: instant("created_at"),
            subtype: kind.spec().subtype.and_then(s),
            ..RecordFacts::default()
        };
        match kind {
            Kind::Household => {
                facts.summary = text(&["head_name"]);
            }
            Kind::Visit => {
                facts.occurred_at = instant("started_at").or(facts.occurred_at);
                facts.summary = truncate(&text(&["observations"]), 80);
            }
            Kind::Patrol => {
                facts.occurred_at = instant("started_at").or(facts.occurred_at);
                facts.ended_at = instant("ended_at");
                let team = f
                    .get("team")
                    .and_then(Value::as_array)
                    .map(|t| {
                        t.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("、")
                    })
                    .unwrap_or_default();
                facts.summary = team;
                facts.incidents = f
                    .get("incidents")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|i| {
                                Some(IncidentFact {
                                    kind: i.get("kind")?.as_str()?.to_string(),
                                    at: i
                                        .get("occurred_at")
                                        .and_then(Value::as_str)
                                        .and_then(normalise_instant),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Kind::Case => {
                facts.summary = text(&["subject_name", "responsible"]);
            }
            Kind::Report => {
                facts.urgency = s("urgency");
                facts.occurred_at = instant("discovered_at").or(facts.occurred_at);
                facts.phoned_in_at = instant("phoned_in_at");
                facts.summary = truncate(&text(&["place", "description"]), 80);
            }
            Kind::Unit => facts.summary = text(&["name", "contact_person"]),
            Kind::Volunteer => {
                facts.summary = text(&["name", "post"]);
                facts.unit_id = s("unit_id");
            }
            Kind::Activity => {
                facts.occurred_at = instant("started_at").or(facts.occurred_at);
                facts.ended_at = instant("ended_at");
                facts.summary = truncate(&text(&["title", "place"]), 80);
                facts.unit_id = s("organiser_unit_id");
                facts.participants = entries(f, "participants")
                    .map(|p| ParticipantFact {
                        volunteer_id: str_of(p, "volunteer_id"),
                        unit_id: str_of(p, "unit_id"),
                        hours: p.get("hours").and_then(Value::as_f64).unwrap_or(0.0),
                    })
                    .filter(|p| p.hours.is_finite())
                    .collect();
            }
            Kind::Stock => {
                facts.summary = text(&["item"]);
                facts.low_at = f.get("low_at").and_then(Value::as_f64);
                facts.measure = s("measure");
                facts.movements = entries(f, "movements")
                    .filter_map(|m| {
                        Some(MovementFact {
                            kind: str_of(m, "kind")?,
                            quantity: m.get("quantity").and_then(Value::as_f64)?,
                            at: str_of(m, "at").as_deref().and_then(normalise_instant),
                            household_id: str_of(m, "household_id"),
                            case_id: str_of(m, "case_id"),
                            donor_unit_id: str_of(m, "donor_unit_id"),
                            donor_name: str_of(m, "donor_name"),
                        })
                    })
                    .filter(|m| m.quantity.is_finite())
                    .collect();
            }
            Kind::Task => {
                facts.summary = truncate(&text(&["title", "assignee"]), 80);
                facts.unit_id = s("assignee_unit_id");
                facts.source_id = s("source_id");
                let status = s("status");
                if matches!(status.as_deref(), Some("handled" | "verified" | "closed")) {
                    let handled = entries(f, "updates")
                        .filter(|u| u.get("status").and_then(Value::as_str) == Some("handled"))
                        .filter_map(|u| str_of(u, "at").as_deref().and_then(normalise_instant))
                        .max();
                    facts.handled_at = handled
                        .or_else(|| instant("updated_at"))
                        .or_else(|| instant("created_at"));
                }
            }
            Kind::HouseholdPrivate => {}
        }
        facts
    }
}

/// The entries of a list field that are maps.
fn entries<'a>(
    f: &'a Map<String, Value>,
    list: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    f.get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn str_of(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Whether a record matches a query's filters (paging aside), given whether its review flag is
/// open and when it was settled. The memory backend filters with this; the SQLite backend says
/// the same in SQL, and the conformance suite holds them equal.
pub(crate) fn matches(
    q: &RecordQuery,
    row: &IndexRow,
    facts: &RecordFacts,
    flagged: bool,
    settled_at: Option<&str>,
) -> bool {
    let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
    q.grids.contains(&row.grid_id)
        && q.kinds.admits(row.kind)
        && (q.statuses.is_empty() || row.status.as_ref().is_some_and(|s| any(&q.statuses, s)))
        && q.subtype
            .as_ref()
            .is_none_or(|t| facts.subtype.as_ref() == Some(t))
        && q.worker.as_ref().is_none_or(|w| {
            row.assigned_to.as_ref() == Some(w) || facts.created_by.as_ref() == Some(w)
        })
        && q.from
            .as_ref()
            .is_none_or(|from| facts.occurred_at.as_ref().is_some_and(|t| t >= from))
        && q.to
            .as_ref()
            .is_none_or(|to| facts.occurred_at.as_ref().is_some_and(|t| t < to))
        && q.due_before
            .as_ref()
            .is_none_or(|d| row.due_at.as_ref().is_some_and(|due| due < d))
        && q.search.as_ref().is_none_or(|search| {
            let needle = search.to_ascii_lowercase();
            row.title.to_ascii_lowercase().contains(&needle)
                || facts.summary.to_ascii_lowercase().contains(&needle)
                || row.id == *search
        })
        && (!q.needs_review || row.has_conflicts || flagged)
        && q.settled_since
            .as_ref()
            .is_none_or(|since| settled_at.is_some_and(|t| t >= since.as_str()))
        && q.household
            .as_ref()
            .is_none_or(|h| row.household_id.as_ref() == Some(h))
        && (q.ids.is_empty() || q.ids.contains(&row.id))
        && (q.include_deleted || !row.deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_a_range_is_whole_days_from_the_tallies_and_its_partial_ends_from_the_index() {
        let q = |from: Option<&str>, to: Option<&str>| RecordQuery {
            grids: vec!["g".into()],
            from: from.map(String::from),
            to: to.map(String::from),
            ..RecordQuery::default()
        };
        let ends = |p: &TallyPlan| -> Vec<(String, String)> {
            p.edges
                .iter()
                .map(|e| (e.from.clone().unwrap(), e.to.clone().unwrap()))
                .collect()
        };
        let month = TallyPlan::of(&q(
            Some("2026-11-30T16:00:00Z"),
            Some("2026-12-31T16:00:00Z"),
        ))
        .unwrap();
        assert_eq!(month.after_day.as_deref(), Some("2026-11-30"));
        assert_eq!(month.before_day.as_deref(), Some("2026-12-31"));
        assert!(month.dated);
        assert_eq!(
            ends(&month),
            [
                ("2026-11-30T16:00:00Z".into(), "2026-12-01".into()),
                ("2026-12-31".into(), "2026-12-31T16:00:00Z".into())
            ]
        );
        let open = TallyPlan::of(&q(None, None)).unwrap();
        assert!(!open.dated && open.edges.is_empty() && open.after_day.is_none());
        let since = TallyPlan::of(&q(Some("2026-12-31T23:00:00Z"), None)).unwrap();
        assert_eq!(
            ends(&since),
            [("2026-12-31T23:00:00Z".into(), "2027-01-01".into())]
        );
        // Within one day, backwards, or not an instant: counted over the index.
        assert_eq!(
            TallyPlan::of(&q(
                Some("2026-12-01T01:00:00Z"),
                Some("2026-12-01T02:00:00Z")
            )),
            None
        );
        assert_eq!(
            TallyPlan::of(&q(Some("2026-12-02"), Some("2026-12-01"))),
            None
        );
        assert_eq!(TallyPlan::of(&q(Some("yesterday"), None)), None);
        let by_worker = RecordQuery {
            worker: Some("wang".into()),
            ..q(None, None)
        };
        assert_eq!(TallyPlan::of(&by_worker), None);
    }

    #[test]
    fn test_report_facts_normalise_times_to_utc() {
        let Value::Object(f) = json!({
            "category": "dispute", "urgency": "critical", "status": "received",
            "discovered_at": "2026-11-02T08:00:00+08:00", "phoned_in_at": "2026-11-02T00:10:00Z",
            "place": "3栋", "description": "邻里纠纷", "created_by": "wang",
        }) else {
            unreachable!()
        };
        let facts = RecordFacts::from_fields(Kind::Report, &f);
        assert_eq!(facts.occurred_at.as_deref(), Some("2026-11-02T00:00:00Z"));
        assert_eq!(facts.phoned_in_at.as_deref(), Some("2026-11-02T00:10:00Z"));
        assert_eq!(facts.subtype.as_deref(), Some("dispute"));
        assert_eq!(facts.summary, "3栋 邻里纠纷");
        assert_eq!(facts.closed_at, None);
    }

    #[test]
    fn test_patrol_facts_list_incidents_by_kind() {
        let Value::Object(f) = json!({
            "started_at": "2026-11-02T20:00:00Z", "team": ["王", "李"],
            "incidents": [{"kind": "fire", "occurred_at": "2026-11-02T20:30:00Z", "action": "handled"}],
        }) else {
            unreachable!()
        };
        let facts = RecordFacts::from_fields(Kind::Patrol, &f);
        assert_eq!(facts.summary, "王、李");
        assert_eq!(facts.incidents.len(), 1);
        assert_eq!(facts.incidents[0].kind, "fire");
    }
}
