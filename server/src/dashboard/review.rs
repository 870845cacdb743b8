//! The review queue: records where concurrent edits set the same field differently (each value
//! shown with its author and time), records edited in parallel on different fields, and texts
//! two people edited at once (both versions side by side). Staff choose a value, write a new one
//! or rewrite the merged text; the resolution is an office change signed with the reviewer's
//! username, so it is in the history and reaches every device at its next sync. Below the queue,
//! what was settled lately: by staff, or by a later change on a phone.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use gridsync_core::doc;
use gridsync_core::record::attachment::FIELD_NAME;
use gridsync_core::record::{self, Attachment, Kind};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::auth::{Staff, redirect_with_error, take_flash};
use super::layout;
use super::lists::{rows_table, title};
use super::values::{self, Names};
use super::write::{self, Edit};
use super::{Dashboard, Fail, choices_from, display_names, parse_choice, person};
use super::{gallery, history};
use crate::AppState;
use crate::accounts::Role;
use crate::storage::{ListedRecord, RecordQuery};

/// How far back the queue lists what was settled.
const SETTLED_DAYS: i64 = 7;

pub async fn queue(State(state): State<Arc<AppState>>, staff: Staff) -> Result<Response, Fail> {
    let lang = staff.lang;
    let dash = &state.dashboard;
    let q = RecordQuery {
        grids: staff.grids.clone(),
        needs_review: true,
        limit: Some(500),
        ..RecordQuery::default()
    };
    let found = state
        .relay
        .queries()
        .list_records(&q)
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let since = chrono::Utc::now() - chrono::Duration::days(SETTLED_DAYS);
    let mut settled = state
        .relay
        .queries()
        .list_records(&RecordQuery {
            grids: staff.grids.clone(),
            settled_since: Some(crate::storage::utc_string(since)),
            include_deleted: true,
            limit: Some(100),
            ..RecordQuery::default()
        })
        .await
        .map_err(|e| Fail::storage(lang, e))?
        .rows;
    // Awaiting review again (a field conflict a phone has not settled) is not settled.
    settled.retain(|r| !r.row.has_conflicts && !r.parallel);
    settled.sort_by(|a, b| settled_at(b).cmp(settled_at(a)));
    let people = display_names(&state, lang).await?;
    let by_id = user_names(&state, lang).await?;
    let body = html! {
        p class="muted" { (lang.t("rv.hint")) }
        div {
            @if found.rows.is_empty() { p class="muted" id="review-empty" { (lang.t("rv.empty")) } }
            @else { (rows_table(&staff, dash, &found.rows, &people)) }
        }
        h2 { (lang.t("rv.settled")) }
        p class="muted" { (lang.t("rv.settled_hint")) }
        @if settled.is_empty() { p class="muted" { (lang.t("empty")) } } @else {
            table class="list" id="settled" {
                thead { tr {
                    th { (lang.t("title")) } th { (lang.t("kind")) } th { (lang.t("grid")) }
                    th { (lang.t("rv.settled_at")) } th { (lang.t("rv.settled_by")) } th { (lang.t("flags")) }
                } }
                tbody {
                    @for r in &settled {
                        tr data-id=(r.row.id) {
                            td { a href={ "/review/" (layout::encode(&r.row.id)) } { (title(lang, dash, r, &people)) } }
                            td { (lang.label("kind", r.row.kind.as_str())) }
                            td { (staff.grid_name(&r.row.grid_id)) }
                            td { (dash.show_time(settled_at(r))) }
                            td { @let who = settler(&by_id, r); @if who.is_empty() { (values::nothing(lang)) } @else { (who) } }
                            td { span class="tag ok" { (lang.t("rv.settled_tag")) } }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&staff, "review", lang.t("nav.review"), body).into_response())
}

fn settled_at(r: &ListedRecord) -> &str {
    r.settled.as_ref().map_or("", |s| s.at.as_str())
}

/// User id → display name (the log names the uploader of a change by user id).
async fn user_names(
    state: &AppState,
    lang: super::Lang,
) -> Result<std::collections::HashMap<String, String>, Fail> {
    Ok(state
        .accounts
        .users()
        .await
        .map_err(|e| Fail::storage(lang, e))?
        .into_iter()
        .map(|u| (u.id, u.display_name))
        .collect())
}

/// Who wrote the change that settled a record, by name.
fn settler(by_id: &std::collections::HashMap<String, String>, r: &ListedRecord) -> String {
    r.settled
        .as_ref()
        .and_then(|s| s.by.as_ref())
        .map(|id| by_id.get(id).cloned().unwrap_or_else(|| id.clone()))
        .unwrap_or_default()
}

/// Fields a history entry shows that are bookkeeping, not content.
const NOT_CONTENT: [&str; 7] = [
    "id",
    "kind",
    "grid_id",
    "schema_version",
    "updated_by",
    "updated_at",
    "created_at",
];

pub async fn page_for(
    state: &AppState,
    staff: &Staff,
    id: &str,
    flash: Option<(String, bool)>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let rec = write::load(state, staff, id).await?;
    let kind: Kind = rec.kind.ok_or_else(|| Fail::not_found(lang))?;
    let conflicts = doc::conflicts(&rec.doc);
    let listed = state
        .relay
        .queries()
        .list_records(&RecordQuery {
            grids: staff.grids.clone(),
            ids: vec![id.to_string()],
            include_deleted: true,
            ..RecordQuery::default()
        })
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let row = listed.rows.first();
    let parallel = row.is_some_and(|r| r.parallel);
    let fields = doc::read_root(&rec.doc);
    let mut names = Names::load(state, staff, values::ref_ids(kind, &fields)).await?;
    let users = state
        .accounts
        .users()
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let office: Vec<String> = users
        .iter()
        .filter(|u| matches!(u.role, Role::Office | Role::Admin))
        .map(|u| u.username.clone())
        .collect();
    let changes = history::read(&rec.doc);
    let texts = history::text_conflicts(&changes, kind, |u| office.iter().any(|o| o == u));
    let by_id = users.into_iter().map(|u| (u.id, u.display_name)).collect();
    let concurrent: Vec<history::Entry> = if parallel {
        changes
            .entries
            .iter()
            .filter(|e| e.concurrent)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    // The attachments each side added or held, shown as thumbnails where the sides differ.
    let added = |e: &history::Entry| -> Vec<Attachment> {
        e.fields
            .iter()
            .filter(|f| f.path.starts_with(FIELD_NAME))
            .filter_map(|f| f.after.as_ref())
            .flat_map(gallery::entries)
            .collect()
    };
    let mut shown: Vec<String> = gallery::hashes(&fields);
    for c in conflicts.iter().filter(|c| c.field == FIELD_NAME) {
        for v in &c.values {
            shown.extend(gallery::entries(&v.value).into_iter().map(|a| a.hash));
        }
    }
    for e in &concurrent {
        shown.extend(added(e).into_iter().map(|a| a.hash));
    }
    names.arrivals(state, lang, shown).await?;
    let people = &names.people;
    // What the parallel edits touched, as the record reads now that they merged.
    let mut touched: Vec<&str> = Vec::new();
    for f in concurrent.iter().flat_map(|e| &e.fields) {
        let top = f.path.split(['.', '[']).next().unwrap_or_default();
        if fields.contains_key(top) && !NOT_CONTENT.contains(&top) && !touched.contains(&top) {
            touched.push(top);
        }
    }
    let dash = &state.dashboard;
    let action = |what: &str| format!("/review/{}/{what}", layout::encode(id));
    let who = |author: &Option<String>| {
        let a = author.clone().unwrap_or_default();
        html! { span class="person" title=(a) { (person(people, &a)) } }
    };
    let title = row.map_or_else(
        || lang.label("kind", kind.as_str()),
        |r| title(lang, dash, r, people),
    );
    let settled = row
        .filter(|r| !r.parallel && conflicts.is_empty())
        .and_then(|r| r.settled.as_ref().map(|s| (r, s)));
    let heading = format!("{}{}{title}", lang.t("rv.heading"), lang.colon());
    let body = html! {
        @if let Some((m, error)) = &flash { (layout::flash(Some(m), *error)) }
        p class="meta" {
            span { (lang.label("kind", kind.as_str())) }
            span { (staff.grid_name(&rec.grid_id)) }
            a href={ "/records/" (id) } { (lang.t("rv.open_record")) }
            span class="muted" { "ID " (id) }
        }
        @if conflicts.is_empty() && !parallel && texts.is_empty() { p class="muted" id="review-empty" { (lang.t("rv.empty")) } }
        @if let Some((r, s)) = settled {
            p class="flash" id="review-settled" {
                (lang.t("rv.settled_tag")) (lang.colon()) (dash.show_time(&s.at))
                @let who = settler(&by_id, r);
                @if !who.is_empty() { " · " (who) }
            }
        }
        @for c in &conflicts {
            section class="conflict card" data-field=(c.field) {
                h2 title=(c.field) { (lang.t("rv.field")) (lang.colon()) (lang.field(kind, &c.field)) }
                table class="values" id={ "values-" (c.field) } {
                    thead { tr {
                        th { (lang.t("rv.value")) } th { (lang.t("rec.author")) }
                        th { (lang.t("rec.device_time")) } th { (lang.t("rv.action")) }
                    } }
                    tbody {
                    @for (i, v) in c.values.iter().enumerate() {
                        tr data-value=(layout::show_json(&v.value, 200)) {
                            td class="value" { strong { (values::readable(lang, dash, &names, kind, &c.field, &v.value)) } @if i == 0 { " " span class="tag" { (lang.t("rv.shown")) } } }
                            td { (who(&v.author)) }
                            td { (v.written_at.map(|t| dash.show_epoch(t)).unwrap_or_default()) }
                            td {
                                form method="post" action=(action("resolve")) class="inline" {
                                    (layout::csrf_field(staff))
                                    input type="hidden" name="field" value=(c.field);
                                    input type="hidden" name="choice" value=(i);
                                    button type="submit" class="choose" { (lang.t("rv.choose")) }
                                }
                            }
                        }
                    }
                    }
                }
                form method="post" action=(action("resolve")) class="act new-value" {
                    (layout::csrf_field(staff))
                    input type="hidden" name="field" value=(c.field);
                    @if let Some((group, values)) = choices_from(kind, &c.field, &c.values.iter().map(|v| &v.value).collect::<Vec<_>>()) {
                        label { (lang.t("rv.new_value"))
                            select name="value" required {
                                option value="" { (lang.t("rv.pick")) }
                                @for v in &values { option value=(v) { (lang.label(group, v)) } }
                            }
                        }
                    } @else {
                        label { (lang.t("rv.new_value")) input name="value" required; }
                    }
                    button type="submit" { (lang.t("rv.write")) }
                }
            }
        }
        @for t in &texts {
            (text_conflict(staff, dash, kind, &action("rewrite"), t, &fields, &names))
        }
        @if parallel {
            section class="card parallel" {
                h2 { (lang.t("rv.parallel")) }
                ul {
                    @for e in &concurrent {
                        li { (dash.show_epoch(e.time)) " · " (who(&e.author)) (lang.colon())
                            (e.fields.iter().map(|f| lang.field(kind, &f.path)).collect::<Vec<_>>().join(lang.list_sep()))
                            @let theirs = added(e);
                            @if !theirs.is_empty() {
                                div class="added-attachments" { (lang.t("att.added")) (lang.colon()) (gallery::strip(lang, &names, &theirs)) }
                            }
                        }
                    }
                }
                @if !touched.is_empty() {
                    h3 { (lang.t("rv.merged")) }
                    table class="fields" id="merged" { tbody {
                        @for k in &touched {
                            tr data-field=(k) {
                                th { (lang.field(kind, k)) }
                                td { (values::shown_value(lang, dash, &names, kind, k, &fields[*k])) }
                            }
                        }
                    } }
                }
                form method="post" action=(action("done")) {
                    (layout::csrf_field(staff))
                    button type="submit" id="mark-reviewed" { (lang.t("rv.done")) }
                }
            }
        }
    };
    Ok(layout::page(staff, "review", &heading, body).into_response())
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Fail> {
    let flash = take_flash(&headers);
    let mut page = page_for(
        &state,
        &staff,
        &id,
        flash.as_ref().map(|(m, _)| (m.clone(), true)),
    )
    .await?;
    if let Some((_, (name, value))) = flash
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        page.headers_mut().append(name, value);
    }
    Ok(page)
}

/// A text two people edited at once: each version as its author left it, side by side, and the
/// merged text the record holds now, to rewrite.
fn text_conflict(
    staff: &Staff,
    dash: &Dashboard,
    kind: Kind,
    action: &str,
    t: &history::TextConflict,
    fields: &serde_json::Map<String, Value>,
    names: &Names,
) -> maud::Markup {
    let lang = staff.lang;
    let merged = fields.get(&t.field).and_then(Value::as_str).unwrap_or("");
    html! {
        section class="card text-conflict" data-field=(t.field) id={ "text-" (t.field) } {
            h2 { (lang.t("rv.text")) (lang.colon()) (lang.field(kind, &t.field)) }
            p class="muted" { (lang.t("rv.text_hint")) }
            div class="versions" {
                @for v in &t.versions {
                    figure class="version" {
                        figcaption {
                            @let author = v.author.clone().unwrap_or_default();
                            (values::person_link(names, &author)) " · " (dash.show_epoch(v.time))
                        }
                        p class="text" { @if v.text.trim().is_empty() { (values::nothing(lang)) } @else { (v.text) } }
                    }
                }
            }
            form method="post" action=(action) class="rewrite" {
                (layout::csrf_field(staff))
                input type="hidden" name="field" value=(t.field);
                label { (lang.t("rv.text_merged"))
                    textarea name="text" rows="4" required { (merged) }
                }
                button type="submit" { (lang.t("rv.text_save")) }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RewriteForm {
    #[serde(default)]
    csrf: String,
    field: String,
    #[serde(default)]
    text: String,
}

/// Rewrites a text two people edited at once: an office change that puts the clerk's text
/// there, made on the merged record, so it settles the text and, with nothing else held twice,
/// the record's review.
pub async fn rewrite(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(id): Path<String>,
    Form(form): Form<RewriteForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    let lang = staff.lang;
    let first = write::load(&state, &staff, &id).await?;
    let ctx = write::context(&state, &staff, &doc::read_root(&first.doc)).await?;
    // Browsers send a textarea's lines with CR LF.
    let text = form.text.replace("\r\n", "\n");
    let result = write::commit(&state, &staff, &id, |rec| {
        let unprocessable = |m: String| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, m);
        let kind: Kind = rec.kind.ok_or_else(|| Fail::not_found(lang))?;
        if !kind.is_text(&form.field) {
            return Err(unprocessable(lang.t("err.bad_request").into()));
        }
        if text.trim().is_empty() {
            return Err(unprocessable(lang.t("err.value").into()));
        }
        let before = doc::read_root(&rec.doc);
        let mut fields = before.clone();
        fields.insert(form.field.clone(), Value::String(text.clone()));
        record::validate(kind, &mut fields, Some(&before), &ctx)
            .map_err(|e| unprocessable(lang.validation(&e)))?;
        Ok(Edit::Fields {
            fields,
            force: Vec::new(),
        })
    })
    .await;
    let back = format!("/review/{}", layout::encode(&id));
    match result {
        Ok(seq) => {
            finish_review(&state, &staff, &id, seq).await?;
            Ok(Redirect::to(&back).into_response())
        }
        Err(fail) if fail.status == StatusCode::UNPROCESSABLE_ENTITY => {
            Ok(redirect_with_error(&state, &back, &fail.message))
        }
        Err(fail) => Err(fail),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: String,
    field: String,
    #[serde(default)]
    choice: Option<usize>,
    #[serde(default)]
    value: String,
}

pub async fn resolve(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    let lang = staff.lang;
    let first = write::load(&state, &staff, &id).await?;
    let ctx = write::context(&state, &staff, &doc::read_root(&first.doc)).await?;
    let result = write::commit(&state, &staff, &id, |rec| {
        let unprocessable = |m: String| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, m);
        let kind: Kind = rec.kind.ok_or_else(|| Fail::not_found(lang))?;
        let conflict = doc::conflicts(&rec.doc)
            .into_iter()
            .find(|c| c.field == form.field)
            .ok_or_else(|| unprocessable(lang.t("err.no_conflict").into()))?;
        let raw = form.value.trim();
        let held: Vec<&Value> = conflict.values.iter().map(|v| &v.value).collect();
        let value = match form.choice {
            Some(i) => conflict
                .values
                .get(i)
                .map(|v| v.value.clone())
                .ok_or_else(|| unprocessable(lang.t("err.bad_request").into()))?,
            None if raw.is_empty() => {
                return Err(unprocessable(lang.t("err.value").into()));
            }
            // An enum-valued field takes one of the values the page offers (or its label).
            None => match choices_from(kind, &form.field, &held) {
                Some((group, values)) => parse_choice(group, &values, raw)
                    .map(Value::from)
                    .ok_or_else(|| {
                        unprocessable(lang.not_a_choice(&form.field, raw, group, &values))
                    })?,
                // A new value takes the shape of the values it replaces: a number stays a number.
                None => typed_like(raw, &conflict.values[0].value),
            },
        };
        // The record as it would read afterwards must still be valid (shape, enum values).
        if !form.field.contains(['.', '[']) && kind != Kind::HouseholdPrivate {
            let mut fields = doc::read_root(&rec.doc);
            fields.insert(form.field.clone(), value.clone());
            record::validate(kind, &mut fields, None, &ctx)
                .map_err(|e| unprocessable(lang.validation(&e)))?;
        }
        Ok(Edit::Path {
            path: form.field.clone(),
            value,
        })
    })
    .await;
    let back = format!("/review/{}", layout::encode(&id));
    match result {
        Ok(seq) => {
            finish_review(&state, &staff, &id, seq).await?;
            Ok(Redirect::to(&back).into_response())
        }
        Err(fail) if fail.status == StatusCode::UNPROCESSABLE_ENTITY => {
            Ok(redirect_with_error(&state, &back, &fail.message))
        }
        Err(fail) => Err(fail),
    }
}

/// Once no field holds concurrent values, the parallel edit is reviewed too.
async fn finish_review(state: &AppState, staff: &Staff, id: &str, seq: u64) -> Result<(), Fail> {
    let rec = write::load(state, staff, id).await?;
    if doc::conflicts(&rec.doc).is_empty() && rec.doc.get_heads().len() == 1 {
        state
            .relay
            .queries()
            .clear_review(id, seq)
            .await
            .map_err(|e| Fail::storage(staff.lang, e))?;
    }
    Ok(())
}

fn typed_like(raw: &str, like: &Value) -> Value {
    match like {
        Value::Number(_) => raw
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| raw.into()),
        Value::Bool(_) => match raw {
            "true" | "是" => true.into(),
            "false" | "否" => false.into(),
            _ => raw.into(),
        },
        _ => raw.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DoneForm {
    #[serde(default)]
    csrf: String,
}

/// Marks a parallel edit reviewed: an office change that joins the concurrent branches (so it
/// is audited like any other), then the flag ends up to it.
pub async fn done(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(id): Path<String>,
    Form(form): Form<DoneForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    let seq = write::commit(&state, &staff, &id, |rec| {
        let fields = doc::read_root(&rec.doc);
        Ok(Edit::Fields {
            fields,
            force: Vec::new(),
        })
    })
    .await?;
    finish_review(&state, &staff, &id, seq).await?;
    Ok(Redirect::to("/review").into_response())
}
