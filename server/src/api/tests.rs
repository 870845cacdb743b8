//! The API's edge through the router (no socket): refusals in JSON, the document it serves.
//! The end-to-end tests (tests/tests/api.rs) call every endpoint on a real relay with real data.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use crate::{Config, Server};

async fn get(path: &str, authorization: Option<&str>) -> (StatusCode, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let router = Server::open(&config).unwrap().router();
    let mut req = Request::get(path);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let res = router
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(
        res.headers().get(header::CACHE_CONTROL).unwrap(),
        "no-store",
        "{path}"
    );
    let body = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, challenge, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn test_requests_without_a_valid_token_get_401_in_json() {
    for auth in [
        None,
        Some("Bearer "),
        Some("Basic abc"),
        Some("Bearer gsapi_nope"),
    ] {
        let (status, challenge, body) = get("/api/v1/records", auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(challenge.starts_with("Bearer"), "{auth:?}: {challenge}");
        assert!(body["error"].as_str().unwrap().contains("令牌"), "{body}");
    }
}

#[tokio::test]
async fn test_an_unknown_api_path_is_a_json_404_and_the_document_lists_every_route() {
    let (status, _, body) = get("/api/v1/nothing/here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    let (status, _, doc) = get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/grids",
            "/api/v1/records",
            "/api/v1/records/{id}",
            "/api/v1/records/{id}/history",
            "/api/v1/schema",
            "/api/v1/stats/monthly",
        ]
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
