//! The urgent-reports board (社情民意限时报送): each open report's deadline from its discovery
//! time and urgency under the office's rules, the time left, whether it was reported on time,
//! and whether the office still has to acknowledge it. A report counts as reported when it was
//! phoned in or when the relay first received it, whichever came first: one phoned in on time
//! is on time however late its data synced. Two things are kept apart: a report reported late
//! (the worker's side, shown in red) and one past its deadline that the office has not
//! acknowledged yet (the office's side, "past deadline, not acknowledged").

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gridsync_core::record::{Kind, Urgency};
use maud::{Markup, html};

use super::area::{self, Scope};
use super::auth::Staff;
use super::county;
use super::layout;
use super::{Dashboard, Fail};
use crate::AppState;
use crate::storage::{KindFilter, ListedRecord, RecordQuery};

/// A report's timing under the office's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub deadline: Option<DateTime<Utc>>,
    /// When it was reported: phoned in, or first received by the relay, whichever was first.
    pub reported_at: Option<DateTime<Utc>>,
    /// Reported by the deadline.
    pub on_time: Option<bool>,
    /// Acknowledged, escalated or closed by the office.
    pub handled: bool,
    /// Reported after the deadline.
    pub late: bool,
    /// Past the deadline and not handled by the office yet, however it was reported.
    pub awaiting: bool,
}

