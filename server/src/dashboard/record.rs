//! A record page: its fields, the office's actions on it, and its full history read from the
//! Automerge changes (author, device time) joined with the relay's log (device, server time).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use gridsync_core::doc;
use gridsync_core::record::schema::FieldType;
use gridsync_core::record::{Kind, sensitive};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::{Staff, take_flash};
use super::history::{self, Entry};
use super::layout;
use super::{Dashboard, Fail, choices, office, person, status_label, tasks, write};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    #[serde(default)]
    saved: String,
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    staff: Staff,
    Path(id): Path<String>,
    Query(f): Query<Flash>,
) -> Result<Response, Fail> {
    let failed = take_flash(&headers);
    let saved = (!f.saved.is_empty()).then(|| (staff.lang.t("saved").to_string(), false));
    let flash = failed.as_ref().map(|(m, _)| (m.clone(), true)).or(saved);
    let mut page = render(&state, &staff, &id, flash).await?;
    if let Some((_, (name, value))) = failed
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        page.headers_mut().append(name, value);
    }
    Ok(page)
}

/// The record page, with a message on top (an error when the flag is set).
async fn render(
    state: &AppState,
    staff: &Staff,
    id: &str,
    flash: Option<(String, bool)>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let record = write::load(state, staff, id).await?;
    let kind: Kind = record.kind.parse().map_err(|_| Fail::not_found(lang))?;
    let mut fields = doc::read_root(&record.doc);
    if kind == Kind::Household {
        let private = state
            .relay
            .document(&sensitive::private_id(id))
            .await
            .map_err(|e| Fail::storage(lang, e))?;
        // Only the household's own private part: a record stored under its id before the relay
        // tied ids to kinds is not one.
        if let Some(p) = private.filter(|p| p.kind == Kind::HouseholdPrivate.as_str())
            && let Some(Value::Array(residents)) = doc::read_root(&p.doc).get("residents")
        {
            sensitive::merge_household(&mut fields, residents);
        }
    }
    let mut shown = Value::Object(fields.clone());
    layout::mask_sensitive(&mut shown);
    let conflicts = doc::conflicts(&record.doc);
    let entries = history::history(&record.doc);
    let sources: HashMap<String, crate::storage::ChangeSource> = state
        .relay
        .storage
        .change_sources(id)
        .await
        .map_err(|e| Fail::storage(lang, e))?
        .into_iter()
        .map(|s| (hex::encode(s.hash), s))
        .collect();
    let devices: HashMap<String, String> = state
        .accounts
        .devices(None)
        .await
        .map_err(|e| Fail::storage(lang, e))?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect();
    let people: HashMap<String, String> = state
        .accounts
        .users()
        .await
        .map_err(|e| Fail::storage(lang, e))?
        .into_iter()
        .map(|u| (u.username, u.display_name))
        .collect();
    let status_value = fields.get("status").and_then(Value::as_str).unwrap_or("");
    let heading = format!(
        "{} · {}",
        lang.label("kind", kind.as_str()),
        fields
            .get("head_name")
            .or_else(|| fields.get("subject_name"))
            .or_else(|| fields.get("title"))
            .or_else(|| fields.get("name"))
            .or_else(|| fields.get("item"))
            .or_else(|| fields.get("place"))
            .and_then(Value::as_str)
            .unwrap_or(id)
    );
    let body = html! {
        @if let Some((m, error)) = &flash { (layout::flash(Some(m), *error)) }
        p class="meta" {
            span { (lang.t("grid")) (lang.colon()) (staff.grid_name(&record.grid_id)) }
            @if !status_value.is_empty() { span { (lang.t("status")) (lang.colon()) strong id="record-status" { (status_label(lang, kind, Some(status_value))) } } }
            span class="muted" { "ID " (id) }
        }
        @if !conflicts.is_empty() {
            p class="flash error" { a href={ "/review/" (id) } { (lang.t("rec.to_review")) " (" (conflicts.len()) ")" } }
        }
        div class="cols" {
            section {
                h2 { (lang.t("rec.fields")) }
                (fields_table(lang, &state.dashboard, &people, kind, &shown))
            }
            @if matches!(kind, Kind::Case | Kind::Report | Kind::Patrol | Kind::Visit | Kind::Activity | Kind::Task) {
                section {
                    h2 { (lang.t("rec.actions")) }
                    @if matches!(kind, Kind::Case | Kind::Report) { (office::forms(staff, kind, id, &fields)) }
                    @if kind == Kind::Task { (tasks::buttons(staff, id, fields.get("status").and_then(Value::as_str), "")) }
                    @if matches!(kind, Kind::Report | Kind::Patrol | Kind::Visit | Kind::Activity) { (tasks::dispatch_form(staff, kind, id, &fields)) }
                }
            }
        }
        h2 { (lang.t("rec.history")) }
        p class="muted" { (lang.t("rec.history_hint")) }
        (history_table(state, staff, kind, &entries, &sources, &devices, &people))
    };
    let markup = layout::page(staff, "records", &heading, body);
    Ok(markup.into_response())
}

