//! What a household's page shows besides its fields: its residents, one a row (ID numbers
//! masked), and the records about it — visits, cases, urgent reports and tasks — read from the
//! index, never from their documents.

use std::collections::HashMap;

use gridsync_core::record::Kind;
use gridsync_core::record::RESIDENT;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::auth::Staff;
use super::i18n::Lang;
use super::lists::title;
use super::values::{self, Names};
use super::{Dashboard, Fail, layout, person, status_label, subtype_group};
use crate::AppState;
use crate::storage::{KindFilter, ListedRecord, RecordQuery};

/// Records listed per kind at most; the list page has the rest.
const MOST: usize = 100;

/// The residents of a household as a table: the columns of the resident's spec that any of
/// them has filled in (the name always), in the spec's order.
pub fn residents(
    lang: Lang,
    dash: &Dashboard,
    names: &Names,
    shown: &Map<String, Value>,
) -> Markup {
    let empty = Vec::new();
    let rows: Vec<&Map<String, Value>> = match shown.get("residents") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => empty.iter().filter_map(Value::as_object).collect(),
    };
    let columns: Vec<&'static str> = RESIDENT
        .iter()
        .map(|f| f.name)
        .filter(|name| {
            *name == "name"
                || rows
                    .iter()
                    .any(|r| r.get(*name).is_some_and(|v| !values::is_empty(v)))
        })
        .collect();
    html! {
        section id="residents" {
            h2 { (lang.field(Kind::Household, "residents")) " (" (rows.len()) ")" }
            @if rows.is_empty() { p class="muted" { (lang.t("empty")) } } @else {
                table class="list residents" {
                    thead { tr { @for c in &columns { th { (lang.field(Kind::Household, &format!("residents[].{c}"))) } } } }
                    tbody {
                        @for r in &rows {
                            tr {
                                @for c in &columns {
                                    td data-field=(c) { (cell(lang, dash, names, c, r.get(*c))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn cell(lang: Lang, dash: &Dashboard, names: &Names, part: &str, v: Option<&Value>) -> Markup {
    let Some(v) = v.filter(|v| !values::is_empty(v)) else {
        return values::nothing(lang);
    };
    let path = format!("residents[].{part}");
    match (Kind::Household.spec().field_at(&path).map(|f| f.ty), v) {
        (Some(gridsync_core::record::schema::FieldType::Choice(set)), Value::String(s)) => {
            html! { (lang.label(set.group, s)) }
        }
        _ => values::readable(lang, dash, names, Kind::Household, part, v),
    }
}

/// The household's visits, cases, urgent reports and tasks, each kind a table, from the index.
/// A report belongs to the household when a task dispatched from it names the household.
pub async fn records(state: &AppState, staff: &Staff, id: &str) -> Result<Markup, Fail> {
    let lang = staff.lang;
    let dash = &state.dashboard;
    let store = |e| Fail::storage(lang, e);
    let about = |kind: Kind| RecordQuery {
        grids: staff.grids.clone(),
        kinds: KindFilter::one(kind),
        household: Some(id.to_string()),
        limit: Some(MOST),
        ..RecordQuery::default()
    };
    let mut sections = Vec::new();
    let mut tasks = None;
    for kind in [Kind::Visit, Kind::Case, Kind::Task] {
        let mut found = state
            .relay
            .queries()
            .list_records(&about(kind))
            .await
            .map_err(store)?;
        // Newest first by what they are about: a visit by when it was made.
        found
            .rows
            .sort_by(|a, b| b.facts.occurred_at.cmp(&a.facts.occurred_at));
        if kind == Kind::Task {
            tasks = Some(found.rows.clone());
        }
        sections.push((kind, found.rows, found.total));
    }
    let sources: Vec<String> = tasks
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.facts.source_id.clone())
        .collect();
    let reports = if sources.is_empty() {
        Vec::new()
    } else {
        state
            .relay
            .queries()
            .list_records(&RecordQuery {
                grids: staff.grids.clone(),
                kinds: KindFilter::one(Kind::Report),
                ids: sources,
                ..RecordQuery::default()
            })
            .await
            .map_err(store)?
            .rows
    };
    let n = reports.len() as u64;
    sections.insert(2, (Kind::Report, reports, n));
    let people = super::display_names(state, lang).await?;
    Ok(html! {
        div class="related" id="household-records" {
            @for (kind, rows, total) in &sections {
                section data-kind=(kind.as_str()) id={ "household-" (kind.as_str()) } {
                    h2 { (lang.label("kind", kind.as_str())) " (" (total) ")" }
                    @if rows.is_empty() { p class="muted" { (lang.t("empty")) } }
                    @else { (related(staff, dash, rows, &people)) }
                    @if *total as usize > rows.len() {
                        p { a href={ "/records?kind=" (kind.as_str()) "&household=" (layout::encode(id)) } { (lang.t("hh.all")) } }
                    }
                }
            }
        }
    })
}

fn related(
    staff: &Staff,
    dash: &Dashboard,
    rows: &[ListedRecord],
    people: &HashMap<String, String>,
) -> Markup {
    let lang = staff.lang;
    html! {
        table class="list related" {
            thead { tr {
                th { (lang.t("title")) } th { (lang.t("type")) } th { (lang.t("status")) }
                th { (lang.t("worker")) } th { (lang.t("date")) }
            } }
            tbody {
                @for r in rows {
                    tr data-id=(r.row.id) {
                        td { a href={ "/records/" (layout::encode(&r.row.id)) } { (title(lang, dash, r, people)) } }
                        td { (or_none(lang, r.facts.subtype.as_deref().map(|t| lang.label(subtype_group(r.row.kind), t)))) }
                        td { (or_none(lang, Some(status_label(lang, r.row.kind, r.row.status.as_deref())))) }
                        td { (or_none(lang, r.row.assigned_to.as_deref().map(|w| person(people, w)))) }
                        td { (or_none(lang, r.facts.occurred_at.as_deref().map(|s| dash.show_day(s)))) }
                    }
                }
            }
        }
    }
}

/// A cell's text, or 无 when there is none.
fn or_none(lang: Lang, text: Option<String>) -> Markup {
    match text.filter(|t| !t.trim().is_empty()) {
        Some(t) => html! { (t) },
        None => values::nothing(lang),
    }
}
