//! Work from the office: assign a case, move a case or report through its lifecycle, add a
//! case action or a report follow-up. Each is validated like a device write
//! (`gridsync_core::record::validate`) and committed as a CRDT change (see `write.rs`).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{SecondsFormat, Utc};
use gridsync_core::doc;
use gridsync_core::record::{self, CaseStatus, Kind, ReportStatus};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Fail;
use super::auth::{Staff, local_path, redirect_with_error};
use super::layout;
use super::write::{self, Edit};
use crate::AppState;
use crate::accounts::{Role, User};

#[derive(Debug, Default, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    responsible: String,
    #[serde(default)]
    action_kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    back: String,
}

pub async fn act(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(id): Path<String>,
    Form(form): Form<ActForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    let lang = staff.lang;
    let first = write::load(&state, &staff, &id).await?;
    let ctx = write::context(&state, &staff, &doc::read_root(&first.doc)).await?;
    let username = staff.user.username.clone();
    // Only someone who works in the record's grid can be made responsible for it.
    let eligible: Vec<String> = if form.op == "assign" {
        grid_staff(&state, &staff, &first.grid_id)
            .await?
            .into_iter()
            .map(|u| u.username)
            .collect()
    } else {
        Vec::new()
    };
    let result = write::commit(&state, &staff, &id, |rec| {
        let kind: Kind = rec.kind.ok_or_else(|| Fail::not_found(lang))?;
        let previous = doc::read_root(&rec.doc);
        let mut fields = previous.clone();
        let mut before = previous.clone();
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let bad = || Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.t("err.bad_request"));
        let force: Vec<String> = match (kind, form.op.as_str()) {
            (Kind::Case, "assign") => {
                let who = form.responsible.trim();
                if who.is_empty() {
                    return Err(Fail::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        lang.t("err.value"),
                    ));
                }
                if !eligible.iter().any(|u| u == who) {
                    return Err(Fail::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        lang.t("err.not_grid_staff"),
                    ));
                }
                fields.insert("responsible".into(), who.into());
                vec!["responsible".into()]
            }
            (Kind::Case | Kind::Report, "status") => {
                // The relay holds the report, so it has been received whatever the device
                // last called it: the office moves it on from "received".
                if kind == Kind::Report
                    && matches!(
                        before.get("status").and_then(Value::as_str),
                        None | Some("draft" | "queued")
                    )
                {
                    before.insert("status".into(), "received".into());
                }
                fields.insert("status".into(), form.to.clone().into());
                vec!["status".into()]
            }
            (Kind::Case, "action") => {
                let mut action = json!({
                    "kind": form.action_kind, "at": now, "by": username,
                    "description": form.description.trim(),
                });
                for (key, raw) in [("quantity", &form.quantity), ("value_yuan", &form.value)] {
                    if let Ok(n) = raw.trim().parse::<f64>() {
                        action[key] = json!(n);
                    }
                }
                if !form.recipient.trim().is_empty() {
                    action["recipient"] = json!(form.recipient.trim());
                }
                append(&mut fields, "actions", action);
                Vec::new()
            }
            (Kind::Report, "follow_up") => {
                if form.description.trim().is_empty() {
                    return Err(Fail::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        lang.t("err.value"),
                    ));
                }
                append(
                    &mut fields,
                    "follow_ups",
                    json!({"at": now, "by": username, "text": form.description.trim()}),
                );
                Vec::new()
            }
            _ => return Err(bad()),
        };
        record::validate(kind, &mut fields, Some(&before), &ctx)
            .map_err(|e| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.validation(&e)))?;
        Ok(Edit::Fields { fields, force })
    })
    .await;
    match result {
        Ok(_) => {
            let to = if form.back.is_empty() {
                format!("/records/{}?saved=1", layout::encode(&id))
            } else {
                local_path(&form.back).to_string()
            };
            Ok(Redirect::to(&to).into_response())
        }
        Err(fail) if fail.status == StatusCode::UNPROCESSABLE_ENTITY => Ok(redirect_with_error(
            &state,
            &format!("/records/{}", layout::encode(&id)),
            &fail.message,
        )),
        Err(fail) => Err(fail),
    }
}

fn append(fields: &mut Map<String, Value>, list: &str, entry: Value) {
    match fields
        .entry(list)
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(items) => items.push(entry),
        other => *other = Value::Array(vec![entry]),
    }
}

