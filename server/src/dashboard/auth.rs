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
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
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
const LOGIN_COOKIE: &str = "gs_login";

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
        if same_token(&self.csrf, token) {
            Ok(())
        } else {
            Err(Fail::new(StatusCode::FORBIDDEN, self.lang.t("err.csrf")))
        }
    }
}

/// Compares two tokens in time that does not depend on where they differ; an empty token
/// matches nothing.
fn same_token(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

pub async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let form = LoginPage {
        lang: lang_of(&headers),
        token: login_token(&headers),
        secure: state.dashboard.secure_cookies,
    };
    form.show(&q.next, "", None, StatusCode::OK)
}

/// The sign-in form's token, against sign-in CSRF (a page elsewhere signing the browser in as
/// someone else): the form carries it and so does a cookie only this site can have set; the
/// sign-in is refused unless both agree. The browser keeps its token until it signs in.
fn login_token(headers: &HeaderMap) -> String {
    cookies(headers)
        .remove(LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .or_else(|| accounts::new_token().ok().map(|(t, _)| t))
        .unwrap_or_default()
}

/// What the sign-in form is drawn with.
struct LoginPage {
    lang: Lang,
    token: String,
    secure: bool,
}

impl LoginPage {
    fn show(
        &self,
        next: &str,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> Response {
        let lang = self.lang;
        let back = format!("/login?next={}", layout::encode(next));
        let body = html! {
            form method="post" action="/login" class="card login" {
                h1 { (lang.t("login.title")) }
                p class="muted" { (lang.t("login.hint")) }
                (layout::flash(error, true))
                input type="hidden" name="csrf" value=(self.token);
                input type="hidden" name="next" value=(next);
                label { (lang.t("login.username")) input name="username" id="username" value=(username) autocomplete="username" required autofocus; }
                label { (lang.t("login.password")) input type="password" name="password" id="password" autocomplete="current-password" required; }
                button type="submit" id="sign-in" { (lang.t("login.submit")) }
            }
        };
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{LOGIN_COOKIE}={}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=86400{secure}",
            self.token
        );
        (
            status,
            [(header::SET_COOKIE, cookie)],
            bare(lang, lang.t("login.title"), &back, body),
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// The one gate of every redirect the dashboard answers with a place it was given (`next`,
/// `back`): only a path on this site passes, anything else becomes `/`.
///
/// A browser strips tabs and newlines from a `Location`, reads `\\` as `/` and `//host` as
/// another site, so `/\t/evil.example` would leave. Passed are printable ASCII without spaces
/// or `\\`, starting with exactly one `/`, whose percent-decoded forms (decoded again while
/// that changes anything, as a chain of decoders might) hold no control character or `\\` and
/// whose path part never holds `//` (which also covers `/.//host`).
pub fn local_path(next: &str) -> &str {
    if is_local_path(next) { next } else { "/" }
}

fn is_local_path(next: &str) -> bool {
    let raw_ok = next.starts_with('/') && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if !raw_ok {
        return false;
    }
    let mut form = next.as_bytes().to_vec();
    // Each round removes at least one `%`, so this ends; a few rounds cover any real chain.
    for _ in 0..4 {
        let text = String::from_utf8_lossy(&form);
        let path = text.split(['?', '#']).next().unwrap_or_default();
        if !path.starts_with('/')
            || path.contains("//")
            || text.chars().any(|c| c.is_control() || c == '\\')
        {
            return false;
        }
        let decoded = percent_decode(&form);
        if decoded == form {
            return true;
        }
        form = decoded;
    }
    false
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
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
    let token = login_token(&parts.headers);
    let cookie_token = cookies(&parts.headers).remove(LOGIN_COOKIE);
    let request = axum::extract::Request::from_parts(parts, body);
    let Ok(Form(form)) = Form::<LoginForm>::from_request(request, &state).await else {
        return Fail::new(StatusCode::BAD_REQUEST, lang.t("err.bad_request")).into_response();
    };
    let page = LoginPage {
        lang,
        token,
        secure: state.dashboard.secure_cookies,
    };
    let refuse = |key: &'static str, status| {
        page.show(&form.next, &form.username, Some(lang.t(key)), status)
    };
    // A form this browser was not given here: drawn again with its token, to send once more.
    if !cookie_token.is_some_and(|t| same_token(&t, &form.csrf)) {
        return refuse("err.csrf", StatusCode::FORBIDDEN);
    }
    let attempt = state
        .limiter
        .attempt(state.accounts.as_ref(), &form.username, &form.password, ip)
        .await;
    let user = match attempt {
        Ok(user) => user,
        Err(accounts::LoginError::Throttled(_)) => {
            return refuse("err.throttled", StatusCode::TOO_MANY_REQUESTS);
        }
        Err(accounts::LoginError::Storage(e)) => return Fail::storage(lang, e).into_response(),
        Err(_) => return refuse("err.credentials", StatusCode::UNAUTHORIZED),
    };
    if !user.active {
        return refuse("err.inactive", StatusCode::FORBIDDEN);
    }
    if !matches!(user.role, Role::Office | Role::Admin) {
        return refuse("err.role", StatusCode::FORBIDDEN);
    }
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
    let used = format!("{LOGIN_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        AppendHeaders([(header::SET_COOKIE, cookie), (header::SET_COOKIE, used)]),
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
