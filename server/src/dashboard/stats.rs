//! The monthly statistics for the street office. Per grid: visits, cases opened and closed by
//! type, patrols, incidents by kind, urgent reports on time and late, activities by type and
//! the volunteer hours they gave, love-supermarket movements and the households served, tasks
//! due and handled on time. Then volunteer hours by co-building unit and goods in and out by
//! item. Each table is the same on the page, in CSV and in XLSX; the figures themselves
//! ([`figures`]) are also what the API's `/api/v1/stats/monthly` serves.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use gridsync_core::record::Kind;
use maud::html;
use serde::Deserialize;

use super::area::{self, Scope};
use super::auth::Staff;
use super::board::timing;
use super::co::{self, Period};
use super::county;
use super::export::{Sheet, pick};
use super::i18n::Lang;
use super::layout;
use super::supermarket;
use super::tasks::{self, one_decimal};
use super::{Fail, incident_kinds, subtypes_of};
use crate::AppState;
use crate::storage::{KindFilter, ListedRecord, RecordQuery};

#[derive(Debug, Default, Deserialize)]
pub struct StatsParams {
    #[serde(default)]
    month: String,
    #[serde(default)]
    grid: String,
    #[serde(default)]
    table: String,
    /// A street or community of the scope to narrow the report to (see `area`).
    #[serde(default)]
    area: String,
}

/// One grid's figures of the month (or their total).
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub visits: u64,
    /// Cases opened and closed, by case type.
    pub opened: BTreeMap<String, u64>,
    pub closed: BTreeMap<String, u64>,
    pub patrols: u64,
    /// Patrol incidents by kind.
    pub incidents: BTreeMap<String, u64>,
    /// Urgent reports reported on time and late.
    pub on_time: u64,
    pub late: u64,
    /// Activities by type, and the volunteer hours they gave.
    pub activities: BTreeMap<String, u64>,
    pub hours: f64,
    /// Love-supermarket movements in and out.
    pub goods_ins: u64,
    pub goods_outs: u64,
    pub households_served: HashSet<String>,
    pub tasks_due: u64,
    pub tasks_on_time: u64,
}

impl Row {
    /// Adds another grid's figures (a community's or the total from its grids').
    pub(crate) fn add(&mut self, r: &Row) {
        self.visits += r.visits;
        self.patrols += r.patrols;
        self.on_time += r.on_time;
        self.late += r.late;
        self.hours += r.hours;
        self.goods_ins += r.goods_ins;
        self.goods_outs += r.goods_outs;
        self.households_served
            .extend(r.households_served.iter().cloned());
        self.tasks_due += r.tasks_due;
        self.tasks_on_time += r.tasks_on_time;
        for (dst, src) in [
            (&mut self.opened, &r.opened),
            (&mut self.closed, &r.closed),
            (&mut self.incidents, &r.incidents),
            (&mut self.activities, &r.activities),
        ] {
            for (k, v) in src {
                *dst.entry(k.clone()).or_default() += v;
            }
        }
    }
}

/// The month's figures before they are laid out as tables: the page and its exports show them,
/// the API serves them as JSON.
pub(crate) struct Monthly {
    pub month: NaiveDate,
    /// The month's first instant and the next month's, local time, as UTC strings.
    pub from: String,
    pub to: String,
    /// By grid (every grid asked for, with nothing counted where nothing happened).
    pub grids: BTreeMap<String, Row>,
    pub total: Row,
    /// Co-building units by name, with the volunteer hours they gave.
    pub units: Vec<(ListedRecord, co::Given)>,
    /// Love-supermarket items by name, with what came in and went out in the month.
    pub goods: Vec<(ListedRecord, supermarket::Flow)>,
}

struct Report {
    month: NaiveDate,
    sheets: Vec<Sheet>,
    /// The scope the report was made in, narrowed as asked, and its grids to choose from.
    scope: Scope,
    grids: Vec<(String, String)>,
}

