//! The overview per grid, and the live updates every page with a `data-live-src` uses: the
//! browser listens to `/events` (Server-Sent Events fed by `Relay::subscribe`) and re-fetches
//! the part of the page that shows data when one of its grids moved.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::area::{self, Scope};
use super::auth::{Staff, may_use_dashboard};
use super::board::{self, Timing};
use super::county;
use super::layout;
use super::supermarket;
use super::{Fail, incident_kinds, subtypes_of};
use crate::AppState;
use crate::storage::{KindFilter, RecordQuery, Tally};
use gridsync_core::record::{CaseStatus, Kind};

#[derive(Debug, Deserialize, Default)]
pub struct GridQuery {
    #[serde(default)]
    grid: String,
    /// A street or community of the scope to narrow the page to (see `area`).
    #[serde(default)]
    area: String,
}

#[derive(Default)]
struct GridRow {
    households: u64,
    visits_month: u64,
    overdue: u64,
    open_cases: u64,
    patrols_week: u64,
    incidents_week: u64,
    reports_open: u64,
    /// Open reports that reached the office (phoned in or synced) after their deadline.
    reports_late: u64,
    /// Open reports past their deadline that the office has not acknowledged yet.
    reports_awaiting: u64,
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(q): Query<GridQuery>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let (staff, scope) = area::narrowed(&state, &staff, &q.area).await?;
    let live = fragment(&state, &staff, &scope, &q.grid).await?;
    let src = format!(
        "/overview/live?{}",
        layout::query_string(&[("grid", &q.grid), ("area", &q.area)])
    );
    let body = html! {
        (county::trail(lang, &scope, "/"))
        form method="get" action="/" class="filters" {
            @if scope.wide {
                label { (lang.t("cy.area")) (layout::select("area", lang.t("cy.all"), &scope.area_options(), &q.area)) }
            } @else {
                @if !q.area.is_empty() { input type="hidden" name="area" value=(q.area); }
                label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &staff.grid_options(), &q.grid)) }
            }
            button type="submit" { (lang.t("filter")) }
            // The page shows times in the community's time zone, not the browser's.
            span class="live-state" data-live-label=(lang.t("live.updated"))
                data-utc-offset-minutes=(state.dashboard.offset.local_minus_utc() / 60) { "● " (lang.t("live")) }
        }
        div id="live" data-live-src=(src) { (live) }
    };
    Ok(layout::page(&staff, "overview", lang.t("nav.overview"), body).into_response())
}

/// The data part of the overview, re-fetched by the page when new data arrives.
pub async fn live(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(q): Query<GridQuery>,
) -> Result<Response, Fail> {
    let (staff, scope) = area::narrowed(&state, &staff, &q.area).await?;
    Ok(fragment(&state, &staff, &scope, &q.grid)
        .await?
        .into_response())
}