fn fields_table(
    lang: super::Lang,
    dash: &Dashboard,
    people: &HashMap<String, String>,
    kind: Kind,
    shown: &Value,
) -> Markup {
    let empty = Map::new();
    let map = shown.as_object().unwrap_or(&empty);
    let hidden = ["id", "kind", "grid_id", "schema_version", "updated_by"];
    html! {
        table class="fields" id="fields" { tbody {
            @for (k, v) in map.iter().filter(|(k, _)| !hidden.contains(&k.as_str())) {
                tr data-field=(k) {
                    th { (lang.field(kind, k)) }
                    td { (shown_value(lang, dash, people, kind, k, v)) }
                }
            }
        } }
    }
}

/// A field's value for people: enum codes translated, the rest compact JSON.
pub fn value_label(lang: super::Lang, kind: Kind, field: &str, v: &Value) -> String {
    let group = choices(kind, field).map(|(group, _)| group);
    match (group, v.as_str()) {
        (Some(g), Some(s)) => lang.label(g, s),
        _ => layout::show_json(v, 400),
    }
}

/// A field of the record as it is now, for people: its status as the office sees it (see
/// [`super::shown_status`]), ID numbers masked, codes translated, lists and nested records
/// readable (see [`readable`]).
pub fn shown_value(
    lang: super::Lang,
    dash: &Dashboard,
    people: &HashMap<String, String>,
    kind: Kind,
    field: &str,
    v: &Value,
) -> Markup {
    if field == "status" {
        return html! { (status_label(lang, kind, v.as_str())) };
    }
    let mut v = v.clone();
    layout::mask_sensitive(&mut v);
    readable(lang, dash, people, kind, field, &v)
}

/// The top-level fields that hold a username (or a list of them), shown by name (see
/// [`person`]).
pub const PEOPLE_FIELDS: [&str; 6] = [
    "created_by",
    "updated_by",
    "responsible",
    "assigned_worker",
    "team",
    "visitors",
];

