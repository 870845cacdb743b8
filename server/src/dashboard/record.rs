//! A record page: its fields in the order and groups of its kind's spec, the office's actions on
//! it, a household's residents and records, and its full history read from the Automerge
//! changes (author, device time) joined with the relay's log (device, server time).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use gridsync_core::doc;
use gridsync_core::record::attachment::FIELD_NAME;
use gridsync_core::record::schema::{FieldType, SYSTEM};
use gridsync_core::record::{Kind, sensitive};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::{Staff, take_flash};
use super::i18n::Lang;
use super::values::{self, Names};
use super::{
    Dashboard, Fail, attachments, gallery, history, household, layout, office, status_label, tasks,
    write,
};
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
    let kind: Kind = record.kind.ok_or_else(|| Fail::not_found(lang))?;
    let mut fields = doc::read_root(&record.doc);
    // The photos of a household's private part (an ID card) are shown with the household's,
    // marked sensitive; only staff who may read private parts see this page at all.
    let mut photos = fields
        .get(FIELD_NAME)
        .map(gallery::entries)
        .unwrap_or_default();
    let mut sensitive_photos = HashSet::new();
    if kind == Kind::Household {
        let private = state
            .relay
            .document(&sensitive::private_id(id))
            .await
            .map_err(|e| Fail::storage(lang, e))?;
        // Only the household's own private part: a record stored under its id before the relay
        // tied ids to kinds is not one.
        if let Some(p) = private.filter(|p| p.kind == Some(Kind::HouseholdPrivate)) {
            let private = doc::read_root(&p.doc);
            if let Some(Value::Array(residents)) = private.get("residents") {
                sensitive::merge_household(&mut fields, residents);
            }
            for a in private
                .get(FIELD_NAME)
                .map(gallery::entries)
                .unwrap_or_default()
            {
                if !photos.iter().any(|p| p.hash == a.hash) {
                    sensitive_photos.insert(a.hash.clone());
                    photos.push(a);
                }
            }
        }
    }
    let mut shown = Value::Object(fields.clone());
    layout::mask_sensitive(&mut shown);
    let shown = match shown {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let conflicts = doc::conflicts(&record.doc);
    let entries = history::history(&record.doc);
    let sources: HashMap<String, crate::storage::ChangeSource> = state
        .relay
        .queries()
        .change_sources(id)
        .await
        .map_err(|e| Fail::storage(lang, e))?
        .into_iter()
        .map(|s| (hex::encode(s.hash), s))
        .collect();
    let mut named = values::ref_ids(kind, &fields);
    named.push(id.to_string());
    let mut names = Names::load(state, staff, named).await?;
    let mut shown_hashes: Vec<String> = photos.iter().map(|a| a.hash.clone()).collect();
    for e in &entries {
        for f in e.fields.iter().filter(|f| f.path.starts_with(FIELD_NAME)) {
            for v in f.before.iter().chain(&f.after) {
                shown_hashes.extend(gallery::entries(v).into_iter().map(|a| a.hash));
            }
        }
    }
    names.arrivals(state, lang, shown_hashes).await?;
    let heading = names
        .records
        .get(id)
        .cloned()
        .unwrap_or_else(|| lang.label("kind", kind.as_str()));
    let dash = &state.dashboard;
    let staff_of_grid = if kind == Kind::Case {
        office::grid_staff(state, staff, &record.grid_id).await?
    } else {
        Vec::new()
    };
    let related = if kind == Kind::Household {
        Some(household::records(state, staff, id).await?)
    } else {
        None
    };
    let move_form = if kind == Kind::Household {
        Some(super::grid_move::form(state, staff, id, &record.grid_id).await?)
    } else {
        None
    };
    let status_value = fields.get("status").and_then(Value::as_str).unwrap_or("");
    let body = html! {
        @if let Some((m, error)) = &flash { (layout::flash(Some(m), *error)) }
        p class="meta" {
            span { (lang.label("kind", kind.as_str())) }
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
                (fields_table(lang, dash, &names, kind, &shown))
            }
            @if matches!(kind, Kind::Case | Kind::Report | Kind::Patrol | Kind::Visit | Kind::Activity | Kind::Task) {
                section {
                    h2 { (lang.t("rec.actions")) }
                    @if matches!(kind, Kind::Case | Kind::Report) { (office::forms(staff, kind, id, &fields, &staff_of_grid)) }
                    @if kind == Kind::Task { (tasks::buttons(staff, id, fields.get("status").and_then(Value::as_str), "")) }
                    @if matches!(kind, Kind::Report | Kind::Patrol | Kind::Visit | Kind::Activity) { (tasks::dispatch_form(staff, kind, id, &fields)) }
                }
            }
        }
        @if gallery::carries(kind) {
            section class="attachments" id="attachments" {
                h2 { (lang.field(kind, FIELD_NAME)) }
                (gallery::gallery(lang, dash, &names, &photos, &sensitive_photos))
                (gallery::attach_form(staff, kind, id, attachments::max_bytes(state)))
            }
        }
        @if kind == Kind::Household {
            (household::residents(lang, dash, &names, &shown))
        }
        @if let Some(related) = related { (related) }
        @if let Some(move_form) = move_form { (move_form) }
        h2 { (lang.t("rec.history")) }
        p class="muted" { (lang.t("rec.history_hint")) }
        (history::table(staff, dash, kind, &entries, &sources, &names))
    };
    let markup = layout::page(staff, "records", &heading, body);
    Ok(markup.into_response())
}

