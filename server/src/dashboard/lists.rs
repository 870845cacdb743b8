//! Lists of every kind with filters (grid, status, type, worker, dates) and search, answered
//! from the relay's index tables without loading any document.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use gridsync_core::record::Kind;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Staff;
use super::layout;
use super::{
    Dashboard, Fail, display_names, person, status_group, status_label, statuses_of,
    stored_statuses, subtype_group, subtypes_of,
};
use crate::AppState;
use crate::storage::{KindFilter, ListedRecord, RecordQuery};

pub const PAGE_SIZE: usize = 50;

/// The filters of a list, as they appear in its URL (and in its export links).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub grid: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, rename = "type")]
    pub subtype: String,
    #[serde(default)]
    pub worker: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub q: String,
    /// Only the records about this household (its page links here for the rest of a list).
    #[serde(default)]
    pub household: String,
    /// Zero-based; anything but a number is the first page, and a page past the end shows
    /// the last one.
    #[serde(default, deserialize_with = "page_number")]
    pub page: usize,
    #[serde(default)]
    pub fragment: String,
}

impl ListParams {
    pub fn kind(&self) -> Option<Kind> {
        self.kind.parse().ok().filter(|k| Kind::ALL.contains(k))
    }

    /// The filters as a query string (without paging), for links and exports.
    pub fn query_string(&self) -> String {
        layout::query_string(&[
            ("kind", &self.kind),
            ("grid", &self.grid),
            ("status", &self.status),
            ("type", &self.subtype),
            ("worker", &self.worker),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
            ("household", &self.household),
        ])
    }

    /// The store query: always within the staff member's grids; dates are local days.
    pub fn to_query(&self, staff: &Staff, dash: &Dashboard) -> RecordQuery {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        let grids = if self.grid.is_empty() {
            staff.grids.clone()
        } else {
            staff
                .grids
                .iter()
                .filter(|g| **g == self.grid)
                .cloned()
                .collect()
        };
        let kinds = match self.kind() {
            Some(k) => KindFilter::one(k),
            None => KindFilter::Only(Kind::ALL.to_vec()),
        };
        let day = |s: &str| s.parse::<NaiveDate>().ok();
        RecordQuery {
            grids,
            kinds,
            statuses: some(&self.status)
                .map(|s| match self.kind() {
                    Some(k) => stored_statuses(k, &s),
                    None => vec![s],
                })
                .unwrap_or_default(),
            subtype: some(&self.subtype),
            worker: some(&self.worker),
            from: day(&self.from).map(|d| dash.day_start(d)),
            to: day(&self.to).map(|d| dash.day_start(d + chrono::Duration::days(1))),
            search: some(&self.q),
            household: some(&self.household),
            ..RecordQuery::default()
        }
    }
}

/// The most pages a list is counted in: far past any community, and small enough that the
/// offset stays a number SQLite takes.
const MAX_PAGE: usize = 1_000_000;

/// A page number from a URL, whatever was typed there: too large is the largest, not a number
/// is the first.
fn page_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let raw = String::deserialize(d)?;
    let raw = raw.trim();
    Ok(
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            raw.parse::<usize>().map_or(MAX_PAGE, |n| n.min(MAX_PAGE))
        } else {
            0
        },
    )
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Query(mut p): Query<ListParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let dash = &state.dashboard;
    let list = |page: usize| RecordQuery {
        offset: page.min(MAX_PAGE) * PAGE_SIZE,
        limit: Some(PAGE_SIZE),
        ..p.to_query(&staff, dash)
    };
    let mut found = state
        .relay
        .queries()
        .list_records(&list(p.page))
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let last = (found.total as usize).div_ceil(PAGE_SIZE).saturating_sub(1);
    if p.page > last && found.total > 0 {
        found = state
            .relay
            .queries()
            .list_records(&list(last))
            .await
            .map_err(|e| Fail::storage(lang, e))?;
        p.page = last;
    }
    let people = display_names(&state, lang).await?;
    let table = html! {
        p class="muted count" { (found.total) " " (lang.t("rows")) }
        (rows_table(&staff, dash, &found.rows, &people))
        (pager(&staff, &p, found.total))
    };
    if !p.fragment.is_empty() {
        return Ok(table.into_response());
    }
    let src = format!("/records?{}&page={}&fragment=1", p.query_string(), p.page);
    let body = html! {
        (kind_tabs(&staff, &p))
        (filters(&staff, &p))
        div id="live" data-live-src=(src) { (table) }
    };
    Ok(layout::page(&staff, "records", lang.t("nav.records"), body).into_response())
}