/// The people who work in a grid and may be made responsible for its records: active grid
/// workers and office staff whose grids include it, by name.
pub async fn grid_staff(state: &AppState, staff: &Staff, grid: &str) -> Result<Vec<User>, Fail> {
    let lang = staff.lang;
    let store = |e| Fail::storage(lang, e);
    let mut out = Vec::new();
    for user in state.accounts.users().await.map_err(store)? {
        if !user.active || !matches!(user.role, Role::GridWorker | Role::Office) {
            continue;
        }
        let (grids, _) = state.accounts.grids_of(&user).await.map_err(store)?;
        if grids.iter().any(|g| g == grid) {
            out.push(user);
        }
    }
    out.sort_by(|a, b| {
        (a.role != Role::GridWorker, &a.display_name)
            .cmp(&(b.role != Role::GridWorker, &b.display_name))
    });
    Ok(out)
}

/// The forms of the office's actions on a case or a report. The person responsible for a case
/// is chosen from the grid's staff (`grid_staff`).
pub fn forms(
    staff: &Staff,
    kind: Kind,
    id: &str,
    fields: &Map<String, Value>,
    grid_staff: &[User],
) -> Markup {
    let lang = staff.lang;
    let action = format!("/records/{}/act", layout::encode(id));
    let status = fields
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("draft");
    let next: Vec<&str> = match kind {
        Kind::Case => serde_json::from_value::<CaseStatus>(status.into())
            .unwrap_or_default()
            .successors()
            .iter()
            .map(|s| s.as_str())
            .collect(),
        _ => {
            let from = serde_json::from_value::<ReportStatus>(status.into()).unwrap_or_default();
            let from = if matches!(from, ReportStatus::Draft | ReportStatus::Queued) {
                ReportStatus::Received
            } else {
                from
            };
            from.successors().iter().map(|s| s.as_str()).collect()
        }
    };
    let group = super::status_group(kind);
    html! {
        @if !next.is_empty() {
            form method="post" action=(action) class="act" id="act-status" {
                (layout::csrf_field(staff))
                input type="hidden" name="op" value="status";
                label { (lang.t("act.move")) " "
                    select name="to" { @for s in &next { option value=(s) { (lang.label(group, s)) } } }
                }
                button type="submit" { (lang.t("act.submit")) }
            }
        }
        @if kind == Kind::Case {
            @let current = fields.get("responsible").and_then(Value::as_str).unwrap_or("");
            form method="post" action=(action) class="act" id="act-assign" {
                (layout::csrf_field(staff))
                input type="hidden" name="op" value="assign";
                label { (lang.t("act.responsible")) " "
                    select name="responsible" id="responsible" required {
                        option value="" { (lang.t("rv.pick")) }
                        @for (role, key) in [(Role::GridWorker, "role.grid_worker"), (Role::Office, "role.office")] {
                            @let people: Vec<&User> = grid_staff.iter().filter(|u| u.role == role).collect();
                            @if !people.is_empty() {
                                optgroup label=(lang.t(key)) {
                                    @for u in people {
                                        option value=(u.username) selected[u.username == current] { (u.display_name) " (" (u.username) ")" }
                                    }
                                }
                            }
                        }
                    }
                }
                button type="submit" { (lang.t("act.assign")) }
            }
            form method="post" action=(action) class="act" id="act-action" {
                (layout::csrf_field(staff))
                input type="hidden" name="op" value="action";
                label { (lang.t("act.add_action")) " "
                    select name="action_kind" {
                        @for k in ["visit", "goods", "benefit_application", "referral", "job_matched", "supermarket_redemption", "note"] {
                            option value=(k) { (lang.label("action", k)) }
                        }
                    }
                }
                label { (lang.t("act.description")) input name="description"; }
                label { (lang.t("act.quantity")) input name="quantity" inputmode="decimal" size="4"; }
                label { (lang.t("act.value")) input name="value" inputmode="decimal" size="6"; }
                label { (lang.t("act.recipient")) input name="recipient" size="8"; }
                button type="submit" { (lang.t("act.submit")) }
            }
        }
        @if kind == Kind::Report {
            form method="post" action=(action) class="act" id="act-follow-up" {
                (layout::csrf_field(staff))
                input type="hidden" name="op" value="follow_up";
                label { (lang.t("act.follow_up")) " " input name="description" required; }
                button type="submit" { (lang.t("act.submit")) }
            }
        }
    }
}
