//! The office dashboard, served at `/` for office staff and admins: overview, lists, record
//! pages with their history, the review queue, office writes, the urgent-reports board and
//! exports. See docs/dashboard.md for the user guide and ARCHITECTURE.md for the decisions.
//!
//! Pages are rendered on the server (maud); one small embedded script adds live updates
//! (Server-Sent Events) and countdowns. Every asset is compiled into the binary. Reads come from
//! the relay's index tables; office writes are Automerge changes that go through
//! [`crate::relay::Relay::accept`] exactly like a device's upload.

mod area;
mod assessment;
mod attach;
mod attachments;
mod auth;
mod board;
mod co;
mod county;
mod export;
mod gallery;
mod grid_move;
pub(crate) mod history;
mod household;
mod i18n;
mod layout;
mod lists;
mod office;
mod overview;
mod record;
mod review;
pub(crate) mod stats;
mod supermarket;
mod tasks;
#[cfg(test)]
pub(crate) mod tests;
mod thumbs;
mod values;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use gridsync_core::record::schema::ChoiceSet;
use gridsync_core::record::{DeadlineRules, Kind};

use crate::AppState;
use crate::config::DashboardConfig;
pub use i18n::Lang;
pub use tasks::TaskRules;

/// The dashboard's share of the server state.
pub struct Dashboard {
    pub rules: DeadlineRules,
    /// The default deadlines of dispatched tasks.
    pub tasks: TaskRules,
    /// The community's local time (China: UTC+8); days, weeks and months start at its midnight.
    pub offset: FixedOffset,
    pub session_hours: i64,
    pub secure_cookies: bool,
    /// Office writes one at a time: each is built on the relay's current copy of a document
    /// with the staff member's actor, and two built at once would claim the same sequence number.
    write_lock: tokio::sync::Mutex<()>,
    /// Thumbnails being made at once (each decodes a whole photo).
    thumbs: tokio::sync::Semaphore,
    /// A moment the local day is counted from instead of the clock's ([`Dashboard::set_now`]).
    frozen_now: std::sync::RwLock<Option<DateTime<Utc>>>,
}

impl Dashboard {
    pub fn new(config: &DashboardConfig) -> Dashboard {
        Dashboard {
            rules: config.report_deadlines,
            tasks: config.task_deadlines,
            offset: FixedOffset::east_opt(config.utc_offset_minutes * 60)
                .unwrap_or_else(|| FixedOffset::east_opt(8 * 3600).expect("UTC+8 is valid")),
            session_hours: config.session_hours.max(1),
            secure_cookies: config.secure_cookies,
            write_lock: tokio::sync::Mutex::new(()),
            thumbs: tokio::sync::Semaphore::new(thumbs::AT_ONCE),
            frozen_now: std::sync::RwLock::new(None),
        }
    }