fn kind_tabs(staff: &Staff, p: &ListParams) -> Markup {
    let lang = staff.lang;
    html! {
        nav class="tabs" {
            a href="/records" class=[p.kind().is_none().then_some("active")] { (lang.t("all")) }
            @for k in Kind::ALL {
                a href={ "/records?kind=" (k.as_str()) } class=[(p.kind() == Some(k)).then_some("active")] {
                    (lang.label("kind", k.as_str()))
                }
            }
        }
    }
}

fn filters(staff: &Staff, p: &ListParams) -> Markup {
    let lang = staff.lang;
    let kind = p.kind();
    let options = |group: &str, values: Vec<&str>| -> Vec<(String, String)> {
        values
            .into_iter()
            .map(|v| (v.to_string(), lang.label(group, v)))
            .collect()
    };
    let export = p.query_string();
    html! {
        form method="get" action="/records" class="filters" id="filters" {
            input type="hidden" name="kind" value=(p.kind);
            @if !p.household.is_empty() { input type="hidden" name="household" value=(p.household); }
            label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &staff.grid_options(), &p.grid)) }
            @if let Some(k) = kind {
                @if !statuses_of(k).is_empty() {
                    label { (lang.t("status")) (layout::select("status", lang.t("all"), &options(status_group(k), statuses_of(k)), &p.status)) }
                }
                @if !subtypes_of(k).is_empty() {
                    label { (lang.t("type")) (layout::select("type", lang.t("all"), &options(subtype_group(k), subtypes_of(k)), &p.subtype)) }
                }
            }
            label { (lang.t("worker")) input name="worker" value=(p.worker) size="10"; }
            label { (lang.t("from")) input type="date" name="from" value=(p.from); }
            label { (lang.t("to")) input type="date" name="to" value=(p.to); }
            label { (lang.t("search")) input type="search" name="q" value=(p.q) placeholder=(lang.t("search.placeholder")); }
            button type="submit" { (lang.t("filter")) }
            a href={ "/records?kind=" (p.kind) } { (lang.t("reset")) }
            span class="spacer" {}
            a class="button" id="export-csv" href={ "/records/export.csv?" (export) } { (lang.t("export.csv")) }
            a class="button" id="export-xlsx" href={ "/records/export.xlsx?" (export) } { (lang.t("export.xlsx")) }
        }
    }
}

/// The rows of a list, shared by the list page and the review queue. People are shown by
/// their display names (`people`: username → name) where the account is known.
pub fn rows_table(
    staff: &Staff,
    dash: &Dashboard,
    rows: &[ListedRecord],
    people: &HashMap<String, String>,
) -> Markup {
    let lang = staff.lang;
    html! {
        @if rows.is_empty() { p class="muted" { (lang.t("none")) } } @else {
        table class="list" id="records" {
            thead { tr {
                th { (lang.t("title")) } th { (lang.t("kind")) } th { (lang.t("grid")) } th { (lang.t("type")) }
                th { (lang.t("status")) } th { (lang.t("worker")) } th { (lang.t("date")) } th { (lang.t("updated")) }
                th { (lang.t("flags")) }
            } }
            tbody {
                @for r in rows {
                    tr data-id=(r.row.id) {
                        td { a href={ "/records/" (r.row.id) } { (title(lang, dash, r, people)) } }
                        td { (lang.label("kind", r.row.kind.as_str())) }
                        td { (staff.grid_name(&r.row.grid_id)) }
                        td { (r.facts.subtype.as_deref().map(|t| lang.label(subtype_group(r.row.kind), t)).unwrap_or_default()) }
                        td { (status_label(lang, r.row.kind, r.row.status.as_deref())) }
                        td class="worker" { (r.row.assigned_to.as_deref().map(|w| person(people, w)).unwrap_or_default()) }
                        td { (r.facts.occurred_at.as_deref().map(|s| dash.show_time(s)).unwrap_or_default()) }
                        td { (r.row.updated_at.as_deref().map(|s| dash.show_time(s)).unwrap_or_default()) }
                        td {
                            @if r.row.has_conflicts { a class="tag bad" href={ "/review/" (r.row.id) } { (lang.t("flag.conflict")) } " " }
                            @if r.parallel { a class="tag warn" href={ "/review/" (r.row.id) } { (lang.t("flag.parallel")) } }
                        }
                    }
                }
            }
        }
        }
    }
}

