//! 考核: the assessment figures of a month, per grid worker and per grid, from the index and
//! the facts beside it (no document is loaded):
//!
//! - **visit coverage**: households visited in the month (a visit that met the household) ÷
//!   households due in it. A household is due when its next visit falls due by the month's end
//!   (as the index holds it now), when it has no next-visit date yet (never visited), or when
//!   it was visited in the month (the visit moved its date on). A worker's households are those
//!   assigned to them.
//! - **tasks handled within their deadline**: of the tasks whose deadline falls in the month,
//!   those handled by it (see `RecordFacts::handled_at`); a worker's are those dispatched to
//!   them.
//! - **urgent reports on time**: of the reports discovered in the month, those reported by
//!   their deadline (the board's rule: phoned in or received, whichever came first); a worker's
//!   are those they wrote.
//! - **patrol hours**: the length of the patrol shifts started in the month that have ended; a
//!   worker's are the shifts they logged.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use gridsync_core::record::Kind;
use maud::html;
use serde::Deserialize;

use super::auth::Staff;
use super::board::timing;
use super::co::{Period, records_of};
use super::export::{Sheet, pick};
use super::i18n::Lang;
use super::layout;
use super::tasks::{one_decimal, timing_at};
use super::{Fail, display_names, person};
use crate::AppState;
use crate::accounts::Role;
use crate::storage::RecordQuery;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    month: String,
    #[serde(default)]
    grid: String,
    #[serde(default)]
    table: String,
}

/// One worker's or one grid's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub households_due: u64,
    pub households_visited: u64,
    pub tasks_due: u64,
    pub tasks_on_time: u64,
    pub reports: u64,
    pub reports_on_time: u64,
    pub patrol_hours: f64,
}

/// `n ÷ of` as a percentage, `—` when there was nothing to do.
pub fn rate(n: u64, of: u64) -> String {
    if of == 0 {
        "—".to_string()
    } else {
        format!("{}%", one_decimal(n as f64 * 100.0 / of as f64))
    }
}

/// The month's figures by worker (username) and by grid.
pub struct Scores {
    pub period: Period,
    pub workers: BTreeMap<String, Score>,
    pub grids: BTreeMap<String, Score>,
}

pub async fn compute(
    state: &AppState,
    staff: &Staff,
    month: &str,
    grid: &str,
) -> Result<Scores, Fail> {
    let dash = &state.dashboard;
    let period = Period::of(dash, month);
    let in_month = || RecordQuery {
        from: Some(period.from.clone()),
        to: Some(period.to.clone()),
        ..RecordQuery::default()
    };
    let households =
        records_of(state, staff, grid, Kind::Household, RecordQuery::default()).await?;
    let visits = records_of(state, staff, grid, Kind::Visit, in_month()).await?;
    let tasks = records_of(state, staff, grid, Kind::Task, RecordQuery::default()).await?;
    let reports = records_of(state, staff, grid, Kind::Report, in_month()).await?;
    let patrols = records_of(state, staff, grid, Kind::Patrol, in_month()).await?;

    let mut workers: BTreeMap<String, Score> = BTreeMap::new();
    let mut grids: BTreeMap<String, Score> = staff
        .grids
        .iter()
        .filter(|g| grid.is_empty() || *g == grid)
        .map(|g| (g.clone(), Score::default()))
        .collect();
    // Every active grid worker of these grids has a row, even one with nothing to show.
    for u in state
        .accounts
        .users()
        .await
        .map_err(|e| Fail::storage(staff.lang, e))?
    {
        if u.active && u.role == Role::GridWorker {
            let (theirs, _) = state
                .accounts
                .grids_of(&u)
                .await
                .map_err(|e| Fail::storage(staff.lang, e))?;
            if theirs.iter().any(|g| grids.contains_key(g)) {
                workers.entry(u.username).or_default();
            }
        }
    }
    let mut both = |worker: Option<&str>, grid: &str, f: &dyn Fn(&mut Score)| {
        if let Some(w) = worker.filter(|w| !w.is_empty()) {
            f(workers.entry(w.to_string()).or_default());
        }
        f(grids.entry(grid.to_string()).or_default());
    };

    let visited: HashSet<&str> = visits
        .iter()
        .filter(|v| v.row.status.as_deref() == Some("met"))
        .filter_map(|v| v.row.household_id.as_deref())
        .collect();
    let month_end = period
        .month
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(period.month)
        .to_string();
    for h in &households {
        let was_visited = visited.contains(h.row.id.as_str());
        let due = was_visited
            || h.row
                .due_at
                .as_deref()
                .is_none_or(|d| d.get(..10).unwrap_or(d) < month_end.as_str());
        if !due {
            continue;
        }
        both(h.row.assigned_to.as_deref(), &h.row.grid_id, &|s| {
            s.households_due += 1;
            s.households_visited += u64::from(was_visited);
        });
    }
    let now = chrono::Utc::now();
    for t in &tasks {
        let tt = timing_at(t, now);
        let due_in_month = tt
            .deadline
            .map(crate::storage::utc_string)
            .is_some_and(|d| period.in_month(Some(&d)));
        if !due_in_month {
            continue;
        }
        // A task dispatched only to a unit counts for its grid, not for a worker.
        let worker = t
            .row
            .assigned_to
            .as_deref()
            .filter(|w| Some(*w) != t.facts.unit_id.as_deref());
        let on_time = tt.on_time == Some(true);
        both(worker, &t.row.grid_id, &|s| {
            s.tasks_due += 1;
            s.tasks_on_time += u64::from(on_time);
        });
    }
    for r in &reports {
        let on_time = timing(dash, r).on_time == Some(true);
        both(r.facts.created_by.as_deref(), &r.row.grid_id, &|s| {
            s.reports += 1;
            s.reports_on_time += u64::from(on_time);
        });
    }
    for p in &patrols {
        let hours = p.facts.duration_hours().unwrap_or(0.0);
        both(p.facts.created_by.as_deref(), &p.row.grid_id, &|s| {
            s.patrol_hours += hours;
        });
    }
    Ok(Scores {
        period,
        workers,
        grids,
    })
}