    /// Local midnight of a day, as a UTC instant string for range filters.
    pub fn day_start(&self, day: NaiveDate) -> String {
        let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        let t = self
            .offset
            .from_local_datetime(&local)
            .single()
            .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc));
        crate::storage::utc_string(t)
    }

    pub fn today(&self) -> NaiveDate {
        let frozen = *self
            .frozen_now
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        frozen
            .unwrap_or_else(Utc::now)
            .with_timezone(&self.offset)
            .date_naive()
    }

    /// Counts the local day (today, this week, this month) from `at` instead of the clock;
    /// `None` goes back to the clock. For tests that compare the dashboard with a device at a
    /// chosen moment, such as just after local midnight.
    pub fn set_now(&self, at: Option<DateTime<Utc>>) {
        *self
            .frozen_now
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    /// Monday of the current week and the first day of the current month, local time.
    pub fn week_start(&self) -> NaiveDate {
        let today = self.today();
        today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday()))
    }

    pub fn month_start(&self) -> NaiveDate {
        let today = self.today();
        NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today)
    }

    /// An instant in local time for people, e.g. `2026-11-02 09:30`.
    pub fn show_time(&self, s: &str) -> String {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t
                .with_timezone(&self.offset)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            Err(_) => s.to_string(),
        }
    }

    /// The local day of an instant, e.g. `2026-11-02`.
    pub fn show_day(&self, s: &str) -> String {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&self.offset).format("%Y-%m-%d").to_string(),
            Err(_) => s.to_string(),
        }
    }

    pub fn show_epoch(&self, secs: i64) -> String {
        DateTime::from_timestamp(secs, 0)
            .map(|t| {
                t.with_timezone(&self.offset)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    }
}

/// The routes, merged into the server's router by `crate::router`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/overview/live", get(overview::live))
        .route("/events", get(overview::events))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/lang", get(auth::switch_lang))
        .route("/records", get(lists::page))
        .route("/records/export.csv", get(export::list_csv))
        .route("/records/export.xlsx", get(export::list_xlsx))
        .route("/records/{id}", get(record::page))
        .route("/records/{id}/act", post(office::act))
        .route("/records/{id}/move", post(grid_move::submit))
        .route("/attachments/{hash}", get(attachments::full))
        .route("/attachments/{hash}/thumb", get(attachments::thumb))
        .route("/review", get(review::queue))
        .route("/review/{id}", get(review::page))
        .route("/review/{id}/resolve", post(review::resolve))
        .route("/review/{id}/done", post(review::done))
        .route("/review/{id}/rewrite", post(review::rewrite))
        .route("/reports", get(board::page))
        .route("/tasks", get(tasks::board).post(tasks::dispatch))
        .route("/tasks/new", get(tasks::new_page))
        .route("/tasks/{id}/act", post(tasks::act))
        .route("/units", get(co::units))
        .route("/volunteers", get(co::volunteers))
        .route("/activities", get(co::activities))
        .route("/supermarket", get(supermarket::page))
        .route("/assessment", get(assessment::page))
        .route("/assessment/export.csv", get(assessment::export_csv))
        .route("/assessment/export.xlsx", get(assessment::export_xlsx))
        .route("/stats", get(stats::page))
        .route("/stats/export.csv", get(stats::export_csv))
        .route("/stats/export.xlsx", get(stats::export_xlsx))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        // Browsers ask for /favicon.ico by themselves; pages name the SVG (see `layout::head`).
        .route("/favicon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .layer(axum::middleware::map_response(security_headers))
}

const CSS: &str = include_str!("dashboard/assets/app.css");
const JS: &str = include_str!("dashboard/assets/app.js");
const ICON: &str = include_str!("dashboard/assets/favicon.svg");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The office's upload of a file to a record, outside the relay's small body limit: it takes
/// a body of the largest attachment and its form, and as long as a slow office link needs.
pub fn upload_router(limits: &crate::config::Limits) -> Router<Arc<AppState>> {
    let most = usize::try_from(limits.max_attachment_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(UPLOAD_FORM_BYTES);
    Router::new()
        .route("/records/{id}/attach", post(attach::attach))
        .layer(axum::extract::DefaultBodyLimit::max(most))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(most))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            UPLOAD_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(security_headers))
}

/// What an upload's form may carry beside the file (its token, caption, part headers).
const UPLOAD_FORM_BYTES: usize = 64 * 1024;
/// An office upload must be done in this time (20 MiB over a link of 50 KB/s).
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Pages load nothing from elsewhere and run no inline script; they cannot be framed or cached.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in set {
        h.insert(name, HeaderValue::from_static(value));
    }
    // Pages show residents' data and carry CSRF tokens: no browser or proxy may keep them.
    // Only the embedded assets say otherwise (`asset`).
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A request that cannot be served, shown to the user in their language.
#[derive(Debug)]
pub struct Fail {
    pub status: StatusCode,
    pub message: String,
}

impl Fail {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
        }
    }

    pub fn storage(lang: Lang, e: crate::storage::StorageError) -> Fail {
        tracing::error!("dashboard: {e}");
        // Damaged stored data (a record nested too deep, stored before the limit) does not get
        // better by trying again.
        let key = match e {
            crate::storage::StorageError::Corrupt(_) => "err.damaged",
            _ => "err.storage",
        };
        Fail::new(StatusCode::INTERNAL_SERVER_ERROR, lang.t(key))
    }

    pub fn not_found(lang: Lang) -> Fail {
        Fail::new(StatusCode::NOT_FOUND, lang.t("err.not_found"))
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let body = maud::html! {
            (maud::DOCTYPE)
            html { head { meta charset="utf-8"; link rel="stylesheet" href="/assets/app.css"; (layout::icon_link()) }
                body { main { p class="flash error" { (self.message) } p { a href="/" { "← 返回 Back" } } } } }
        };
        (self.status, body).into_response()
    }
}

/// The label group of a kind's status values and of its subtype values (from its spec).
pub fn status_group(kind: Kind) -> &'static str {
    spec_choices(kind, kind.spec().status).map_or("status", |set| set.group)
}

pub fn subtype_group(kind: Kind) -> &'static str {
    spec_choices(kind, kind.spec().subtype).map_or("type", |set| set.group)
}

fn spec_choices(kind: Kind, field: Option<&str>) -> Option<&'static ChoiceSet> {
    kind.spec().choices(field?)
}

/// The status and subtype values a kind's filters offer. A report's "draft" and "queued" are
/// the phone's words for one not sent yet; every report the relay holds has been received, so
/// the office sees them as "received" (see [`shown_status`]).
pub fn statuses_of(kind: Kind) -> Vec<&'static str> {
    spec_choices(kind, kind.spec().status)
        .map(|set| {
            set.codes()
                .filter(|s| shown_status(kind, Some(s)) == Some(s))
                .collect()
        })
        .unwrap_or_default()
}

