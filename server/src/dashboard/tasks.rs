//! 派单任务: the office dispatches follow-up work — on its own, or from an urgent report, a
//! patrol incident, a visit's issue or a meeting's decision — to a grid worker or a co-building
//! unit, with a deadline from the office's rules ([`TaskRules`]); the board lists open tasks by
//! deadline, overdue ones in red, and the office verifies a handled task or sends it back.
//! Every write is an office change through `write.rs`, so the assignee's phone receives it at
//! its next sync like any other change.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use gridsync_core::doc;
use gridsync_core::record::{self, Kind, TaskSource, TaskStatus};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::auth::{Staff, redirect_with_error, take_flash};
use super::layout;
use super::write::{self, Edit};
use super::{Dashboard, Fail, Lang, display_names, person, status_label};
use crate::AppState;
use crate::accounts::Role;
use crate::storage::{KindFilter, ListedRecord, RecordQuery};

/// Hours from dispatch to a task's default deadline, by where the task came from. The office
/// may set another deadline on each task; these are what the dispatch form proposes. An urgent
/// report's follow-up and a patrol incident within a day (the 24-hour rule of grid
/// management), a visit's issue and work the office gives on its own within three days, a
/// meeting's decision within a week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskRules {
    pub report_hours: i64,
    pub incident_hours: i64,
    pub visit_issue_hours: i64,
    pub decision_hours: i64,
    pub office_hours: i64,
}

impl Default for TaskRules {
    fn default() -> Self {
        TaskRules {
            report_hours: 24,
            incident_hours: 24,
            visit_issue_hours: 72,
            decision_hours: 168,
            office_hours: 72,
        }
    }
}

impl TaskRules {
    pub fn hours(&self, source: TaskSource) -> i64 {
        match source {
            TaskSource::Report => self.report_hours,
            TaskSource::Incident => self.incident_hours,
            TaskSource::VisitIssue => self.visit_issue_hours,
            TaskSource::Decision => self.decision_hours,
            TaskSource::Office => self.office_hours,
        }
    }

    /// `24,24,72,168,72`: hours for reports, incidents, visit issues, decisions, the office.
    pub fn parse(s: &str) -> Result<TaskRules, String> {
        let hours: Vec<i64> = s
            .split(',')
            .map(|p| p.trim().parse::<i64>().map_err(|e| format!("{p}: {e}")))
            .collect::<Result<_, _>>()?;
        match hours.as_slice() {
            [r, i, v, d, o] if hours.iter().all(|h| *h > 0) => Ok(TaskRules {
                report_hours: *r,
                incident_hours: *i,
                visit_issue_hours: *v,
                decision_hours: *d,
                office_hours: *o,
            }),
            _ => Err(
                "give five positive hour counts: report,incident,visit_issue,decision,\
                      office (e.g. 24,24,72,168,72)"
                    .into(),
            ),
        }
    }
}

/// A task's timing against its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTiming {
    pub deadline: Option<DateTime<Utc>>,
    pub handled_at: Option<DateTime<Utc>>,
    /// Handled, verified or closed.
    pub done: bool,
    /// Not done, and its deadline has passed.
    pub overdue: bool,
    /// Handled by its deadline (`None` while not handled).
    pub on_time: Option<bool>,
}