/// The figures of `month` (`2026-11`; the current month if it is not one) in the staff's grids,
/// or in `grid` alone.
pub(crate) async fn figures(
    state: &AppState,
    staff: &Staff,
    month: &str,
    grid: &str,
) -> Result<Monthly, Fail> {
    let dash = &state.dashboard;
    let store = |e| Fail::storage(staff.lang, e);
    let month_start = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .unwrap_or_else(|_| dash.month_start());
    let next = month_start
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(month_start);
    let (from, to) = (dash.day_start(month_start), dash.day_start(next));
    let grids: Vec<String> = if grid.is_empty() {
        staff.grids.clone()
    } else {
        staff
            .grids
            .iter()
            .filter(|g| **g == grid)
            .cloned()
            .collect()
    };
    let of = |kind: Kind| RecordQuery {
        grids: grids.clone(),
        kinds: KindFilter::one(kind),
        ..RecordQuery::default()
    };
    let in_month = |kind: Kind| RecordQuery {
        from: Some(from.clone()),
        to: Some(to.clone()),
        ..of(kind)
    };
    let storage = state.relay.queries();
    let mut rows: BTreeMap<String, Row> =
        grids.iter().map(|g| (g.clone(), Row::default())).collect();
    for t in storage.tally(&in_month(Kind::Visit)).await.map_err(store)? {
        rows.entry(t.grid_id).or_default().visits += t.count;
    }
    for t in storage.tally(&in_month(Kind::Case)).await.map_err(store)? {
        *rows
            .entry(t.grid_id)
            .or_default()
            .opened
            .entry(t.subtype.unwrap_or_default())
            .or_default() += t.count;
    }
    let closed = RecordQuery {
        statuses: vec!["closed".into()],
        limit: Some(100_000),
        ..of(Kind::Case)
    };
    for c in storage.list_records(&closed).await.map_err(store)?.rows {
        if c.facts
            .closed_at
            .as_ref()
            .is_some_and(|t| *t >= from && *t < to)
        {
            let row = rows.entry(c.row.grid_id).or_default();
            *row.closed
                .entry(c.facts.subtype.unwrap_or_default())
                .or_default() += 1;
        }
    }
    // Patrols that started the day before may hold incidents of the month's first night.
    let patrols = RecordQuery {
        from: Some(dash.day_start(month_start - chrono::Duration::days(1))),
        to: Some(to.clone()),
        limit: Some(100_000),
        ..of(Kind::Patrol)
    };
    for p in storage.list_records(&patrols).await.map_err(store)?.rows {
        let row = rows.entry(p.row.grid_id.clone()).or_default();
        if p.facts.occurred_at.as_ref().is_some_and(|t| *t >= from) {
            row.patrols += 1;
        }
        for i in &p.facts.incidents {
            if i.at.as_ref().is_some_and(|t| *t >= from && *t < to) {
                *row.incidents.entry(i.kind.clone()).or_default() += 1;
            }
        }
    }
    let reports = RecordQuery {
        limit: Some(100_000),
        ..in_month(Kind::Report)
    };
    for r in storage.list_records(&reports).await.map_err(store)?.rows {
        let t = timing(dash, &r);
        let row = rows.entry(r.row.grid_id.clone()).or_default();
        match t.on_time {
            Some(true) => row.on_time += 1,
            Some(false) => row.late += 1,
            None => {}
        }
    }
    // The co-construction work of the month.
    let period = Period::of(dash, month);
    let co = co::load(
        state,
        staff,
        &co::CoParams {
            month: month.to_string(),
            grid: grid.to_string(),
        },
    )
    .await?;
    for a in &co.activities {
        if !period.in_month(a.facts.occurred_at.as_deref()) {
            continue;
        }
        let row = rows.entry(a.row.grid_id.clone()).or_default();
        *row.activities
            .entry(a.facts.subtype.clone().unwrap_or_default())
            .or_default() += 1;
        row.hours += a.facts.participants.iter().map(|p| p.hours).sum::<f64>();
    }
    let mut items = co::records_of(state, staff, grid, Kind::Stock, RecordQuery::default()).await?;
    for i in &items {
        let f = supermarket::flow(i, &from, &to);
        let row = rows.entry(i.row.grid_id.clone()).or_default();
        row.goods_ins += f.ins;
        row.goods_outs += f.outs;
        row.households_served.extend(
            i.facts
                .movements
                .iter()
                .filter(|m| m.kind == "out" && period.in_month(m.at.as_deref()))
                .filter_map(|m| m.household_id.clone()),
        );
    }
    let now = chrono::Utc::now();
    for t in co::records_of(state, staff, grid, Kind::Task, RecordQuery::default()).await? {
        let tt = tasks::timing_at(&t, now);
        let due = tt.deadline.map(crate::storage::utc_string);
        if !period.in_month(due.as_deref()) {
            continue;
        }
        let row = rows.entry(t.row.grid_id.clone()).or_default();
        row.tasks_due += 1;
        row.tasks_on_time += u64::from(tt.on_time == Some(true));
    }

    let mut total = Row::default();
    for r in rows.values() {
        total.add(r);
    }
    let units = co
        .units
        .into_iter()
        .map(|u| {
            let given = co.hours.units.get(&u.row.id).copied().unwrap_or_default();
            (u, given)
        })
        .collect();
    items.sort_by(|a, b| a.row.title.cmp(&b.row.title));
    let goods = items
        .into_iter()
        .map(|i| {
            let f = supermarket::flow(&i, &from, &to);
            (i, f)
        })
        .collect();
    Ok(Monthly {
        month: month_start,
        from,
        to,
        grids: rows,
        total,
        units,
        goods,
    })
}

