//! Browser sign-in for office staff and admins: password check with the shared throttle, a
//! random session id in an HttpOnly, SameSite=Strict cookie (only its SHA-256 is stored), a
//! per-session CSRF token on every form that changes something.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use maud::html;
use serde::Deserialize;

use super::Fail;
use super::i18n::Lang;
use super::layout::{self, bare};
use crate::AppState;
use crate::accounts::{self, Role, User};
use crate::storage::utc_string;

const SESSION_COOKIE: &str = "gs_session";
const LANG_COOKIE: &str = "gs_lang";
const FLASH_COOKIE: &str = "gs_flash";

/// A signed-in office staff member or admin, with the grids they may see.
#[derive(Debug, Clone)]
pub struct Staff {
    pub user: User,
    pub csrf: String,
    pub grids: Vec<String>,
    pub former_grids: Vec<String>,
    /// Grid id → name, for every grid in scope.
    pub names: HashMap<String, String>,
    pub lang: Lang,
    /// The page asked for (path and query), to come back to after switching language.
    pub path: String,
    /// The SHA-256 of the session's id, for a long response (the event stream) to check that
    /// the session still stands.
    pub session_hash: Vec<u8>,
}

impl Staff {
    pub fn grid_name(&self, id: &str) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// Grid choices for a filter, by name.
    pub fn grid_options(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .grids
            .iter()
            .map(|g| (g.clone(), self.grid_name(g)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), Fail> {
        let (a, b) = (self.csrf.as_bytes(), token.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if same {
            Ok(())
        } else {
            Err(Fail::new(StatusCode::FORBIDDEN, self.lang.t("err.csrf")))
        }
    }
}

fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The language chosen in this browser (Chinese unless switched).
pub fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::from_cookie(cookies(headers).get(LANG_COOKIE).map(String::as_str))
}

fn session_hash(id: &str) -> Vec<u8> {
    accounts::token_hash(id)
}

impl FromRequestParts<Arc<AppState>> for Staff {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Staff, Response> {
        let lang = lang_of(&parts.headers);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        let away = || -> Response {
            if parts.method == axum::http::Method::GET {
                Redirect::to(&format!("/login?next={}", layout::encode(&path))).into_response()
            } else {
                Fail::new(StatusCode::UNAUTHORIZED, lang.t("err.csrf")).into_response()
            }
        };
        let Some(id) = cookies(&parts.headers).remove(SESSION_COOKIE) else {
            return Err(away());
        };
        let now = utc_string(Utc::now());
        let hash = session_hash(&id);
        let found = state.accounts.session(&hash, &now).await;
        let session = match found {
            Ok(Some(s)) => s,
            Ok(None) => return Err(away()),
            Err(e) => return Err(Fail::storage(lang, e).into_response()),
        };
        if !may_use_dashboard(&session.user) {
            return Err(away());
        }
        let (grids, former_grids) = match state.accounts.grids_of(&session.user).await {
            Ok(g) => g,
            Err(e) => return Err(Fail::storage(lang, e).into_response()),
        };
        let names = match state.accounts.areas().await {
            Ok(areas) => areas
                .into_iter()
                .filter(|a| grids.contains(&a.id))
                .map(|a| (a.id, a.name))
                .collect(),
            Err(e) => return Err(Fail::storage(lang, e).into_response()),
        };
        Ok(Staff {
            user: session.user,
            csrf: session.csrf,
            grids,
            former_grids,
            names,
            lang,
            path,
            session_hash: hash,
        })
    }
}

/// Whether a signed-in user may still use the dashboard.
pub fn may_use_dashboard(user: &User) -> bool {
    user.active && matches!(user.role, Role::Office | Role::Admin)
}

/// After a form that failed: back to the page with the reason (POST-redirect-GET, so reloading
/// that page does not send the form again). The reason rides in a short-lived cookie, not in the
/// URL, so no link can make the dashboard show words it did not write.
pub fn redirect_with_error(state: &AppState, to: &str, message: &str) -> Response {
    let secure = if state.dashboard.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{FLASH_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=60{secure}",
        hex::encode(message)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(local_path(to))).into_response()
}

/// The reason a redirect carried, once: the page that shows it also sends the header that
/// forgets it.
pub fn take_flash(headers: &HeaderMap) -> Option<(String, (header::HeaderName, String))> {
    let raw = cookies(headers).remove(FLASH_COOKIE)?;
    let message = String::from_utf8(hex::decode(raw).ok()?).ok()?;
    let forget = format!("{FLASH_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (!message.is_empty()).then_some((message, (header::SET_COOKIE, forget)))
}

#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_page(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    login_form(lang_of(&headers), &q.next, "", None, StatusCode::OK)
}

fn login_form(
    lang: Lang,
    next: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let back = format!("/login?next={}", layout::encode(next));
    let body = html! {
        form method="post" action="/login" class="card login" {
            h1 { (lang.t("login.title")) }
            p class="muted" { (lang.t("login.hint")) }
            (layout::flash(error, true))
            input type="hidden" name="next" value=(next);
            label { (lang.t("login.username")) input name="username" id="username" value=(username) autocomplete="username" required autofocus; }
            label { (lang.t("login.password")) input type="password" name="password" id="password" autocomplete="current-password" required; }
            button type="submit" id="sign-in" { (lang.t("login.submit")) }
        }
    };
    (status, bare(lang, lang.t("login.title"), &back, body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// Only a path on this site is a place to go back to.
fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn peer_ip(parts: &axum::http::Extensions) -> IpAddr {
    parts
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let lang = lang_of(&parts.headers);
    let ip = peer_ip(&parts.extensions);
    let request = axum::extract::Request::from_parts(parts, body);
    let Ok(Form(form)) = Form::<LoginForm>::from_request(request, &state).await else {
        return Fail::new(StatusCode::BAD_REQUEST, lang.t("err.bad_request")).into_response();
    };
    let refuse = |key: &'static str, status| {
        login_form(lang, &form.next, &form.username, Some(lang.t(key)), status)
    };
    if state.limiter.blocked(&form.username, ip).is_some() {
        return refuse("err.throttled", StatusCode::TOO_MANY_REQUESTS);
    }
    let user = match state.accounts.user(&form.username).await {
        Ok(u) => u,
        Err(e) => return Fail::storage(lang, e).into_response(),
    };
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_default();
    let password = form.password.clone();
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        state.limiter.failed(&form.username, ip);
        return refuse("err.credentials", StatusCode::UNAUTHORIZED);
    };
    if !user.active {
        return refuse("err.inactive", StatusCode::FORBIDDEN);
    }
    if !matches!(user.role, Role::Office | Role::Admin) {
        return refuse("err.role", StatusCode::FORBIDDEN);
    }
    state.limiter.succeeded(&form.username);
    let (Ok((id, _)), Ok((csrf, _))) = (accounts::new_token(), accounts::new_token()) else {
        return Fail::new(StatusCode::INTERNAL_SERVER_ERROR, lang.t("err.storage")).into_response();
    };
    let now = Utc::now();
    let hours = state.dashboard.session_hours;
    let expires = utc_string(now + Duration::hours(hours));
    let created = state
        .accounts
        .create_session(
            session_hash(&id),
            &user.id,
            &csrf,
            &utc_string(now),
            &expires,
        )
        .await;
    if let Err(e) = created {
        return Fail::storage(lang, e).into_response();
    }
    let secure = if state.dashboard.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        hours * 3600
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(local_path(&form.next)),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    staff: Staff,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Fail> {
    staff.check_csrf(&form.csrf)?;
    if let Some(id) = cookies(&headers).remove(SESSION_COOKIE) {
        state
            .accounts
            .end_session(&session_hash(&id))
            .await
            .map_err(|e| Fail::storage(staff.lang, e))?;
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    to: String,
    #[serde(default)]
    back: String,
}

/// Switches the language (a plain preference cookie) and goes back to the page.
pub async fn switch_lang(Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::from_cookie(Some(&q.to));
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000",
        lang.code()
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(local_path(&q.back)),
    )
        .into_response()
}
