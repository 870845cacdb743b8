//! The dashboard's edges against a hostile web: redirects that stay on this site, a sign-in
//! form that only this site can submit, pages no cache keeps, page numbers of any size, an
//! unknown username refused after the same work as a wrong password, and exports that survive
//! an overlong field.

use std::io::Read;

use super::*;
use crate::dashboard::auth::local_path;
use crate::dashboard::layout::encode;

/// Where a browser would go: answers to places the dashboard must never send anyone.
const AWAY: &[&str] = &[
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r\n/evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "https://evil.example/",
    "evil.example",
    " /evil",
    "/ /evil",
    "/%09/evil.example/x",
    "/%0a/evil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "/%25252F%25252Fevil.example",
    "/.//evil.example",
    "/records?\u{7}",
    "/\u{3000}/evil.example",
    "/\u{0085}/evil.example",
];

/// Paths on this site, kept as they are.
const HERE: &[&str] = &[
    "/",
    "/reports",
    "/records/c1?saved=1",
    "/records?kind=case&q=%E5%BC%A0",
    "/records?q=http%3A%2F%2Fexample",
];

fn location(headers: &axum::http::HeaderMap) -> String {
    headers[header::LOCATION].to_str().unwrap().to_string()
}

#[test]
fn test_only_paths_on_this_site_are_places_to_go_back_to() {
    for away in AWAY {
        assert_eq!(local_path(away), "/", "{away:?}");
    }
    assert_eq!(local_path(""), "/");
    for here in HERE {
        assert_eq!(local_path(here), *here);
    }
}