fn headers(lang: Lang, first: &'static str) -> Vec<String> {
    [
        first,
        "as.households_due",
        "as.households_visited",
        "as.coverage",
        "as.tasks_due",
        "as.tasks_on_time",
        "as.tasks_rate",
        "as.reports",
        "as.reports_on_time",
        "as.reports_rate",
        "as.patrol_hours",
    ]
    .map(|k| lang.t(k).to_string())
    .to_vec()
}

fn cells(name: String, s: &Score) -> Vec<String> {
    vec![
        name,
        s.households_due.to_string(),
        s.households_visited.to_string(),
        rate(s.households_visited, s.households_due),
        s.tasks_due.to_string(),
        s.tasks_on_time.to_string(),
        rate(s.tasks_on_time, s.tasks_due),
        s.reports.to_string(),
        s.reports_on_time.to_string(),
        rate(s.reports_on_time, s.reports),
        one_decimal(s.patrol_hours),
    ]
}

/// The two tables: per grid worker, per grid with a total.
pub async fn sheets(
    state: &AppState,
    staff: &Staff,
    p: &Params,
    lang: Lang,
) -> Result<(Period, Vec<Sheet>), Fail> {
    let scores = compute(state, staff, &p.month, &p.grid).await?;
    let people = display_names(state, lang).await?;
    let month = scores.period.label();
    let workers = scores
        .workers
        .iter()
        .map(|(w, s)| cells(person(&people, w), s))
        .collect();
    let mut total = Score::default();
    let mut grids: Vec<Vec<String>> = Vec::new();
    for (g, s) in &scores.grids {
        grids.push(cells(staff.grid_name(g), s));
        total.households_due += s.households_due;
        total.households_visited += s.households_visited;
        total.tasks_due += s.tasks_due;
        total.tasks_on_time += s.tasks_on_time;
        total.reports += s.reports;
        total.reports_on_time += s.reports_on_time;
        total.patrol_hours += s.patrol_hours;
    }
    grids.push(cells(lang.t("total").to_string(), &total));
    Ok((
        scores.period,
        vec![
            Sheet {
                id: "by-worker",
                title: format!("{} {month}", lang.t("as.by_worker")),
                headers: headers(lang, "as.worker"),
                rows: workers,
            },
            Sheet {
                id: "by-grid",
                title: format!("{} {month}", lang.t("as.by_grid")),
                headers: headers(lang, "grid"),
                rows: grids,
            },
        ],
    ))
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<Params>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let (period, sheets) = sheets(&state, &staff, &p, lang).await?;
    let month = period.label();
    let qs = layout::query_string(&[("month", &month), ("grid", &p.grid)]);
    let body = html! {
        form method="get" action="/assessment" class="filters" {
            label { (lang.t("st.month")) input type="month" name="month" value=(month); }
            label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &staff.grid_options(), &p.grid)) }
            button type="submit" { (lang.t("st.show")) }
        }
        @for s in &sheets { (s.html(lang, "/assessment/export", &qs)) }
        p class="muted" { (lang.t("as.hint")) }
    };
    let title = format!("{} {month}", lang.t("nav.assessment"));
    Ok(layout::page(&staff, "assessment", &title, body).into_response())
}

fn filename(period: &Period, table: &str) -> String {
    format!(
        "gridsync-assessment-{}-{}",
        period.month.format("%Y%m"),
        table
    )
}

pub async fn export_csv(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<Params>,
) -> Result<Response, Fail> {
    let (period, sheets) = sheets(&state, &staff, &p, Lang::Zh).await?;
    let sheet = pick(&sheets, &p.table).ok_or_else(|| Fail::not_found(staff.lang))?;
    Ok(sheet.csv_response(&filename(&period, sheet.id)))
}

pub async fn export_xlsx(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<Params>,
) -> Result<Response, Fail> {
    let (period, sheets) = sheets(&state, &staff, &p, Lang::Zh).await?;
    let sheet = pick(&sheets, &p.table).ok_or_else(|| Fail::not_found(staff.lang))?;
    Ok(sheet.xlsx_response(&filename(&period, sheet.id), staff.lang))
}