fn parse(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub fn timing(dash: &Dashboard, r: &ListedRecord) -> Timing {
    timing_at(dash, r, Utc::now())
}

pub fn timing_at(dash: &Dashboard, r: &ListedRecord, now: DateTime<Utc>) -> Timing {
    let urgency: Option<Urgency> = r
        .facts
        .urgency
        .as_deref()
        .and_then(|u| serde_json::from_value(u.into()).ok());
    let discovered = parse(r.facts.occurred_at.as_deref());
    let deadline = discovered
        .zip(urgency)
        .map(|(d, u)| dash.rules.deadline(d, u));
    let received = parse(Some(&r.received_at));
    let phoned = parse(r.facts.phoned_in_at.as_deref());
    let reported_at = match (phoned, received) {
        (Some(p), Some(r)) => Some(p.min(r)),
        (p, r) => p.or(r),
    };
    let handled = matches!(
        r.row.status.as_deref(),
        Some("acknowledged" | "escalated" | "closed")
    );
    let on_time = deadline.zip(reported_at).map(|(d, at)| at <= d);
    Timing {
        deadline,
        reported_at,
        on_time,
        handled,
        late: on_time == Some(false),
        awaiting: !handled && deadline.is_some_and(|d| now > d),
    }
}

pub async fn page_handler(state: &AppState, staff: &Staff) -> Result<Markup, Fail> {
    let lang = staff.lang;
    let dash = &state.dashboard;
    let q = RecordQuery {
        grids: staff.grids.clone(),
        kinds: KindFilter::one(Kind::Report),
        statuses: ["draft", "queued", "received", "acknowledged", "escalated"]
            .map(String::from)
            .to_vec(),
        limit: Some(1000),
        ..RecordQuery::default()
    };
    let found = state
        .relay
        .queries()
        .list_records(&q)
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let mut timed: Vec<(Timing, &ListedRecord)> =
        found.rows.iter().map(|r| (timing(dash, r), r)).collect();
    timed.sort_by_key(|(t, _)| (t.handled, t.deadline));
    let rules = dash.rules;
    Ok(html! {
        p class="muted" {
            (lang.t("bd.rules")) (lang.colon())
            (lang.label("urgency", "critical")) " " (rules.critical_minutes) " " (lang.t("bd.minutes")) " · "
            (lang.label("urgency", "urgent")) " " (rules.urgent_minutes) " " (lang.t("bd.minutes")) " · "
            (lang.label("urgency", "normal")) " " (rules.normal_minutes) " " (lang.t("bd.minutes"))
        }
        (table(staff, dash, &timed, true))
    })
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Fragment {
    #[serde(default)]
    fragment: String,
    /// A street or community of the scope to narrow the board to (see `area`).
    #[serde(default)]
    area: String,
}

/// A street's or the county's board: open reports and those past their deadline per
/// community and in total, counted in the store; each community links to its own board.
async fn rolled_up(state: &AppState, staff: &Staff, scope: &Scope) -> Result<Markup, Fail> {
    let mut by_grid = std::collections::BTreeMap::new();
    county::reports_by_grid(state, &staff.grids, &mut by_grid)
        .await
        .map_err(|e| Fail::storage(staff.lang, e))?;
    let rolled = county::roll_up(scope, &by_grid);
    Ok(county::tables(
        staff.lang,
        scope,
        &rolled,
        "/reports",
        county::REPORTS,
    ))
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(f): Query<Fragment>,
) -> Result<Response, Fail> {
    let (staff, scope) = area::narrowed(&state, &staff, &f.area).await?;
    let body = if scope.wide {
        rolled_up(&state, &staff, &scope).await?
    } else {
        page_handler(&state, &staff).await?
    };
    if !f.fragment.is_empty() {
        return Ok(body.into_response());
    }
    let lang = staff.lang;
    let src = format!(
        "/reports?{}",
        layout::query_string(&[("fragment", "1"), ("area", &f.area)])
    );
    let wrapped = html! {
        (county::trail(lang, &scope, "/reports"))
        div id="live" data-live-src=(src) { (body) }
    };
    Ok(layout::page(&staff, "reports", lang.t("nav.reports"), wrapped).into_response())
}

/// The reports table; with `actions`, buttons to acknowledge or escalate.
pub fn table(
    staff: &Staff,
    dash: &Dashboard,
    rows: &[(Timing, &ListedRecord)],
    actions: bool,
) -> Markup {
    let lang = staff.lang;
    html! {
        @if rows.is_empty() { p class="muted" { (lang.t("none")) } } @else {
        table class="board" id="reports" {
            thead { tr {
                th { (lang.t("grid")) } th { (lang.t("type")) } th { (lang.label("field", "urgency")) }
                th { (lang.t("title")) } th { (lang.t("bd.discovered")) } th { (lang.t("bd.deadline")) }
                th { (lang.t("bd.left")) } th { (lang.t("bd.reported")) } th { (lang.t("status")) }
                @if actions { th {} }
            } }
            tbody {
                @for (t, r) in rows {
                    tr class={ @if t.late { "late" } } data-id=(r.row.id) {
                        td class="grid" { (staff.grid_name(&r.row.grid_id)) }
                        td class="type" { (lang.label("report_type", r.facts.subtype.as_deref().unwrap_or(""))) }
                        td class="urgency" { (lang.label("urgency", r.facts.urgency.as_deref().unwrap_or(""))) }
                        td class="title" { a href={ "/records/" (r.row.id) } { (layout::show_json(&r.facts.summary.clone().into(), 40)) } }
                        td class="time" { (r.facts.occurred_at.as_deref().map(|s| dash.show_time(s)).unwrap_or_default()) }
                        td class="time" { (t.deadline.map(|d| dash.show_time(&d.to_rfc3339())).unwrap_or_default()) }
                        td class="left" { (left(lang, t)) }
                        td class="reported" {
                            @match t.on_time {
                                Some(true) => span class="ok" { (lang.t("bd.on_time")) },
                                Some(false) => span class="bad" { (lang.t("bd.late")) },
                                None => "—",
                            }
                            @if let Some(p) = &r.facts.phoned_in_at {
                                br; small class="muted" { (lang.t("bd.phoned")) " " (dash.show_time(p)) }
                            }
                        }
                        td class="status" { (super::status_label(lang, Kind::Report, r.row.status.as_deref())) }
                        @if actions {
                            td class="actions" { div class="buttons" {
                                @if !t.handled {
                                    (button(staff, &r.row.id, "acknowledged", lang.t("act.acknowledge")))
                                }
                                @if r.row.status.as_deref() != Some("escalated") {
                                    (button(staff, &r.row.id, "escalated", lang.t("act.escalate")))
                                }
                            } }
                        }
                    }
                }
            }
        }
        }
    }
}

fn left(lang: super::Lang, t: &Timing) -> Markup {
    let Some(deadline) = t.deadline else {
        return html! { "—" };
    };
    if t.handled {
        return html! { span class="muted" { (lang.t("bd.handled")) } };
    }
    // Counts down to the deadline; past it, the office's part is what is left to do.
    html! {
        span class={ "countdown" @if t.awaiting { " warn" } }
            data-deadline=(deadline.to_rfc3339())
            data-after=(lang.t("bd.awaiting")) data-min=(lang.t("bd.minutes")) {
            @if t.awaiting { (lang.t("bd.awaiting")) }
            @else { ((deadline - Utc::now()).num_minutes().max(0)) " " (lang.t("bd.minutes")) }
        }
    }
}

/// Where a board's button sends the browser back to: the board as it was asked for (narrowed
/// to a community, `?area=`), never its live fragment.
fn back_to(staff: &Staff) -> String {
    let Some(query) = staff.path.strip_prefix("/reports?") else {
        return "/reports".into();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.starts_with("area="))
        .collect();
    if kept.is_empty() {
        "/reports".into()
    } else {
        format!("/reports?{}", kept.join("&"))
    }
}

fn button(staff: &Staff, id: &str, to: &str, label: &str) -> Markup {
    html! {
        form method="post" action={ "/records/" (id) "/act" } class="inline" {
            (layout::csrf_field(staff))
            input type="hidden" name="op" value="status";
            input type="hidden" name="to" value=(to);
            input type="hidden" name="back" value=(back_to(staff));
            button type="submit" { (label) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DashboardConfig;
    use crate::storage::RecordFacts;
    use gridsync_core::record::IndexRow;

    fn report(
        discovered: &str,
        phoned: Option<&str>,
        received: &str,
        status: &str,
    ) -> ListedRecord {
        ListedRecord {
            row: IndexRow {
                id: "r".into(),
                kind: Kind::Report,
                grid_id: "g1".into(),
                household_id: None,
                status: Some(status.into()),
                assigned_to: None,
                due_at: None,
                title: String::new(),
                created_at: None,
                updated_at: None,
                deleted: false,
                has_conflicts: false,
            },
            received_at: received.into(),
            facts: RecordFacts {
                urgency: Some("critical".into()),
                occurred_at: Some(discovered.into()),
                phoned_in_at: phoned.map(String::from),
                ..RecordFacts::default()
            },
            household_title: None,
            parallel: false,
            settled: None,
        }
    }

    #[test]
    fn test_report_phoned_in_on_time_counts_as_on_time_though_synced_late() {
        let dash = Dashboard::new(&DashboardConfig::default());
        let now = "2026-11-02T12:00:00Z".parse().unwrap();
        // Critical: 20 minutes. Phoned in after 15, its data reached the relay after 3 hours.
        let r = report(
            "2026-11-02T08:00:00Z",
            Some("2026-11-02T08:15:00Z"),
            "2026-11-02T11:00:00Z",
            "received",
        );
        let t = timing_at(&dash, &r, now);
        assert_eq!(t.on_time, Some(true));
        assert!(!t.late, "phoned in on time is not late");
        assert!(
            t.awaiting,
            "still not acknowledged by the office after the deadline"
        );
        let late = report(
            "2026-11-02T08:00:00Z",
            None,
            "2026-11-02T11:00:00Z",
            "acknowledged",
        );
        let t = timing_at(&dash, &late, now);
        assert_eq!(
            (t.on_time, t.late, t.awaiting, t.handled),
            (Some(false), true, false, true)
        );
    }
}