/// [`figures`] for a reader who has no dashboard session (an API token): a [`Staff`] with the
/// reader's grids and nobody signed in, which is all the figures look at.
pub(crate) async fn figures_in(
    state: &AppState,
    grids: Vec<String>,
    month: &str,
    grid: &str,
) -> Result<Monthly, Fail> {
    let reader = Staff {
        user: crate::accounts::User {
            id: String::new(),
            username: String::new(),
            display_name: String::new(),
            role: crate::accounts::Role::Office,
            password_hash: String::new(),
            active: true,
            scope_version: 0,
        },
        csrf: String::new(),
        grids,
        former_grids: Vec::new(),
        names: std::collections::HashMap::new(),
        lang: Lang::Zh,
        path: String::new(),
        session_hash: Vec::new(),
    };
    figures(state, &reader, month, grid).await
}

async fn compute(
    state: &AppState,
    staff: &Staff,
    p: &StatsParams,
    lang: Lang,
) -> Result<Report, Fail> {
    let (staff, scope) = area::narrowed(state, staff, &p.area).await?;
    let staff = &staff;
    let grid = if scope.wide { "" } else { p.grid.as_str() };
    let m = figures(state, staff, &p.month, grid).await?;
    let case_types = subtypes_of(Kind::Case);
    let activity_types = subtypes_of(Kind::Activity);
    let first = if scope.wide { "cy.community" } else { "grid" };
    let mut headers = vec![lang.t(first).to_string(), lang.t("st.visits").to_string()];
    for (key, _) in [("st.cases_opened", 0), ("st.cases_closed", 1)] {
        headers.push(format!("{}·{}", lang.t(key), lang.t("total")));
        for t in &case_types {
            headers.push(format!("{}·{}", lang.t(key), lang.label("case_type", t)));
        }
    }
    headers.push(lang.t("st.patrols").to_string());
    headers.push(format!("{}·{}", lang.t("st.incidents"), lang.t("total")));
    for k in incident_kinds() {
        headers.push(format!(
            "{}·{}",
            lang.t("st.incidents"),
            lang.label("incident", k)
        ));
    }
    headers.push(lang.t("st.reports_on_time").to_string());
    headers.push(lang.t("st.reports_late").to_string());
    headers.push(format!("{}·{}", lang.t("st.activities"), lang.t("total")));
    for t in &activity_types {
        headers.push(format!(
            "{}·{}",
            lang.t("st.activities"),
            lang.label("activity_type", t)
        ));
    }
    for key in [
        "st.hours",
        "st.goods_in",
        "st.goods_out",
        "st.households_served",
        "as.tasks_due",
        "as.tasks_on_time",
    ] {
        headers.push(lang.t(key).to_string());
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut push = |name: String, r: &Row| {
        let mut cells = vec![name, r.visits.to_string()];
        for map in [&r.opened, &r.closed] {
            cells.push(map.values().sum::<u64>().to_string());
            cells.extend(
                case_types
                    .iter()
                    .map(|t| map.get(*t).copied().unwrap_or(0).to_string()),
            );
        }
        cells.push(r.patrols.to_string());
        cells.push(r.incidents.values().sum::<u64>().to_string());
        cells
            .extend(incident_kinds().map(|k| r.incidents.get(k).copied().unwrap_or(0).to_string()));
        cells.push(r.on_time.to_string());
        cells.push(r.late.to_string());
        cells.push(r.activities.values().sum::<u64>().to_string());
        cells.extend(
            activity_types
                .iter()
                .map(|t| r.activities.get(*t).copied().unwrap_or(0).to_string()),
        );
        cells.push(one_decimal(r.hours));
        cells.push(r.goods_ins.to_string());
        cells.push(r.goods_outs.to_string());
        cells.push(r.households_served.len().to_string());
        cells.push(r.tasks_due.to_string());
        cells.push(r.tasks_on_time.to_string());
        out.push(cells);
    };
    if scope.wide {
        // A street's or the county's report: one row per community, from its grids' rows.
        let mut communities: BTreeMap<String, Row> = scope
            .communities
            .keys()
            .map(|c| (c.clone(), Row::default()))
            .collect();
        for (g, r) in &m.grids {
            communities.entry(scope.community(g)).or_default().add(r);
        }
        for (c, r) in &communities {
            push(scope.community_name(c).unwrap_or(c).to_string(), r);
        }
    } else {
        for (g, r) in &m.grids {
            push(staff.grid_name(g), r);
        }
    }
    push(lang.t("total").to_string(), &m.total);
    let label = m.month.format("%Y-%m").to_string();
    let mut sheets = vec![Sheet {
        id: "stats",
        title: format!("{} {label}", lang.t("st.by_grid")),
        headers,
        rows: out,
    }];

    // Volunteer hours by co-building unit.
    let mut unit_rows: Vec<Vec<String>> = Vec::new();
    let mut unit_total = co::Given::default();
    for (u, g) in &m.units {
        unit_total.month += g.month;
        unit_total.year += g.year;
        unit_total.activities += g.activities;
        unit_rows.push(vec![
            u.row.title.clone(),
            staff.grid_name(&u.row.grid_id),
            one_decimal(g.month),
            one_decimal(g.year),
            g.activities.to_string(),
        ]);
    }
    if !unit_rows.is_empty() {
        unit_rows.push(vec![
            lang.t("total").to_string(),
            String::new(),
            one_decimal(unit_total.month),
            one_decimal(unit_total.year),
            unit_total.activities.to_string(),
        ]);
    }
    sheets.push(Sheet {
        id: "stats-units",
        title: format!("{} {label}", lang.t("st.hours_by_unit")),
        headers: vec![
            lang.label("kind", "unit"),
            lang.t("grid").to_string(),
            lang.t("co.hours_month").to_string(),
            lang.t("co.hours_year").to_string(),
            lang.t("co.activities_year").to_string(),
        ],
        rows: unit_rows,
    });

    // Goods in and out by item.
    sheets.push(Sheet {
        id: "stats-goods",
        title: format!("{} {label}", lang.t("st.goods_by_item")),
        headers: vec![
            lang.field(Kind::Stock, "item"),
            lang.field(Kind::Stock, "measure"),
            lang.t("grid").to_string(),
            lang.t("sm.in_month").to_string(),
            lang.t("sm.out_month").to_string(),
            lang.t("st.goods_out").to_string(),
            lang.t("sm.on_hand").to_string(),
        ],
        rows: m
            .goods
            .iter()
            .map(|(i, f)| {
                vec![
                    i.row.title.clone(),
                    i.facts.measure.clone().unwrap_or_default(),
                    staff.grid_name(&i.row.grid_id),
                    one_decimal(f.goods_in),
                    one_decimal(f.goods_out),
                    f.outs.to_string(),
                    one_decimal(i.facts.on_hand()),
                ]
            })
            .collect(),
    });
    Ok(Report {
        month: m.month,
        sheets,
        grids: staff.grid_options(),
        scope,
    })
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<StatsParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let report = compute(&state, &staff, &p, lang).await?;
    let month = report.month.format("%Y-%m").to_string();
    let scope = &report.scope;
    let grid = if scope.wide { "" } else { p.grid.as_str() };
    let qs = layout::query_string(&[("month", &month), ("grid", grid), ("area", &p.area)]);
    let body = html! {
        (county::trail(lang, scope, "/stats"))
        form method="get" action="/stats" class="filters" {
            label { (lang.t("st.month")) input type="month" name="month" value=(month); }
            @if scope.wide {
                label { (lang.t("cy.area")) (layout::select("area", lang.t("cy.all"), &scope.area_options(), &p.area)) }
            } @else {
                @if !p.area.is_empty() { input type="hidden" name="area" value=(p.area); }
                label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &report.grids, &p.grid)) }
            }
            button type="submit" { (lang.t("st.show")) }
        }
        @for sheet in &report.sheets { (sheet.html(lang, "/stats/export", &qs)) }
    };
    let title = format!("{} {}", lang.t("nav.stats"), month);
    Ok(layout::page(&staff, "stats", &title, body).into_response())
}

fn stats_filename(month: NaiveDate, table: &str) -> String {
    let part = match table {
        "stats" => String::new(),
        other => format!("-{}", other.trim_start_matches("stats-")),
    };
    format!(
        "gridsync-monthly-{}{:02}{part}",
        month.year(),
        month.month()
    )
}

pub async fn export_csv(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<StatsParams>,
) -> Result<Response, Fail> {
    let r = compute(&state, &staff, &p, Lang::Zh).await?;
    let sheet = pick(&r.sheets, &p.table).ok_or_else(|| Fail::not_found(staff.lang))?;
    Ok(sheet.csv_response(&stats_filename(r.month, sheet.id)))
}

pub async fn export_xlsx(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<StatsParams>,
) -> Result<Response, Fail> {
    let r = compute(&state, &staff, &p, Lang::Zh).await?;
    let sheet = pick(&r.sheets, &p.table).ok_or_else(|| Fail::not_found(staff.lang))?;
    Ok(sheet.xlsx_response(&stats_filename(r.month, sheet.id), staff.lang))
}
