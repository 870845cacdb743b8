//! 共驻共建: the co-building units, the volunteers with the hours they gave, and the activities.
//! Hours are never typed in: they are the `hours` of each activity's participants, counted in
//! the month and the year of the activity's start (local time), for the volunteer named and for
//! a unit — the unit a participant entry names, else the unit of the volunteer it names. All of
//! it from the index and the facts beside it; no document is loaded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use gridsync_core::record::Kind;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Staff;
use super::layout;
use super::tasks::one_decimal;
use super::{Dashboard, Fail, status_label, subtypes_of};
use crate::AppState;
use crate::storage::{KindFilter, ListedRecord, RecordQuery};

#[derive(Debug, Default, Deserialize)]
pub struct CoParams {
    #[serde(default)]
    pub month: String,
    #[serde(default)]
    pub grid: String,
}

/// A month and the range of instants it and its year so far cover, in local time.
#[derive(Debug, Clone)]
pub struct Period {
    pub month: NaiveDate,
    pub from: String,
    pub to: String,
    pub year_from: String,
}

impl Period {
    /// The month asked for (`2026-11`), else the current one.
    pub fn of(dash: &Dashboard, month: &str) -> Period {
        let month = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
            .unwrap_or_else(|_| dash.month_start());
        let next = month
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(month);
        let january = NaiveDate::from_ymd_opt(month.year(), 1, 1).unwrap_or(month);
        Period {
            month,
            from: dash.day_start(month),
            to: dash.day_start(next),
            year_from: dash.day_start(january),
        }
    }

    pub fn in_month(&self, at: Option<&str>) -> bool {
        at.is_some_and(|t| *t >= *self.from && *t < *self.to)
    }

    pub fn in_year(&self, at: Option<&str>) -> bool {
        at.is_some_and(|t| *t >= *self.year_from && *t < *self.to)
    }

    pub fn label(&self) -> String {
        self.month.format("%Y-%m").to_string()
    }
}

/// Hours given in a month and in its year so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Given {
    pub month: f64,
    pub year: f64,
    /// Activities taken part in this year.
    pub activities: u64,
}

/// Hours by volunteer and by unit (ids).
#[derive(Debug, Default)]
pub struct Hours {
    pub volunteers: HashMap<String, Given>,
    pub units: HashMap<String, Given>,
}

/// Adds up the participants' hours of `activities` (see the module's note). `unit_of` is each
/// volunteer's unit.
pub fn hours(activities: &[ListedRecord], unit_of: &HashMap<String, String>, p: &Period) -> Hours {
    let mut out = Hours::default();
    for a in activities {
        let at = a.facts.occurred_at.as_deref();
        let (month, year) = (p.in_month(at), p.in_year(at));
        if !year {
            continue;
        }
        let add = |map: &mut HashMap<String, Given>, id: &str, h: f64, first: bool| {
            let g = map.entry(id.to_string()).or_default();
            g.year += h;
            if month {
                g.month += h;
            }
            if first {
                g.activities += 1;
            }
        };
        let mut seen_volunteers: Vec<&str> = Vec::new();
        let mut seen_units: Vec<&str> = Vec::new();
        for part in &a.facts.participants {
            if let Some(v) = part.volunteer_id.as_deref() {
                let first = !seen_volunteers.contains(&v);
                seen_volunteers.push(v);
                add(&mut out.volunteers, v, part.hours, first);
            }
            let unit = part.unit_id.as_deref().or_else(|| {
                part.volunteer_id
                    .as_deref()
                    .and_then(|v| unit_of.get(v))
                    .map(String::as_str)
            });
            if let Some(u) = unit {
                let first = !seen_units.contains(&u);
                seen_units.push(u);
                add(&mut out.units, u, part.hours, first);
            }
        }
    }
    out
}

/// The records of one kind in the grids asked for (within the staff member's).
pub async fn records_of(
    state: &AppState,
    staff: &Staff,
    grid: &str,
    kind: Kind,
    q: RecordQuery,
) -> Result<Vec<ListedRecord>, Fail> {
    let grids = staff
        .grids
        .iter()
        .filter(|g| grid.is_empty() || *g == grid)
        .cloned()
        .collect();
    let q = RecordQuery {
        grids,
        kinds: KindFilter::one(kind),
        limit: q.limit.or(Some(100_000)),
        ..q
    };
    Ok(state
        .relay
        .queries()
        .list_records(&q)
        .await
        .map_err(|e| Fail::storage(staff.lang, e))?
        .rows)
}