/// A value for people: a list of entries (a case's actions, a patrol's incidents, a visit's
/// issues, a report's follow-ups, ...) one entry a line, a nested record (an address) as one
/// entry, a list of words as running text, a person by name, an instant in the community's
/// time, anything else as [`value_label`]. The record page, its history and the review page
/// all show values this way.
pub fn readable(
    lang: super::Lang,
    dash: &Dashboard,
    people: &HashMap<String, String>,
    kind: Kind,
    field: &str,
    v: &Value,
) -> Markup {
    let is_people = PEOPLE_FIELDS.contains(&field);
    match v {
        Value::String(s) if is_people => html! { (person(people, s)) },
        // Instants are stored as RFC 3339 in UTC; dates (`next_visit_due`) are not and stay.
        Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
            html! { (dash.show_time(s)) }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => html! {
            ul class="entries" {
                @for item in items { li { (entry(lang, dash, people, field, item)) } }
            }
        },
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            let words: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(|w| {
                    if is_people {
                        person(people, w)
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            html! { (words.join(lang.list_sep())) }
        }
        Value::Object(_) => html! { (entry(lang, dash, people, field, v)) },
        _ => html! { (value_label(lang, kind, field, v)) },
    }
}

/// The keys an entry's time and text are read from, the first one present.
pub const TIME_KEYS: [&str; 3] = ["at", "occurred_at", "passed_at"];
pub const TEXT_KEYS: [&str; 3] = ["description", "text", "name"];

/// The label group of an entry's coded value, by the list it is in and its key (from the
/// kinds' specs).
pub fn entry_group(field: &str, key: &str) -> Option<&'static str> {
    Kind::ALL_STORED.into_iter().find_map(|kind| {
        let part = kind
            .spec()
            .field(field)?
            .ty
            .parts()
            .iter()
            .find(|p| p.name == key)?;
        match part.ty {
            FieldType::Choice(set) => Some(set.group),
            _ => None,
        }
    })
}

/// One entry as running text: when (the community's time), what kind (by label), its text,
/// its other details by label, and who wrote it (by name), e.g.
/// `2026-11-28 10:00 · 申请待遇 · 提交补贴申请 · 王芳`.
fn entry(
    lang: super::Lang,
    dash: &Dashboard,
    people: &HashMap<String, String>,
    field: &str,
    item: &Value,
) -> String {
    let Some(map) = item.as_object() else {
        return layout::show_json(item, 400);
    };
    let text = |key: &str| -> Option<String> {
        let v = map.get(key)?;
        let s = match v {
            Value::String(s) if s.trim().is_empty() => return None,
            Value::String(s) => match entry_group(field, key) {
                Some(group) => lang.label(group, s),
                None => s.clone(),
            },
            Value::Number(n) => match n.as_f64() {
                // Quantities are stored as floating point: 2, not 2.0.
                Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                _ => n.to_string(),
            },
            Value::Array(a) if a.is_empty() => return None,
            Value::Array(a) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(lang.list_sep()),
            Value::Null => return None,
            other => layout::show_json(other, 200),
        };
        Some(s)
    };
    let time = TIME_KEYS.into_iter().find(|k| map.contains_key(*k));
    let main = TEXT_KEYS.into_iter().find(|k| text(k).is_some());
    let mut parts: Vec<String> = Vec::new();
    if let Some(s) = time.and_then(|k| map.get(k)).and_then(Value::as_str) {
        parts.push(dash.show_time(s));
    }
    parts.extend(text("kind"));
    parts.extend(main.and_then(&text));
    for key in map.keys().map(String::as_str) {
        if Some(key) == time || Some(key) == main || matches!(key, "kind" | "by") {
            continue;
        }
        if let Some(value) = text(key) {
            parts.push(format!(
                "{}{}{value}",
                lang.label("field", &format!("{field}[].{key}")),
                lang.colon()
            ));
        }
    }
    if let Some(by) = map.get("by").and_then(Value::as_str) {
        parts.push(person(people, by));
    }
    parts.join(" · ")
}

fn history_table(
    state: &AppState,
    staff: &Staff,
    kind: Kind,
    entries: &[Entry],
    sources: &HashMap<String, crate::storage::ChangeSource>,
    devices: &HashMap<String, String>,
    people: &HashMap<String, String>,
) -> Markup {
    let lang = staff.lang;
    let dash = &state.dashboard;
    html! {
        table class="history" id="history" {
            thead { tr {
                th { (lang.t("rec.device_time")) } th { (lang.t("received")) } th { (lang.t("rec.author")) }
                th { (lang.t("rec.device")) } th { (lang.t("rec.changed")) }
            } }
            tbody {
                @for e in entries.iter().rev() {
                    @let source = sources.get(&e.hash.to_string());
                    @let author = e.author.clone().unwrap_or_default();
                    tr class={ @if e.concurrent { "concurrent" } } data-author=(author) {
                        td { (dash.show_epoch(e.time)) @if e.concurrent { " " span class="tag warn" { (lang.t("rec.concurrent")) } } }
                        td { (source.map(|s| dash.show_time(&s.received_at)).unwrap_or_default()) }
                        td { (people.get(&author).cloned().unwrap_or_default()) " " span class="muted" { (author) } }
                        td { (source.map(|s| devices.get(&s.device_id).cloned().unwrap_or_else(|| s.device_id.clone())).unwrap_or_default()) }
                        td {
                            @if e.created { strong { (lang.t("rec.created")) } }
                            @else {
                                ul class="changes" {
                                    @for f in &e.fields {
                                        li {
                                            strong { (lang.field(kind, &f.path)) } (lang.colon())
                                            @let shown = |v: &Value| masked(lang, dash, people, kind, &f.path, v);
                                            @if let Some(b) = &f.before { del { (shown(b)) } " → " }
                                            @match &f.after { Some(a) => ins { (shown(a)) }, None => "∅" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A value in the history: as it was written (a report's "draft" stays a draft), but readable.
fn masked(
    lang: super::Lang,
    dash: &Dashboard,
    people: &HashMap<String, String>,
    kind: Kind,
    path: &str,
    v: &Value,
) -> Markup {
    let mut v = v.clone();
    layout::mask_sensitive(&mut v);
    let top = path.split(['.', '[']).next().unwrap_or_default();
    readable(lang, dash, people, kind, top, &v)
}