async fn fragment(
    state: &AppState,
    staff: &Staff,
    scope: &Scope,
    grid: &str,
) -> Result<Markup, Fail> {
    let lang = staff.lang;
    let dash = &state.dashboard;
    let storage = state.relay.queries();
    let store = |e| Fail::storage(lang, e);
    if scope.wide {
        // Counted in the store per grid, rolled up here: the same few queries for a county.
        let figures = county::by_grid(state, &staff.grids).await.map_err(store)?;
        let rolled = county::roll_up(scope, &figures);
        return Ok(county::tables(lang, scope, &rolled, "/", county::OVERVIEW));
    }
    let grids: Vec<String> = if grid.is_empty() {
        staff.grids.clone()
    } else {
        staff.grids.iter().filter(|g| *g == grid).cloned().collect()
    };
    let base = RecordQuery {
        grids: grids.clone(),
        ..RecordQuery::default()
    };
    let of = |kinds: &[Kind]| RecordQuery {
        kinds: KindFilter::Only(kinds.to_vec()),
        ..base.clone()
    };
    let all = storage
        .tally(&of(&[Kind::Household, Kind::Case]))
        .await
        .map_err(store)?;
    let month = RecordQuery {
        from: Some(dash.day_start(dash.month_start())),
        ..of(&[Kind::Visit])
    };
    let visits = storage.tally(&month).await.map_err(store)?;
    let overdue_q = RecordQuery {
        due_before: Some(dash.today().to_string()),
        ..of(&[Kind::Household])
    };
    let overdue = storage.tally(&overdue_q).await.map_err(store)?;
    let week_start = dash.day_start(dash.week_start());
    let since = dash.day_start(dash.week_start() - chrono::Duration::days(1));
    let patrols = storage
        .list_records(&RecordQuery {
            from: Some(since),
            limit: Some(5000),
            ..of(&[Kind::Patrol])
        })
        .await
        .map_err(store)?;
    let active: Vec<String> = ["draft", "queued", "received", "acknowledged", "escalated"]
        .map(String::from)
        .to_vec();
    let reports = storage
        .list_records(&RecordQuery {
            statuses: active,
            limit: Some(500),
            ..of(&[Kind::Report])
        })
        .await
        .map_err(store)?;
    let stock = storage
        .list_records(&RecordQuery {
            limit: Some(5000),
            ..of(&[Kind::Stock])
        })
        .await
        .map_err(store)?;
    let review = storage
        .list_records(&RecordQuery {
            needs_review: true,
            limit: Some(0),
            ..base.clone()
        })
        .await
        .map_err(store)?
        .total;

    let mut rows: BTreeMap<String, GridRow> = grids
        .iter()
        .map(|g| (g.clone(), GridRow::default()))
        .collect();
    let is_open = |t: &Tally| {
        t.status
            .as_deref()
            .and_then(|s| serde_json::from_value::<CaseStatus>(s.into()).ok())
            .is_some_and(|s| s.is_active())
    };
    let mut matrix: BTreeMap<(String, String), u64> = BTreeMap::new();
    for t in &all {
        let row = rows.entry(t.grid_id.clone()).or_default();
        if t.kind == "household" {
            row.households += t.count;
        } else if is_open(t) {
            row.open_cases += t.count;
            let key = (
                t.subtype.clone().unwrap_or_default(),
                t.status.clone().unwrap_or_default(),
            );
            *matrix.entry(key).or_default() += t.count;
        }
    }
    for t in &visits {
        rows.entry(t.grid_id.clone()).or_default().visits_month += t.count;
    }
    for t in &overdue {
        rows.entry(t.grid_id.clone()).or_default().overdue += t.count;
    }
    let mut incidents: BTreeMap<String, u64> = BTreeMap::new();
    for p in &patrols.rows {
        let row = rows.entry(p.row.grid_id.clone()).or_default();
        if p.facts
            .occurred_at
            .as_ref()
            .is_some_and(|t| *t >= week_start)
        {
            row.patrols_week += 1;
        }
        for i in &p.facts.incidents {
            if i.at.as_ref().is_some_and(|t| *t >= week_start) {
                row.incidents_week += 1;
                *incidents.entry(i.kind.clone()).or_default() += 1;
            }
        }
    }
    let mut timed: Vec<(Timing, &crate::storage::ListedRecord)> = reports
        .rows
        .iter()
        .map(|r| (board::timing(dash, r), r))
        .collect();
    timed.sort_by_key(|(t, _)| t.deadline);
    for (t, r) in &timed {
        let row = rows.entry(r.row.grid_id.clone()).or_default();
        row.reports_open += 1;
        row.reports_late += u64::from(t.late);
        row.reports_awaiting += u64::from(t.awaiting);
    }
    let statuses: Vec<&str> = CaseStatus::ALL
        .iter()
        .filter(|s| s.is_active())
        .map(|s| s.as_str())
        .collect();
    Ok(html! {
        @if review > 0 {
            p class="flash" { a href="/review" { (lang.t("ov.review")) (lang.colon()) strong id="review-count" { (review) } } }
        }
        table class="grid-table" id="overview" {
            thead { tr {
                th { (lang.t("grid")) }
                th class="num" { (lang.t("ov.households")) } th class="num" { (lang.t("ov.visits_month")) }
                th class="num" { (lang.t("ov.overdue")) } th class="num" { (lang.t("ov.open_cases")) }
                th class="num" { (lang.t("ov.patrols_week")) } th class="num" { (lang.t("ov.incidents_week")) }
                th class="num" { (lang.t("ov.reports_open")) } th class="num" { (lang.t("ov.reports_late")) }
                th class="num" { (lang.t("bd.awaiting")) }
            } }
            tbody {
                @for (g, r) in &rows {
                    tr data-grid=(g) {
                        th { a href={ "/records?grid=" (layout::encode(g)) } { (staff.grid_name(g)) } }
                        td class="num households" { (r.households) }
                        td class="num" { (r.visits_month) }
                        td class={ "num overdue" @if r.overdue > 0 { " warn" } } { (r.overdue) }
                        td class="num" { (r.open_cases) }
                        td class="num" { (r.patrols_week) }
                        td class="num" { (r.incidents_week) }
                        td class="num" { (r.reports_open) }
                        td class={ "num late" @if r.reports_late > 0 { " bad" } } { (r.reports_late) }
                        td class={ "num awaiting" @if r.reports_awaiting > 0 { " warn" } } { (r.reports_awaiting) }
                    }
                }
            }
        }
        div class="cols wide-first" {
            section {
                h2 { (lang.t("ov.cases_by")) }
                div class="scroll" {
                    table class="matrix" id="cases-by" {
                        thead { tr { th { (lang.t("type")) } @for s in &statuses { th class="num" { (lang.label("case_status", s)) } } } }
                        tbody {
                            @for t in subtypes_of(Kind::Case) {
                                tr { th { (lang.label("case_type", t)) }
                                    @for s in &statuses {
                                        @let n = matrix.get(&(t.to_string(), s.to_string())).copied().unwrap_or(0);
                                        td class={ "num" @if n == 0 { " zero" } } { (n) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (lang.t("ov.incidents_by")) }
                table class="matrix" id="incidents-by" { tbody {
                    @for k in incident_kinds() {
                        @let n = incidents.get(k).copied().unwrap_or(0);
                        tr { th { (lang.label("incident", k)) } td class={ "num" @if n == 0 { " zero" } } { (n) } }
                    }
                } }
            }
        }
        (supermarket::low_stock(lang, &stock.rows))
        section {
            h2 { a href="/reports" { (lang.t("ov.urgent")) } }
            (board::table(staff, dash, &timed, false))
        }
    })
}

/// How often an open event stream checks that its session still stands: the few seconds sync
/// sessions take to notice a revocation.
const SESSION_CHECK: Duration = Duration::from_secs(5);

/// Server-Sent Events: `changed` with the grid id whenever a grid in the user's scope moved.
/// Ends when the server shuts down, so a graceful shutdown is not held up by open pages, and
/// within [`SESSION_CHECK`] of the end of its session (signed out, expired, the user deactivated
/// or their password changed), so a page left open hears nothing more.
pub async fn events(State(state): State<Arc<AppState>>, staff: Staff) -> impl IntoResponse {
    let listener = Listener {
        moved: state.relay.subscribe(),
        shutdown: state.shutdown.clone(),
        check: tokio::time::interval_at(tokio::time::Instant::now() + SESSION_CHECK, SESSION_CHECK),
        grids: staff.grids,
        session_hash: staff.session_hash,
        state,
    };
    Sse::new(changes(listener)).keep_alive(KeepAlive::default())
}

/// One open event stream.
struct Listener {
    moved: tokio::sync::broadcast::Receiver<crate::relay::GridMoved>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    check: tokio::time::Interval,
    grids: Vec<String>,
    session_hash: Vec<u8>,
    state: Arc<AppState>,
}

impl Listener {
    /// The user's grids now, or `None` once the session no longer stands (a storage error
    /// included: the page's script reconnects, and its next request is checked afresh).
    async fn still_signed_in(&self) -> Option<Vec<String>> {
        let accounts = &self.state.accounts;
        let now = crate::storage::utc_string(chrono::Utc::now());
        let session = accounts.session(&self.session_hash, &now).await.ok()??;
        if !may_use_dashboard(&session.user) {
            return None;
        }
        accounts.grids_of(&session.user).await.ok().map(|(g, _)| g)
    }
}

fn changes(listener: Listener) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(listener, |mut l| async move {
        if *l.shutdown.borrow() {
            return None;
        }
        // Bounded: every turn either yields an event or ends the stream, except notices about
        // other grids, which the relay sends finitely often, and session checks, which end it
        // once the session is gone.
        loop {
            let grid = tokio::select! {
                notice = l.moved.recv() => match notice {
                    Ok(n) if l.grids.contains(&n.grid_id) => n.grid_id,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => "*".to_string(),
                    Err(RecvError::Closed) => return None,
                },
                _ = l.check.tick() => {
                    l.grids = l.still_signed_in().await?;
                    continue;
                }
                _ = l.shutdown.changed() => return None,
            };
            let event = Event::default().event("changed").data(grid);
            return Some((Ok(event), l));
        }
    })
}