/// The stored statuses a status shown to the office stands for (a filter on "received" reports
/// finds those the phone still called draft or queued).
pub fn stored_statuses(kind: Kind, shown: &str) -> Vec<String> {
    match (kind, shown) {
        (Kind::Report, "received") => ["draft", "queued", "received"].map(String::from).to_vec(),
        _ => vec![shown.to_string()],
    }
}

/// A record's status as the office sees it: a report the relay holds has been received,
/// whatever the sending phone last called it.
pub fn shown_status(kind: Kind, stored: Option<&str>) -> Option<&str> {
    match (kind, stored) {
        (Kind::Report, None | Some("draft" | "queued")) => Some("received"),
        (_, s) => s,
    }
}

/// The label of a record's status as the office sees it (empty when it has none).
pub fn status_label(lang: Lang, kind: Kind, stored: Option<&str>) -> String {
    shown_status(kind, stored)
        .map(|s| lang.label(status_group(kind), s))
        .unwrap_or_default()
}

/// The values an enum-valued top-level field of a kind may take, with the label group they
/// are shown in (from the kind's spec; a status as the office sees it, see [`statuses_of`]).
/// `None` for free-text, number, date and nested fields.
pub fn choices(kind: Kind, field: &str) -> Option<(&'static str, Vec<&'static str>)> {
    let set = kind.spec().choices(field)?;
    let values = if Some(field) == kind.spec().status {
        statuses_of(kind)
    } else {
        set.codes().collect()
    };
    Some((set.group, values))
}

/// The values a field holding concurrent values may be given anew. A status may only become
/// one the lifecycle allows from one of the values it holds (`can_move_to`, so a case being
/// assessed is never sent back to draft); other fields take any of their choices.
pub fn choices_from(
    kind: Kind,
    field: &str,
    held: &[&serde_json::Value],
) -> Option<(&'static str, Vec<&'static str>)> {
    let (group, values) = choices(kind, field)?;
    if field != "status" {
        return Some((group, values));
    }
    let reachable: Vec<&'static str> = values
        .iter()
        .copied()
        .filter(|to| {
            held.iter()
                .filter_map(|v| v.as_str())
                .any(|from| match kind {
                    Kind::Case => {
                        let (Some(from), Some(to)) = (case_status(from), case_status(to)) else {
                            return false;
                        };
                        from.can_move_to(to)
                    }
                    Kind::Report => {
                        let shown = shown_status(kind, Some(from)).unwrap_or(from);
                        let (Some(from), Some(to)) = (report_status(shown), report_status(to))
                        else {
                            return false;
                        };
                        from.can_move_to(to)
                    }
                    _ => true,
                })
        })
        .collect();
    // Values the lifecycle does not know (written by a newer phone) leave the choice open.
    Some((
        group,
        if reachable.is_empty() {
            values
        } else {
            reachable
        },
    ))
}

fn case_status(s: &str) -> Option<gridsync_core::record::CaseStatus> {
    serde_json::from_value(s.into()).ok()
}

fn report_status(s: &str) -> Option<gridsync_core::record::ReportStatus> {
    serde_json::from_value(s.into()).ok()
}

/// The stored value a person chose for an enum-valued field: the value itself or its label in
/// either language (what the page shows).
pub fn parse_choice(group: &str, values: &[&'static str], raw: &str) -> Option<&'static str> {
    let raw = raw.trim();
    values.iter().copied().find(|v| {
        *v == raw
            || Lang::Zh.label(group, v) == raw
            || Lang::En.label(group, v).eq_ignore_ascii_case(raw)
    })
}

/// Username → display name of every account, to show people by name.
pub async fn display_names(
    state: &AppState,
    lang: Lang,
) -> Result<std::collections::HashMap<String, String>, Fail> {
    Ok(state
        .accounts
        .users()
        .await
        .map_err(|e| Fail::storage(lang, e))?
        .into_iter()
        .map(|u| (u.username, u.display_name))
        .collect())
}

/// A person by display name where the account is known, else as stored.
pub fn person(names: &std::collections::HashMap<String, String>, username: &str) -> String {
    names
        .get(username)
        .filter(|n| !n.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| username.to_string())
}

/// The values of a kind's subtype (its type or category), from its spec.
pub fn subtypes_of(kind: Kind) -> Vec<&'static str> {
    spec_choices(kind, kind.spec().subtype)
        .map(|set| set.codes().collect())
        .unwrap_or_default()
}

/// The kinds of patrol incident, in the order the overview and the monthly report show them.
pub fn incident_kinds() -> impl Iterator<Item = &'static str> {
    gridsync_core::record::IncidentKind::CHOICES.codes()
}