#[tokio::test]
async fn test_language_switch_sends_nobody_to_another_site() {
    let (_dir, state) = server().await;
    for away in AWAY {
        let path = format!("/lang?to=en&back={}", encode(away));
        let (status, headers, _) = send(&state, get(&path, "")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{away:?}");
        assert_eq!(location(&headers), "/", "{away:?}");
    }
    for here in HERE {
        let path = format!("/lang?to=en&back={}", encode(here));
        let (_, headers, _) = send(&state, get(&path, "")).await;
        assert_eq!(location(&headers), *here);
    }
}

#[tokio::test]
async fn test_sign_in_and_office_actions_send_nobody_to_another_site() {
    let (_dir, state) = server().await;
    let form = |next: &str| format!("username=zhao&password=pw-2026&next={}", encode(next));
    let (status, headers, _) = post_login(&state, &form("/\t/evil.example/x")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/");
    let (_, headers, _) = post_login(&state, &form("/records?kind=case")).await;
    assert_eq!(location(&headers), "/records?kind=case");

    case(&state, "c1", "g1", "open").await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let act = |fields: &str, back: &str| format!("csrf={csrf}&{fields}&back={}", encode(back));
    let form = act("op=status&to=assessing", "/\t/evil.example/x");
    let (status, headers, _) = send(&state, post("/records/c1/act", &cookie, &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/");
    // zhao works in the community, so in its grid g1: one of the people a case may be given to.
    let form = act("op=assign&responsible=zhao", "/reports");
    let (_, headers, _) = send(&state, post("/records/c1/act", &cookie, &form)).await;
    assert_eq!(location(&headers), "/reports");
    let form = format!("csrf={csrf}&op=assign&responsible=zhao");
    let (_, headers, _) = send(&state, post("/records/c1/act", &cookie, &form)).await;
    assert_eq!(
        location(&headers),
        "/records/c1?saved=1",
        "no back: the record"
    );
}

#[tokio::test]
async fn test_sign_in_form_only_counts_when_this_site_gave_it() {
    let (_dir, state) = server().await;
    let right = "username=zhao&password=pw-2026";
    let refused = |status: StatusCode, headers: &axum::http::HeaderMap, page: &str| {
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        assert!(page.contains("页面已过期"), "{page}");
        assert!(set_cookie(headers, "gs_session").is_none(), "not signed in");
        assert!(
            set_cookie(headers, "gs_login").is_some(),
            "a fresh form to send again"
        );
        assert_eq!(hidden(page, "csrf").len(), 64);
    };
    // A page elsewhere posting the form (sign-in CSRF): neither the token nor its cookie.
    let (status, headers, page) = send(&state, post("/login", "", right)).await;
    refused(status, &headers, &page);
    // A token without its cookie, and a cookie with another token.
    let (_, headers, page) = send(&state, get("/login", "")).await;
    let token = hidden(&page, "csrf");
    let form = format!("csrf={token}&{right}");
    let (status, headers2, page) = send(&state, post("/login", "", &form)).await;
    refused(status, &headers2, &page);
    let cookie = set_cookie(&headers, "gs_login").unwrap();
    let cookie = cookie.split(';').next().unwrap();
    assert_eq!(
        cookie,
        format!("gs_login={token}"),
        "the cookie goes with the form"
    );
    let (status, headers3, page) = send(
        &state,
        post(
            "/login",
            cookie,
            &format!("csrf={}&{right}", "0".repeat(64)),
        ),
    )
    .await;
    refused(status, &headers3, &page);
    // The form as this site gave it signs in, and its token is used up.
    let (status, headers, _) = send(&state, post("/login", cookie, &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(set_cookie(&headers, "gs_session").is_some());
    let used = set_cookie(&headers, "gs_login").unwrap();
    assert!(used.contains("Max-Age=0"), "{used}");
}

#[tokio::test]
async fn test_pages_are_never_kept_by_a_cache() {
    let (_dir, state) = server().await;
    case(&state, "c1", "g1", "open").await;
    let no_store = |headers: &axum::http::HeaderMap, path: &str| {
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
    };
    let (_, headers, _) = send(&state, get("/login", "")).await;
    no_store(&headers, "/login");
    let (cookie, _) = sign_in(&state, "zhao").await;
    for path in [
        "/",
        "/records",
        "/records/c1",
        "/records/nope",
        "/review",
        "/reports",
        "/stats",
    ] {
        let (_, headers, page) = send(&state, get(path, &cookie)).await;
        assert!(page.contains("<html") || page.contains("flash"), "{path}");
        no_store(&headers, path);
    }
    let (_, headers, _) = send(&state, get("/assets/app.css", "")).await;
    assert!(
        headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .starts_with("public"),
        "assets are cached"
    );
}

#[tokio::test]
async fn test_any_page_number_shows_a_page() {
    let (_dir, state) = server().await;
    case(&state, "c1", "g1", "open").await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    for page in [
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999",
        "1000001",
        "-1",
        "abc",
        "",
    ] {
        let (status, _, body) = send(&state, get(&format!("/records?page={page}"), &cookie)).await;
        assert_eq!(status, StatusCode::OK, "page={page}: {body}");
        assert!(body.contains("/records/c1"), "page={page}: the last page");
    }
}

#[tokio::test]
async fn test_an_unknown_user_is_refused_after_an_argon2_verification() {
    let (_dir, state) = server().await;
    let before = state.limiter.verifications();
    let (status, _, page) = post_login(&state, "username=nobody&password=pw-2026").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("用户名或密码错误"));
    assert_eq!(state.limiter.verifications(), before + 1);
    let (status, _, _) = post_login(&state, "username=zhao&password=nope").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(state.limiter.verifications(), before + 2);
}

/// The cells of the first sheet of an XLSX file, as its shared strings.
fn shared_strings(xlsx: &[u8]) -> String {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).expect("a zip file");
    let mut xml = String::new();
    zip.by_name("xl/sharedStrings.xml")
        .unwrap()
        .read_to_string(&mut xml)
        .unwrap();
    xml
}

#[tokio::test]
async fn test_one_overlong_field_is_cut_in_the_exports_not_failing_them() {
    let (dir, state) = server().await;
    case(&state, "c1", "g1", "open").await;
    case(&state, "c2", "g1", "open").await;
    // A record stored before fields were bounded: its list text is 33,000 characters.
    let long = "长".repeat(33_000);
    let db = rusqlite::Connection::open(dir.path().join("gridsync.sqlite3")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE record_facts SET summary = ?1 WHERE doc_id = 'c1'",
        [&long],
    )
    .unwrap();
    let (cookie, _) = sign_in(&state, "zhao").await;

    let res = crate::router(state.clone())
        .oneshot(get("/records/export.xlsx", &cookie))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 26)
        .await
        .unwrap();
    let strings = shared_strings(&bytes);
    let cut = format!("{}…[已截断]", "长".repeat(32_767 - 6));
    assert!(
        strings.contains(&format!(">{cut}<")),
        "the cell says it was cut"
    );
    assert!(!strings.contains(&"长".repeat(32_767 - 5)));
    assert!(strings.contains(">c2<"), "the other records are there");

    let (status, _, csv) = send(&state, get("/records/export.csv", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.contains(&cut), "the CSV cuts the same way");
    assert!(csv.lines().any(|l| l.starts_with("c2,")));
}