fn instant(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub fn timing_at(r: &ListedRecord, now: DateTime<Utc>) -> TaskTiming {
    let deadline = instant(r.row.due_at.as_deref());
    let handled_at = instant(r.facts.handled_at.as_deref());
    let done = matches!(
        r.row.status.as_deref(),
        Some("handled" | "verified" | "closed")
    );
    TaskTiming {
        deadline,
        handled_at,
        done,
        overdue: !done && deadline.is_some_and(|d| now > d),
        on_time: deadline.zip(handled_at).map(|(d, h)| h <= d),
    }
}

/// Who a task is dispatched to, by name: a worker's display name or a unit's name.
fn assignee(
    r: &ListedRecord,
    people: &HashMap<String, String>,
    units: &HashMap<String, String>,
) -> String {
    match (&r.facts.unit_id, &r.row.assigned_to) {
        (Some(unit), _) => units.get(unit).cloned().unwrap_or_else(|| unit.clone()),
        (None, Some(w)) => person(people, w),
        (None, None) => String::new(),
    }
}

/// Unit id → name, of the units in the staff member's grids (from the index).
pub async fn unit_names(state: &AppState, staff: &Staff) -> Result<HashMap<String, String>, Fail> {
    let q = RecordQuery {
        grids: staff.grids.clone(),
        kinds: KindFilter::one(Kind::Unit),
        limit: Some(10_000),
        ..RecordQuery::default()
    };
    let found = state
        .relay
        .queries()
        .list_records(&q)
        .await
        .map_err(|e| Fail::storage(staff.lang, e))?;
    Ok(found
        .rows
        .into_iter()
        .map(|r| (r.row.id, r.row.title))
        .collect())
}

#[derive(Debug, Default, Deserialize)]
pub struct BoardParams {
    #[serde(default)]
    grid: String,
    #[serde(default)]
    fragment: String,
    #[serde(default)]
    dispatched: String,
}

pub async fn board(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    staff: Staff,
    Query(p): Query<BoardParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let body = board_fragment(&state, &staff, &p.grid).await?;
    if !p.fragment.is_empty() {
        return Ok(body.into_response());
    }
    let failed = take_flash(&headers);
    let src = format!(
        "/tasks?{}",
        layout::query_string(&[("grid", &p.grid), ("fragment", "1")])
    );
    let rules = state.dashboard.tasks;
    let page = html! {
        @if let Some((m, _)) = &failed { (layout::flash(Some(m), true)) }
        @else if !p.dispatched.is_empty() { (layout::flash(Some(lang.t("tk.dispatched")), false)) }
        form method="get" action="/tasks" class="filters" {
            label { (lang.t("grid")) (layout::select("grid", lang.t("all_grids"), &staff.grid_options(), &p.grid)) }
            button type="submit" { (lang.t("filter")) }
            span class="spacer" {}
            a class="button primary" id="new-task" href="/tasks/new" { (lang.t("tk.new")) }
        }
        p class="muted" {
            (lang.t("tk.rules")) (lang.colon())
            @for (i, s) in TaskSource::ALL.iter().enumerate() {
                @if i > 0 { " · " }
                (lang.label("task_source", s.as_str())) " " (rules.hours(*s)) " " (lang.t("tk.hours"))
            }
        }
        div id="live" data-live-src=(src) { (body) }
    };
    let mut response = layout::page(&staff, "tasks", lang.t("nav.tasks"), page).into_response();
    if let Some((_, (name, value))) = failed
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

async fn board_fragment(state: &AppState, staff: &Staff, grid: &str) -> Result<Markup, Fail> {
    let lang = staff.lang;
    let grids: Vec<String> = staff
        .grids
        .iter()
        .filter(|g| grid.is_empty() || *g == grid)
        .cloned()
        .collect();
    let open: Vec<String> = TaskStatus::ALL
        .iter()
        .filter(|s| s.is_active())
        .map(|s| s.as_str().to_string())
        .collect();
    let q = RecordQuery {
        grids,
        kinds: KindFilter::one(Kind::Task),
        statuses: open,
        limit: Some(2000),
        ..RecordQuery::default()
    };
    let found = state
        .relay
        .queries()
        .list_records(&q)
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let people = display_names(state, lang).await?;
    let units = unit_names(state, staff).await?;
    let now = Utc::now();
    let mut timed: Vec<(TaskTiming, &ListedRecord)> =
        found.rows.iter().map(|r| (timing_at(r, now), r)).collect();
    // Work still to do first, by deadline; then what waits for the office's check.
    timed.sort_by_key(|(t, r)| (t.done, t.deadline, r.row.id.clone()));
    let overdue = timed.iter().filter(|(t, _)| t.overdue).count();
    let to_check = timed
        .iter()
        .filter(|(_, r)| r.row.status.as_deref() == Some("handled"))
        .count();
    let dash = &state.dashboard;
    Ok(html! {
        p class="meta" id="task-counts" {
            span { (lang.t("tk.open")) (lang.colon()) strong { (timed.len()) } }
            span class=[(overdue > 0).then_some("bad")] { (lang.t("tk.overdue")) (lang.colon()) strong id="overdue-count" { (overdue) } }
            span class=[(to_check > 0).then_some("warn")] { (lang.t("tk.to_check")) (lang.colon()) strong { (to_check) } }
        }
        @if timed.is_empty() { p class="muted" { (lang.t("none")) } } @else {
        table class="board" id="tasks" {
            thead { tr {
                th { (lang.t("grid")) } th { (lang.t("title")) } th { (lang.field(Kind::Task, "source")) }
                th { (lang.t("tk.assignee")) } th { (lang.field(Kind::Task, "deadline")) }
                th { (lang.t("tk.left")) } th { (lang.t("status")) } th {}
            } }
            tbody {
                @for (t, r) in &timed {
                    tr class=[t.overdue.then_some("late")] data-id=(r.row.id) {
                        td class="grid" { (staff.grid_name(&r.row.grid_id)) }
                        td class="title" { a href={ "/records/" (r.row.id) } { (r.row.title) } }
                        td class="type" { (lang.label("task_source", r.facts.subtype.as_deref().unwrap_or(""))) }
                        td class="worker" { (assignee(r, &people, &units)) }
                        td class="time" { (t.deadline.map(|d| dash.show_time(&d.to_rfc3339())).unwrap_or_default()) }
                        td class="left" { (left(lang, t, now)) }
                        td class="status" { (status_label(lang, Kind::Task, r.row.status.as_deref())) }
                        td class="actions" { (buttons(staff, &r.row.id, r.row.status.as_deref(), "/tasks")) }
                    }
                }
            }
        }
        }
    })
}

/// What is left of a task's time: hours to go, overdue in red, or whether it was handled in
/// time.
fn left(lang: Lang, t: &TaskTiming, now: DateTime<Utc>) -> Markup {
    let Some(deadline) = t.deadline else {
        return html! { "—" };
    };
    if t.done {
        return match t.on_time {
            Some(false) => html! { span class="bad" { (lang.t("tk.handled_late")) } },
            _ => html! { span class="ok" { (lang.t("tk.handled_on_time")) } },
        };
    }
    let hours = (deadline - now).num_minutes() as f64 / 60.0;
    if t.overdue {
        html! { span class="bad overdue" { (lang.t("tk.overdue_by")) " " (one_decimal(-hours)) " " (lang.t("tk.hours")) } }
    } else {
        html! { span { (one_decimal(hours)) " " (lang.t("tk.hours")) } }
    }
}

/// A number of hours as people read it: `2`, `2.5`.
pub fn one_decimal(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// The office's buttons for a task in this status: verify or send back a handled task, close
/// or send back a verified one.
pub fn buttons(staff: &Staff, id: &str, status: Option<&str>, back: &str) -> Markup {
    let lang = staff.lang;
    let action = format!("/tasks/{}/act", layout::encode(id));
    let ops: &[(&str, &str)] = match status {
        Some("handled") => &[("verified", "tk.verify"), ("sent_back", "tk.send_back")],
        Some("verified") => &[("closed", "tk.close"), ("sent_back", "tk.send_back")],
        _ => &[],
    };
    html! {
        div class="buttons" {
            @for (to, label) in ops {
                form method="post" action=(action) class={ "inline op-" (to) } {
                    (layout::csrf_field(staff))
                    input type="hidden" name="to" value=(to);
                    input type="hidden" name="back" value=(back);
                    @if *to == "sent_back" {
                        input name="note" size="8" placeholder=(lang.t("tk.reason")) aria-label=(lang.t("tk.reason"));
                    }
                    button type="submit" { (lang.t(label)) }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    back: String,
}

/// Verifies, closes or sends back a task: its status and an entry in its updates, by the staff
/// member, in one office change.
pub async fn act(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(id): Path<String>,
    Form(form): Form<ActForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    let lang = staff.lang;
    let username = staff.user.username.clone();
    let back = if form.back.is_empty() {
        format!("/records/{}", layout::encode(&id))
    } else {
        super::auth::local_path(&form.back).to_string()
    };
    // Validation knows the household the task names, as the relay does.
    let first = write::load(&state, &staff, &id).await?;
    let ctx = write::context(&state, &staff, &doc::read_root(&first.doc)).await?;
    let result = write::commit(&state, &staff, &id, |rec| {
        if rec.kind != Some(Kind::Task) {
            return Err(Fail::not_found(lang));
        }
        if !matches!(form.to.as_str(), "verified" | "sent_back" | "closed") {
            return Err(Fail::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                lang.t("err.bad_request"),
            ));
        }
        let before = doc::read_root(&rec.doc);
        let mut fields = before.clone();
        fields.insert("status".into(), form.to.clone().into());
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let update = json!({
            "at": now, "by": username, "status": form.to, "note": form.note.trim(),
        });
        match fields
            .entry("updates")
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items.push(update),
            other => *other = Value::Array(vec![update]),
        }
        record::validate(Kind::Task, &mut fields, Some(&before), &ctx)
            .map_err(|e| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.validation(&e)))?;
        Ok(Edit::Fields {
            fields,
            force: vec!["status".into()],
        })
    })
    .await;
    match result {
        Ok(_) => Ok(Redirect::to(&back).into_response()),
        Err(fail) if fail.status == StatusCode::UNPROCESSABLE_ENTITY => {
            Ok(redirect_with_error(&state, &back, &fail.message))
        }
        Err(fail) => Err(fail),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NewParams {
    /// The record the task comes from.
    #[serde(default)]
    from: String,
    /// Which of its incidents, issues or decisions (by position).
    #[serde(default)]
    item: String,
}

/// What the dispatch form starts with.
#[derive(Debug, Default)]
struct Draft {
    title: String,
    source: Option<TaskSource>,
    source_id: String,
    household_id: String,
    grid: String,
    description: String,
}

/// A draft from the record the task comes from: its grid, its household, its words.
fn draft_from(
    lang: Lang,
    kind: Kind,
    grid: &str,
    id: &str,
    fields: &Map<String, Value>,
    item: Option<usize>,
) -> Draft {
    let s = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let entry = |list: &str| -> Option<Map<String, Value>> {
        let items = fields.get(list)?.as_array()?;
        let i = item.unwrap_or(items.len().checked_sub(1)?);
        items.get(i)?.as_object().cloned()
    };
    let cut = |t: String| t.chars().take(40).collect::<String>();
    let mut d = Draft {
        source_id: id.to_string(),
        grid: grid.to_string(),
        household_id: s(fields, "household_id"),
        ..Draft::default()
    };
    match kind {
        Kind::Report => {
            d.source = Some(TaskSource::Report);
            let category = lang.label("report_type", &s(fields, "category"));
            d.title = cut(format!(
                "{category}{}{}",
                lang.colon(),
                s(fields, "description")
            ));
            d.description = [s(fields, "place"), s(fields, "description")]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
        }
        Kind::Patrol => {
            d.source = Some(TaskSource::Incident);
            if let Some(i) = entry("incidents") {
                let k = lang.label("incident", &s(&i, "kind"));
                d.title = cut(format!("{k}{}{}", lang.colon(), s(&i, "description")));
                d.description = [s(&i, "place"), s(&i, "description")]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
            }
        }
        Kind::Visit => {
            d.source = Some(TaskSource::VisitIssue);
            if let Some(i) = entry("issues") {
                d.title = cut(format!(
                    "{}{}{}",
                    s(&i, "category"),
                    lang.colon(),
                    s(&i, "description")
                ));
                d.description = s(&i, "description");
            }
        }
        Kind::Activity => {
            d.source = Some(TaskSource::Decision);
            if let Some(i) = entry("decisions") {
                d.title = cut(s(&i, "text"));
                d.description = format!("{}{}{}", s(fields, "title"), lang.colon(), s(&i, "text"));
            }
        }
        _ => {
            d.source = Some(TaskSource::Office);
            d.source_id.clear();
        }
    }
    d
}

/// The dispatch form, empty or filled in from the record the task comes from.
pub async fn new_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    staff: Staff,
    Query(p): Query<NewParams>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let dash = &state.dashboard;
    let draft = if p.from.is_empty() {
        Draft {
            grid: staff.grids.first().cloned().unwrap_or_default(),
            ..Draft::default()
        }
    } else {
        // The one record the task comes from, as a record page loads it.
        let rec = write::load(&state, &staff, &p.from).await?;
        let kind: Kind = rec.kind.ok_or_else(|| Fail::not_found(lang))?;
        let fields = doc::read_root(&rec.doc);
        draft_from(
            lang,
            kind,
            &rec.grid_id,
            &p.from,
            &fields,
            p.item.parse().ok(),
        )
    };
    let source = draft.source.unwrap_or(TaskSource::Office);
    let deadline = Utc::now() + Duration::hours(dash.tasks.hours(source));
    let deadline = deadline
        .with_timezone(&dash.offset)
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let users = state
        .accounts
        .users()
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let mut workers: Vec<(String, String)> = users
        .into_iter()
        .filter(|u| u.active && u.role == Role::GridWorker)
        .map(|u| {
            let label = format!("{} ({})", u.display_name, u.username);
            (u.username, label)
        })
        .collect();
    workers.sort();
    let mut units: Vec<(String, String)> = unit_names(&state, &staff).await?.into_iter().collect();
    units.sort_by(|a, b| a.1.cmp(&b.1));
    let failed = take_flash(&headers);
    let sources: Vec<(String, String)> = TaskSource::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_string(),
                lang.label("task_source", s.as_str()),
            )
        })
        .collect();
    let body = html! {
        @if let Some((m, _)) = &failed { (layout::flash(Some(m), true)) }
        form method="post" action="/tasks" class="dispatch" id="dispatch" {
            (layout::csrf_field(&staff))
            input type="hidden" name="source_id" value=(draft.source_id);
            input type="hidden" name="household_id" value=(draft.household_id);
            @if !draft.source_id.is_empty() {
                p class="meta" {
                    span { (lang.field(Kind::Task, "source")) (lang.colon()) (lang.label("task_source", source.as_str())) }
                    span { a href={ "/records/" (draft.source_id) } { (lang.field(Kind::Task, "source_id")) } }
                }
                input type="hidden" name="source" value=(source.as_str());
            } @else {
                label { (lang.field(Kind::Task, "source"))
                    select name="source" { @for (v, l) in &sources { option value=(v) selected[v == source.as_str()] { (l) } } }
                }
            }
            label { (lang.field(Kind::Task, "title")) input name="title" id="task-title" value=(draft.title) required maxlength="100"; }
            label { (lang.t("grid"))
                select name="grid" { @for (v, l) in staff.grid_options() { option value=(v) selected[v == draft.grid] { (l) } } }
            }
            label { (lang.field(Kind::Task, "assignee"))
                select name="assignee" id="task-assignee" { option value="" { "—" } @for (v, l) in &workers { option value=(v) { (l) } } }
            }
            label { (lang.field(Kind::Task, "assignee_unit_id"))
                select name="assignee_unit_id" { option value="" { "—" } @for (v, l) in &units { option value=(v) { (l) } } }
            }
            label { (lang.field(Kind::Task, "deadline")) input type="datetime-local" name="deadline" id="task-deadline" value=(deadline) required; }
            label class="wide" { (lang.field(Kind::Task, "description")) textarea name="description" rows="3" { (draft.description) } }
            p class="muted" { (lang.t("tk.deadline_hint")) }
            button type="submit" id="dispatch-task" { (lang.t("tk.dispatch")) }
        }
    };
    let title = format!("{} · {}", lang.t("nav.tasks"), lang.t("tk.new"));
    let mut response = layout::page(&staff, "tasks", &title, body).into_response();
    if let Some((_, (name, value))) = failed
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct NewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    source_id: String,
    #[serde(default)]
    household_id: String,
    #[serde(default)]
    grid: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    assignee_unit_id: String,
    #[serde(default)]
    deadline: String,
    #[serde(default)]
    description: String,
}

/// A `datetime-local` value (`2026-11-22T18:00`), in the community's time, as an instant.
pub fn local_instant(dash: &Dashboard, s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    dash.offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Dispatches a task: a new record made by the office, checked like a device's.
pub async fn dispatch(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Form(form): Form<NewForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    let again = if form.source_id.is_empty() {
        "/tasks/new".to_string()
    } else {
        format!("/tasks/new?from={}", layout::encode(&form.source_id))
    };
    match dispatch_task(&state, &staff, &form).await {
        Ok(id) => {
            Ok(Redirect::to(&format!("/tasks?dispatched={}", layout::encode(&id))).into_response())
        }
        Err(fail) if fail.status == StatusCode::UNPROCESSABLE_ENTITY => {
            Ok(redirect_with_error(&state, &again, &fail.message))
        }
        Err(fail) => Err(fail),
    }
}

async fn dispatch_task(state: &AppState, staff: &Staff, form: &NewForm) -> Result<String, Fail> {
    let lang = staff.lang;
    let refuse = |key: &'static str| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.t(key));
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let deadline =
        local_instant(&state.dashboard, &form.deadline).ok_or_else(|| refuse("tk.err_deadline"))?;
    let (assignee, unit) = (some(&form.assignee), some(&form.assignee_unit_id));
    if assignee.is_none() && unit.is_none() {
        return Err(refuse("tk.err_assignee"));
    }
    // The records a task names must be ones this office holds, in its grids.
    let named: Vec<String> = [&form.source_id, &form.household_id, &form.assignee_unit_id]
        .into_iter()
        .filter_map(|s| some(s))
        .collect();
    if !named.is_empty() {
        let q = RecordQuery {
            grids: staff.grids.clone(),
            ids: named.clone(),
            ..RecordQuery::default()
        };
        let found = state
            .relay
            .queries()
            .list_records(&q)
            .await
            .map_err(|e| Fail::storage(lang, e))?;
        if named
            .iter()
            .any(|id| !found.rows.iter().any(|r| r.row.id == *id))
        {
            return Err(Fail::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                lang.t("err.not_found"),
            ));
        }
    }
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut fields = Map::new();
    fields.insert("title".into(), form.title.trim().into());
    fields.insert("source".into(), form.source.trim().into());
    for (key, value) in [
        ("source_id", some(&form.source_id)),
        ("household_id", some(&form.household_id)),
        ("assignee", assignee),
        ("assignee_unit_id", unit),
    ] {
        if let Some(v) = value {
            fields.insert(key.into(), v.into());
        }
    }
    fields.insert("description".into(), form.description.trim().into());
    fields.insert(
        "deadline".into(),
        deadline.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
    );
    fields.insert("status".into(), "dispatched".into());
    fields.insert(
        "updates".into(),
        json!([{"at": now, "by": staff.user.username, "status": "dispatched", "note": ""}]),
    );
    let ctx = write::context(state, staff, &fields).await?;
    record::validate(Kind::Task, &mut fields, None, &ctx)
        .map_err(|e| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.validation(&e)))?;
    write::create(state, staff, Kind::Task, form.grid.trim(), fields).await
}

/// On a record a task may come from (an urgent report, a patrol, a visit, an activity): the
/// way to dispatch one, choosing which incident, issue or decision when it holds several.
pub fn dispatch_form(staff: &Staff, kind: Kind, id: &str, fields: &Map<String, Value>) -> Markup {
    let lang = staff.lang;
    let list = match kind {
        Kind::Patrol => Some("incidents"),
        Kind::Visit => Some("issues"),
        Kind::Activity => Some("decisions"),
        _ => None,
    };
    let items: Vec<String> = list
        .and_then(|l| fields.get(l))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let head = match kind {
                        Kind::Patrol => lang.label("incident", &s("kind")),
                        Kind::Visit => s("category"),
                        _ => String::new(),
                    };
                    let text = if kind == Kind::Activity {
                        s("text")
                    } else {
                        s("description")
                    };
                    let line: String = format!("{head} {text}").trim().chars().take(40).collect();
                    line
                })
                .collect()
        })
        .unwrap_or_default();
    if list.is_some() && items.is_empty() {
        return html! {};
    }
    html! {
        form method="get" action="/tasks/new" class="act" id="act-dispatch" {
            input type="hidden" name="from" value=(id);
            @if !items.is_empty() {
                label { (lang.field(kind, list.unwrap_or_default())) " "
                    select name="item" { @for (i, line) in items.iter().enumerate() {
                        option value=(i) selected[i + 1 == items.len()] { (line) }
                    } }
                }
            }
            button type="submit" { (lang.t("tk.dispatch_from")) }
        }
    }
}