/// The groups a record page shows its fields in, each by its heading: the record's own fields
/// in the order of its kind's spec (then what it computes, then fields a newer phone wrote),
/// its lists of entries, and what the system keeps (who created it, on which device, when).
/// A declared field the record lacks is listed too, as 无. A household's residents have their
/// own table.
pub fn field_groups(
    kind: Kind,
    map: &Map<String, Value>,
) -> Vec<(&'static str, Vec<(String, Value)>)> {
    let spec = kind.spec();
    let is_list = |ty: &FieldType| matches!(ty, FieldType::Entries(_) | FieldType::Log(_));
    // A household's residents have their own table, photos and files their gallery.
    let skip = |name: &str| (kind == Kind::Household && name == "residents") || name == FIELD_NAME;
    let value = |name: &str| map.get(name).cloned().unwrap_or(Value::Null);
    let mut own: Vec<(String, Value)> = spec
        .fields
        .iter()
        .filter(|f| !is_list(&f.ty) && !skip(f.name))
        .map(|f| (f.name.to_string(), value(f.name)))
        .collect();
    own.extend(
        spec.computed
            .iter()
            .map(|c| (c.field.name.to_string(), (c.value)(map))),
    );
    own.extend(
        map.iter()
            .filter(|(k, _)| {
                spec.field(k).is_none() && !SYSTEM.iter().any(|f| f.name == k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let lists = spec
        .fields
        .iter()
        .filter(|f| is_list(&f.ty) && !skip(f.name))
        .map(|f| (f.name.to_string(), value(f.name)))
        .collect();
    let mut system: Vec<(String, Value)> = SHOWN_SYSTEM
        .iter()
        .map(|name| (name.to_string(), value(name)))
        .collect();
    if map.get("deleted").and_then(Value::as_bool) == Some(true) {
        system.push(("deleted".into(), Value::Bool(true)));
    }
    if let Some(into) = map.get("merged_into").filter(|v| !values::is_empty(v)) {
        system.push(("merged_into".into(), into.clone()));
    }
    vec![
        ("rec.group_own", own),
        ("rec.group_lists", lists),
        ("rec.group_system", system),
    ]
}

/// What the system keeps about every record that a clerk may want to know.
const SHOWN_SYSTEM: [&str; 5] = [
    "created_by",
    "device_id",
    "created_at",
    "updated_at",
    "updated_by",
];

fn fields_table(
    lang: Lang,
    dash: &Dashboard,
    names: &Names,
    kind: Kind,
    shown: &Map<String, Value>,
) -> Markup {
    html! {
        table class="fields" id="fields" {
            @for (heading, rows) in field_groups(kind, shown) {
                @if !rows.is_empty() {
                    tbody class="group" data-group=(heading) {
                        tr class="group" { th colspan="2" { (lang.t(heading)) } }
                        @for (k, v) in &rows {
                            tr data-field=(k) {
                                th { (lang.field(kind, k)) }
                                td { (values::shown_value(lang, dash, names, kind, k, v)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