/// Everything the three pages count on: units, volunteers, the year's activities, the hours.
pub struct CoData {
    pub period: Period,
    pub units: Vec<ListedRecord>,
    pub volunteers: Vec<ListedRecord>,
    pub activities: Vec<ListedRecord>,
    pub hours: Hours,
}

pub async fn load(state: &AppState, staff: &Staff, p: &CoParams) -> Result<CoData, Fail> {
    let period = Period::of(&state.dashboard, &p.month);
    let mut units = records_of(state, staff, &p.grid, Kind::Unit, RecordQuery::default()).await?;
    let mut volunteers = records_of(
        state,
        staff,
        &p.grid,
        Kind::Volunteer,
        RecordQuery::default(),
    )
    .await?;
    let year = RecordQuery {
        from: Some(period.year_from.clone()),
        to: Some(period.to.clone()),
        ..RecordQuery::default()
    };
    let mut activities = records_of(state, staff, &p.grid, Kind::Activity, year).await?;
    units.sort_by(|a, b| a.row.title.cmp(&b.row.title));
    volunteers.sort_by(|a, b| a.row.title.cmp(&b.row.title));
    activities.sort_by(|a, b| b.facts.occurred_at.cmp(&a.facts.occurred_at));
    let unit_of: HashMap<String, String> = volunteers
        .iter()
        .filter_map(|v| Some((v.row.id.clone(), v.facts.unit_id.clone()?)))
        .collect();
    let hours = hours(&activities, &unit_of, &period);
    Ok(CoData {
        period,
        units,
        volunteers,
        activities,
        hours,
    })
}

fn names(records: &[ListedRecord]) -> HashMap<String, String> {
    records
        .iter()
        .map(|r| (r.row.id.clone(), r.row.title.clone()))
        .collect()
}

/// What a summary adds to a record's title (a unit's contact, a volunteer's post).
fn after_title(r: &ListedRecord) -> String {
    r.facts
        .summary
        .strip_prefix(r.row.title.as_str())
        .unwrap_or(&r.facts.summary)
        .trim()
        .to_string()
}

fn filters(staff: &Staff, action: &str, p: &CoParams, period: &Period) -> Markup {
    let lang = staff.lang;
    html! {
        nav class="tabs" {
            @for (path, kind) in [("/units", Kind::Unit), ("/volunteers", Kind::Volunteer), ("/activities", Kind::Activity)] {
                a href=(path) class=[(path == action).then_some("active")] { (lang.label("kind", kind.as_str())) }
            }
        }
        form method="get" action=(action) class="filters" {
            label { (lang.t("st.month")) input type="month" name="month" value=(period.label()); }
            label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &staff.grid_options(), &p.grid)) }
            button type="submit" { (lang.t("st.show")) }
        }
    }
}

fn num(x: f64) -> Markup {
    html! { td class={ "num" @if x == 0.0 { " zero" } } { (one_decimal(x)) } }
}

pub async fn units(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<CoParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let d = load(&state, &staff, &p).await?;
    let members: HashMap<&str, u64> = d.volunteers.iter().fold(HashMap::new(), |mut m, v| {
        if let Some(u) = v.facts.unit_id.as_deref() {
            *m.entry(u).or_default() += 1;
        }
        m
    });
    let body = html! {
        (filters(&staff, "/units", &p, &d.period))
        @if d.units.is_empty() { p class="muted" { (lang.t("none")) } } @else {
        table class="list" id="units" {
            thead { tr {
                th { (lang.field(Kind::Unit, "name")) } th { (lang.field(Kind::Unit, "unit_type")) }
                th { (lang.t("grid")) } th { (lang.field(Kind::Unit, "contact_person")) }
                th class="num" { (lang.t("co.volunteers")) }
                th class="num" { (lang.t("co.hours_month")) } th class="num" { (lang.t("co.hours_year")) }
                th class="num" { (lang.t("co.activities_year")) }
            } }
            tbody { @for u in &d.units {
                @let g = d.hours.units.get(&u.row.id).copied().unwrap_or_default();
                tr data-id=(u.row.id) {
                    td { a href={ "/records/" (u.row.id) } { (u.row.title) } }
                    td { (lang.label("unit_type", u.facts.subtype.as_deref().unwrap_or(""))) }
                    td { (staff.grid_name(&u.row.grid_id)) }
                    td { (after_title(u)) }
                    td class="num" { (members.get(u.row.id.as_str()).copied().unwrap_or(0)) }
                    (num(g.month)) (num(g.year))
                    td class="num" { (g.activities) }
                }
            } }
        }
        }
        p class="muted" { (lang.t("co.hours_hint")) }
    };
    let title = format!(
        "{} · {} {}",
        lang.t("nav.co"),
        lang.label("kind", "unit"),
        d.period.label()
    );
    Ok(layout::page(&staff, "co", &title, body).into_response())
}

