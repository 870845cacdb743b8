//! The monthly statistics per grid for the street office: visits, cases opened and closed by
//! type, patrols, incidents by kind, urgent reports on time and late. One wide table, the same
//! on the page, in CSV and in XLSX.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use gridsync_core::record::Kind;
use maud::html;
use serde::Deserialize;

use super::auth::Staff;
use super::board::timing;
use super::export::{csv, download, xlsx, xlsx_response};
use super::i18n::Lang;
use super::layout;
use super::{Fail, incident_kinds, subtypes_of};
use crate::AppState;
use crate::storage::RecordQuery;

#[derive(Debug, Default, Deserialize)]
pub struct StatsParams {
    #[serde(default)]
    month: String,
    #[serde(default)]
    grid: String,
}

#[derive(Default)]
struct Row {
    visits: u64,
    opened: BTreeMap<String, u64>,
    closed: BTreeMap<String, u64>,
    patrols: u64,
    incidents: BTreeMap<String, u64>,
    on_time: u64,
    late: u64,
}

struct Report {
    month: NaiveDate,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

async fn compute(
    state: &AppState,
    staff: &Staff,
    p: &StatsParams,
    lang: Lang,
) -> Result<Report, Fail> {
    let dash = &state.dashboard;
    let store = |e| Fail::storage(staff.lang, e);
    let month = NaiveDate::parse_from_str(&format!("{}-01", p.month), "%Y-%m-%d")
        .unwrap_or_else(|_| dash.month_start());
    let next = month
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(month);
    let (from, to) = (dash.day_start(month), dash.day_start(next));
    let grids: Vec<String> = if p.grid.is_empty() {
        staff.grids.clone()
    } else {
        staff
            .grids
            .iter()
            .filter(|g| **g == p.grid)
            .cloned()
            .collect()
    };
    let of = |kind: &str| RecordQuery {
        grids: grids.clone(),
        kinds: vec![kind.to_string()],
        ..RecordQuery::default()
    };
    let in_month = |kind: &str| RecordQuery {
        from: Some(from.clone()),
        to: Some(to.clone()),
        ..of(kind)
    };
    let storage = &state.relay.storage;
    let mut rows: BTreeMap<String, Row> =
        grids.iter().map(|g| (g.clone(), Row::default())).collect();
    for t in storage.tally(&in_month("visit")).await.map_err(store)? {
        rows.entry(t.grid_id).or_default().visits += t.count;
    }
    for t in storage.tally(&in_month("case")).await.map_err(store)? {
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
        ..of("case")
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
        from: Some(dash.day_start(month - chrono::Duration::days(1))),
        to: Some(to.clone()),
        limit: Some(100_000),
        ..of("patrol")
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
        ..in_month("report")
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
    let case_types = subtypes_of(Kind::Case);
    let mut headers = vec![lang.t("grid").to_string(), lang.t("st.visits").to_string()];
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
    let mut total = Row::default();
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
        out.push(cells);
    };
    for (g, r) in &rows {
        push(staff.grid_name(g), r);
        total.visits += r.visits;
        total.patrols += r.patrols;
        total.on_time += r.on_time;
        total.late += r.late;
        for (dst, src) in [
            (&mut total.opened, &r.opened),
            (&mut total.closed, &r.closed),
            (&mut total.incidents, &r.incidents),
        ] {
            for (k, v) in src {
                *dst.entry(k.clone()).or_default() += v;
            }
        }
    }
    push(lang.t("total").to_string(), &total);
    Ok(Report {
        month,
        headers,
        rows: out,
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
    let qs = layout::query_string(&[("month", &month), ("grid", &p.grid)]);
    let body = html! {
        form method="get" action="/stats" class="filters" {
            label { (lang.t("st.month")) input type="month" name="month" value=(month); }
            label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &staff.grid_options(), &p.grid)) }
            button type="submit" { (lang.t("st.show")) }
            span class="spacer" {}
            a class="button" id="stats-csv" href={ "/stats/export.csv?" (qs) } { (lang.t("export.csv")) }
            a class="button" id="stats-xlsx" href={ "/stats/export.xlsx?" (qs) } { (lang.t("export.xlsx")) }
        }
        div class="scroll" {
            table class="stats" id="stats" {
                thead { tr { @for (i, h) in report.headers.iter().enumerate() {
                    @if i == 0 { th { (h) } } @else { th class="num" { (h) } }
                } } }
                tbody { @for row in &report.rows { tr { @for (i, c) in row.iter().enumerate() {
                    @if i == 0 { th { (c) } } @else { td class="num" { (c) } }
                } } } }
            }
        }
    };
    let title = format!("{} {}", lang.t("nav.stats"), month);
    Ok(layout::page(&staff, "stats", &title, body).into_response())
}

fn stats_filename(month: NaiveDate, ext: &str) -> String {
    format!(
        "gridsync-monthly-{}{:02}.{ext}",
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
    Ok(download(
        "text/csv; charset=utf-8",
        &stats_filename(r.month, "csv"),
        csv(&r.headers, &r.rows),
    ))
}

pub async fn export_xlsx(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(p): Query<StatsParams>,
) -> Result<Response, Fail> {
    let r = compute(&state, &staff, &p, Lang::Zh).await?;
    Ok(xlsx_response(
        &stats_filename(r.month, "xlsx"),
        xlsx("月度统计", &r.headers, &r.rows),
        staff.lang,
    ))
}
