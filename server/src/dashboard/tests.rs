//! Dashboard handlers through the router (no browser): sign-in rules, sessions, CSRF, scope,
//! office writes through the relay, embedded assets.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ROOT};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gridsync_core::protocol::UpChange;
use tower::ServiceExt;

use crate::accounts::{self, Area, Identity, NewUser, Role};
use crate::{AppState, Config, Server};

const ACTOR: &[u8; 16] = b"worker-phone-act";

mod attachments;
mod clerk;
mod co;
mod county;
mod grid_move;
mod pages;
mod web;

pub(crate) async fn server() -> (tempfile::TempDir, Arc<AppState>) {
    server_with(|_| {}).await
}

/// [`server`] with its configuration changed first.
async fn server_with(edit: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    edit(&mut config);
    let state = Server::open(&config).unwrap().state;
    let areas = [
        ("m1", None, "community", "和平社区"),
        ("g1", Some("m1"), "grid", "第一网格"),
        ("m2", None, "community", "光明社区"),
        ("g9", Some("m2"), "grid", "光明一网格"),
    ];
    for (id, parent, level, name) in areas {
        state
            .accounts
            .add_area(Area {
                id: id.into(),
                parent_id: parent.map(String::from),
                level: level.into(),
                name: name.into(),
            })
            .await
            .unwrap();
    }
    for (name, role, area) in [("zhao", Role::Office, "m1"), ("vol", Role::Volunteer, "g1")] {
        let user = state
            .accounts
            .add_user(NewUser {
                username: name.into(),
                display_name: format!("{name}-名"),
                role,
                password_hash: accounts::hash_password("pw-2026").unwrap(),
            })
            .await
            .unwrap();
        state
            .accounts
            .set_user_areas(&user.id, &[area.into()])
            .await
            .unwrap();
    }
    (dir, state)
}

/// A case in `grid`, uploaded as a worker's device would.
pub(crate) async fn case(state: &AppState, id: &str, grid: &str, status: &str) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", id),
        ("kind", "case"),
        ("grid_id", grid),
        ("case_type", "low_income"),
        ("subject_name", "张三"),
        ("status", status),
        ("created_by", "wang"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    tx.put_object(ROOT, "actions", automerge::ObjType::List)
        .unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    let writer = Identity {
        user_id: "u-wang".into(),
        username: "wang".into(),
        display_name: "王".into(),
        role: Role::GridWorker,
        device_id: "phone-1".into(),
        grids: vec![grid.into()],
        former_grids: vec![],
        actors: vec![hex::encode(ACTOR)],
        readable_kinds: crate::storage::KindFilter::All,
    };
    let up = UpChange {
        doc_id: id.into(),
        grid: grid.into(),
        bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
    };
    let (rejected, _) = state.relay.accept(&writer, vec![up]).await.unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
}