/// A record's title for people, the same on its page, in lists, the review queue and the
/// exports: the kind's own words rather than stored codes or ids, taken from the record and its
/// household, people by name where `people` knows them, no name twice. A case is its type and
/// whom it is about: its subject, else its household (head and address); a visit its household,
/// type and day; a patrol its start and team. A record with none of these is named by its kind,
/// never by its id.
pub fn title(
    lang: super::Lang,
    dash: &Dashboard,
    r: &ListedRecord,
    people: &HashMap<String, String>,
) -> String {
    let kind = r.row.kind;
    let sub = r
        .facts
        .subtype
        .as_deref()
        .map(|t| lang.label(subtype_group(kind), t))
        .unwrap_or_default();
    let household = r.household_title.clone().unwrap_or_default();
    let occurred = r.facts.occurred_at.as_deref();
    let parts: Vec<String> = match kind {
        Kind::Household => vec![r.row.title.clone()],
        Kind::Visit => vec![
            household,
            sub.clone(),
            occurred.map(|s| dash.show_day(s)).unwrap_or_default(),
        ],
        Kind::Case => vec![sub.clone(), case_subject(r).to_string(), household],
        Kind::Report => vec![sub.clone(), r.facts.summary.clone()],
        Kind::Patrol => vec![
            lang.label("kind", "patrol"),
            occurred.map(|s| dash.show_time(s)).unwrap_or_default(),
            r.facts
                .summary
                .split('、')
                .filter(|w| !w.trim().is_empty())
                .map(|w| person(people, w.trim()))
                .collect::<Vec<_>>()
                .join(lang.list_sep()),
        ],
        Kind::Unit | Kind::Volunteer | Kind::Activity | Kind::Stock | Kind::Task => {
            vec![sub.clone(), r.row.title.clone()]
        }
        Kind::HouseholdPrivate => vec![lang.label("kind", "household_private"), household],
    };
    let mut parts = distinct(parts);
    // A type alone says too little: "低保 · 帮扶个案".
    if parts.is_empty() || parts == [sub] {
        parts.push(lang.label("kind", kind.as_str()));
    }
    layout::show_json(&parts.join(" · ").into(), 60)
}

/// The parts of a title that say something new: blanks dropped, and a part another one already
/// holds (a subject who is the household's head, `李四` beside `李四 3-2-101`) only once, in the
/// longer form.
fn distinct(parts: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in parts {
        let part = part.trim().to_string();
        if part.is_empty() || out.iter().any(|p| p.contains(part.as_str())) {
            continue;
        }
        match out.iter().position(|p| part.contains(p.as_str())) {
            Some(i) => out[i] = part,
            None => out.push(part),
        }
    }
    out
}

/// Whom a case is about: its index title is its type's code and its subject
/// (`IndexRow::from_fields`), so the subject is what follows the code.
fn case_subject(r: &ListedRecord) -> &str {
    let title = r.row.title.as_str();
    r.facts
        .subtype
        .as_deref()
        .and_then(|code| title.strip_prefix(code))
        .unwrap_or(title)
        .trim()
}

fn pager(staff: &Staff, p: &ListParams, total: u64) -> Markup {
    let lang = staff.lang;
    let pages = (total as usize).div_ceil(PAGE_SIZE);
    let link = |n: usize| format!("/records?{}&page={n}", p.query_string());
    html! {
        @if pages > 1 {
            nav class="pager" {
                @if p.page > 0 { a href=(link(p.page - 1)) { (lang.t("prev")) } }
                span { (p.page + 1) " / " (pages) }
                @if p.page + 1 < pages { a href=(link(p.page + 1)) { (lang.t("next")) } }
            }
        }
    }
}