pub async fn volunteers(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<CoParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let d = load(&state, &staff, &p).await?;
    let units = names(&d.units);
    let body = html! {
        (filters(&staff, "/volunteers", &p, &d.period))
        @if d.volunteers.is_empty() { p class="muted" { (lang.t("none")) } } @else {
        table class="list" id="volunteers" {
            thead { tr {
                th { (lang.field(Kind::Volunteer, "name")) } th { (lang.field(Kind::Volunteer, "unit_id")) }
                th { (lang.field(Kind::Volunteer, "post")) } th { (lang.t("grid")) } th { (lang.t("status")) }
                th class="num" { (lang.t("co.hours_month")) } th class="num" { (lang.t("co.hours_year")) }
                th class="num" { (lang.t("co.activities_year")) }
            } }
            tbody { @for v in &d.volunteers {
                @let g = d.hours.volunteers.get(&v.row.id).copied().unwrap_or_default();
                tr data-id=(v.row.id) {
                    td { a href={ "/records/" (v.row.id) } { (v.row.title) } }
                    td { (v.facts.unit_id.as_deref().map(|u| units.get(u).cloned().unwrap_or_else(|| u.to_string())).unwrap_or_default()) }
                    td { (after_title(v)) }
                    td { (staff.grid_name(&v.row.grid_id)) }
                    td { (status_label(lang, Kind::Volunteer, v.row.status.as_deref())) }
                    (num(g.month)) (num(g.year))
                    td class="num" { (g.activities) }
                }
            } }
        }
        }
        p class="muted" { (lang.t("co.hours_hint")) }
    };
    let title = format!(
        "{} · {} {}",
        lang.t("nav.co"),
        lang.label("kind", "volunteer"),
        d.period.label()
    );
    Ok(layout::page(&staff, "co", &title, body).into_response())
}

pub async fn activities(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<CoParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let d = load(&state, &staff, &p).await?;
    let units = names(&d.units);
    let month: Vec<&ListedRecord> = d
        .activities
        .iter()
        .filter(|a| d.period.in_month(a.facts.occurred_at.as_deref()))
        .collect();
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for a in &month {
        *by_type
            .entry(a.facts.subtype.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let dash = &state.dashboard;
    let body = html! {
        (filters(&staff, "/activities", &p, &d.period))
        h2 { (lang.t("co.by_type")) }
        table class="matrix" id="activities-by" { tbody {
            @for t in subtypes_of(Kind::Activity) {
                @let n = by_type.get(t).copied().unwrap_or(0);
                tr { th { (lang.label("activity_type", t)) } td class={ "num" @if n == 0 { " zero" } } { (n) } }
            }
        } }
        h2 { (lang.t("co.this_month")) }
        @if month.is_empty() { p class="muted" { (lang.t("none")) } } @else {
        table class="list" id="activities" {
            thead { tr {
                th { (lang.field(Kind::Activity, "started_at")) } th { (lang.field(Kind::Activity, "title")) }
                th { (lang.field(Kind::Activity, "activity_type")) } th { (lang.field(Kind::Activity, "organiser_unit_id")) }
                th { (lang.t("grid")) } th class="num" { (lang.t("co.participants")) }
                th class="num" { (lang.t("co.hours")) }
            } }
            tbody { @for a in &month {
                tr data-id=(a.row.id) {
                    td { (a.facts.occurred_at.as_deref().map(|t| dash.show_time(t)).unwrap_or_default()) }
                    td { a href={ "/records/" (a.row.id) } { (a.row.title) } }
                    td { (lang.label("activity_type", a.facts.subtype.as_deref().unwrap_or(""))) }
                    td { (a.facts.unit_id.as_deref().map(|u| units.get(u).cloned().unwrap_or_else(|| u.to_string())).unwrap_or_default()) }
                    td { (staff.grid_name(&a.row.grid_id)) }
                    td class="num" { (a.facts.participants.len()) }
                    (num(a.facts.participants.iter().map(|p| p.hours).sum()))
                }
            } }
        }
        }
    };
    let title = format!(
        "{} · {} {}",
        lang.t("nav.co"),
        lang.label("kind", "activity"),
        d.period.label()
    );
    Ok(layout::page(&staff, "co", &title, body).into_response())
}
