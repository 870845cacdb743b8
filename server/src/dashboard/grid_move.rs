//! Grid adjustment (网格调整) from a household's page: the office moves the household, with its
//! private part and every record that names it, to another grid of its community
//! (`relay::move_as`, docs/protocol.md §15).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Fail;
use super::auth::{Staff, redirect_with_error};
use super::layout;
use crate::AppState;
use crate::relay::{self, MoveError};

#[derive(Debug, Default, Deserialize)]
pub struct MoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
}

/// The form, offering the other grids of the household's community that the staff member works
/// in; nothing when there are none.
pub async fn form(state: &AppState, staff: &Staff, id: &str, grid: &str) -> Result<Markup, Fail> {
    let lang = staff.lang;
    let areas = state
        .accounts
        .areas()
        .await
        .map_err(|e| Fail::storage(lang, e))?;
    let community = |g: &str| {
        areas
            .iter()
            .find(|a| a.id == g)
            .and_then(|a| a.parent_id.clone())
    };
    let here = community(grid);
    let grids: Vec<&String> = staff
        .grids
        .iter()
        .filter(|g| *g != grid && here.is_some() && community(g) == here)
        .collect();
    Ok(html! {
        @if !grids.is_empty() {
            section id="move" {
                h2 { (lang.t("move.title")) }
                p class="muted" { (lang.t("move.hint")) }
                form method="post" action={ "/records/" (layout::encode(id)) "/move" } class="act" id="act-move" {
                    (layout::csrf_field(staff))
                    label { (lang.t("move.to")) " "
                        select name="to" required {
                            @for g in &grids { option value=(g) { (staff.grid_name(g)) } }
                        }
                    }
                    button type="submit" { (lang.t("move.submit")) }
                }
            }
        }
    })
}

/// `POST /records/{id}/move`: moves the household as the signed-in staff member.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(id): Path<String>,
    Form(form): Form<MoveForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    let lang = staff.lang;
    let page = format!("/records/{}", layout::encode(&id));
    // Only a household of the staff member's grids is found at all.
    super::write::load(&state, &staff, &id).await?;
    let _one_at_a_time = state.dashboard.write_lock.lock().await;
    let moved = relay::move_as(
        &state.relay,
        state.accounts.as_ref(),
        &staff.user.username,
        &id,
        form.to.trim(),
    )
    .await;
    match moved {
        Ok(_) => Ok(Redirect::to(&format!("{page}?saved=1")).into_response()),
        Err(MoveError::Refused(why)) => Ok(redirect_with_error(&state, &page, &why)),
        Err(MoveError::Storage(e)) => Err(Fail::storage(lang, e)),
    }
}