async fn send(
    state: &Arc<AppState>,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = crate::router(state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn post(path: &str, cookie: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap()
}

/// A form refused: the browser is sent back (303, so reloading does not post it again) with
/// the reason in a one-time cookie. Returns where it was sent and that page, which shows the
/// reason once: the page also tells the browser to forget it.
async fn follow_error(
    state: &Arc<AppState>,
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    cookie: &str,
) -> (String, String) {
    assert_eq!(status, StatusCode::SEE_OTHER, "a refused form redirects");
    let location = headers[header::LOCATION].to_str().unwrap().to_string();
    let flash = headers[header::SET_COOKIE].to_str().unwrap();
    let flash = flash.split(';').next().unwrap();
    assert!(flash.starts_with("gs_flash="), "{flash}");
    let (status, shown, page) = send(state, get(&location, &format!("{cookie}; {flash}"))).await;
    assert_eq!(status, StatusCode::OK);
    let forget = shown[header::SET_COOKIE].to_str().unwrap();
    assert!(
        forget.starts_with("gs_flash=;") && forget.contains("Max-Age=0"),
        "{forget}"
    );
    (location, page)
}

/// The value of a hidden form field on a page.
fn hidden(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name}: {page}"))
        + name.len()
        + 15;
    page[at..].split('"').next().unwrap().to_string()
}

/// The cookie `name=value` a response sets.
fn set_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// Posts the sign-in form as a browser does: the form as the sign-in page gave it (with its
/// token, and the cookie that goes with it) and `fields` filled in.
async fn post_login(
    state: &Arc<AppState>,
    fields: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let (_, headers, page) = send(state, get("/login", "")).await;
    let cookie = set_cookie(&headers, "gs_login").expect("the form's cookie");
    let cookie = cookie.split(';').next().unwrap();
    let form = format!("csrf={}&{fields}", hidden(&page, "csrf"));
    send(state, post("/login", cookie, &form)).await
}

/// Signs in; returns the session cookie and the page's CSRF token.
async fn sign_in(state: &Arc<AppState>, user: &str) -> (String, String) {
    let (status, headers, _) =
        post_login(state, &format!("username={user}&password=pw-2026")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set = set_cookie(&headers, "gs_session").expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (_, _, page) = send(state, get("/", &cookie)).await;
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..at + 64].to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn test_only_office_staff_and_admins_sign_in() {
    let (_dir, state) = server().await;
    let (status, _, page) = post_login(&state, "username=vol&password=pw-2026").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("此账号不能使用办公室系统"));
    let (status, _, page) = post_login(&state, "username=zhao&password=nope").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("用户名或密码错误"));
    let (status, headers, _) = send(&state, get("/", "")).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "no session: to the sign-in page"
    );
    assert!(
        headers[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (status, _, page) = send(&state, get("/", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("第一网格") && !page.contains("光明一网格"),
        "only the community's grids"
    );
}

#[tokio::test]
async fn test_throttled_after_repeated_wrong_passwords() {
    let (_dir, state) = server().await;
    for _ in 0..5 {
        post_login(&state, "username=zhao&password=nope").await;
    }
    let (status, _, page) = post_login(&state, "username=zhao&password=pw-2026").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.contains("尝试次数过多"));
}

#[tokio::test]
async fn test_office_write_needs_the_csrf_token_and_goes_through_the_relay() {
    let (_dir, state) = server().await;
    case(&state, "c1", "g1", "open").await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let (status, _, _) = send(
        &state,
        post("/records/c1/act", &cookie, "op=status&to=assessing"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let (status, _, _) = send(
        &state,
        post(
            "/records/c1/act",
            "",
            &format!("csrf={csrf}&op=status&to=assessing"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no session");

    let form = format!("csrf={csrf}&op=status&to=assessing");
    let (status, _, _) = send(&state, post("/records/c1/act", &cookie, &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let doc = state.relay.document("c1").await.unwrap().unwrap().doc;
    assert_eq!(gridsync_core::doc::read_root(&doc)["status"], "assessing");
    // Logged as the staff member's dashboard device, signed with the username.
    let sources = state.relay.queries().change_sources("c1").await.unwrap();
    let user = state.accounts.user("zhao").await.unwrap().unwrap();
    let (device, _) = state
        .accounts
        .dashboard_device(&user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sources.last().unwrap().device_id, device.id);
    assert_eq!(sources.last().unwrap().worker_id, user.id);
    let last = doc
        .get_changes(&[])
        .last()
        .unwrap()
        .message()
        .map(str::to_string);
    assert_eq!(last.as_deref(), Some("zhao"));

    // An invalid transition is refused with the reason, in Chinese, and stores nothing; the
    // reason is shown on the record page the browser is sent back to.
    let form = format!("csrf={csrf}&op=status&to=pending_review");
    let (status, headers, _) = send(&state, post("/records/c1/act", &cookie, &form)).await;
    let (location, page) = follow_error(&state, status, &headers, &cookie).await;
    assert_eq!(location, "/records/c1");
    assert!(
        page.contains("状态不能从「评估中」改为「待审核」"),
        "{page}"
    );
    assert_eq!(
        state
            .relay
            .queries()
            .change_sources("c1")
            .await
            .unwrap()
            .len(),
        sources.len()
    );
}

#[tokio::test]
async fn test_records_of_other_communities_are_not_found() {
    let (_dir, state) = server().await;
    case(&state, "c9", "g9", "open").await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let (status, _, _) = send(&state, get("/records/c9", &cookie)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, csv) = send(&state, get("/records/export.csv?grid=g9", &cookie)).await;
    assert_eq!(csv.lines().count(), 1, "only the header: {csv}");
    let form = format!("csrf={csrf}&op=status&to=assessing");
    let (status, _, _) = send(&state, post("/records/c9/act", &cookie, &form)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn test_assets_are_embedded_and_pages_load_nothing_from_elsewhere() {
    let (_dir, state) = server().await;
    let (status, headers, css) = send(&state, get("/assets/app.css", "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(!css.contains("url(http") && !css.contains("@import"));
    let (_, headers, page) = send(&state, get("/login", "")).await;
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    assert!(page.contains("工作人员登录"), "Chinese by default");
    let (_, _, page) = send(&state, get("/login", "gs_lang=en")).await;
    assert!(page.contains("Staff sign-in"));
}

#[tokio::test]
async fn test_favicon_is_embedded_and_every_page_names_it() {
    let (_dir, state) = server().await;
    for path in ["/favicon.ico", "/favicon.svg"] {
        let (status, headers, body) = send(&state, get(path, "")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml", "{path}");
        assert!(body.starts_with("<svg") && !body.contains("href"), "{body}");
    }
    let link = "<link rel=\"icon\" type=\"image/svg+xml\" href=\"/favicon.svg\">";
    let (_, _, login) = send(&state, get("/login", "")).await;
    assert!(login.contains(link), "{login}");
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, overview) = send(&state, get("/", &cookie)).await;
    assert!(overview.contains(link), "{overview}");
    let (status, _, missing) = send(&state, get("/records/nope", &cookie)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing.contains(link), "{missing}");
}
