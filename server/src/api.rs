//! The read API for other systems (the street office's, the county's) under `/api/v1`: records
//! by kind, grid and changed-since, paged by the relay's log sequence as devices catch up; a
//! record's history; the monthly figures; the grids a token reads and the record kinds. Read
//! only; every request carries an API token (`Authorization: Bearer ...`) an admin made with
//! `gridsync-server admin token add`, scoped to areas like a user (`auth.rs`). Sensitive
//! resident data only for tokens made with `--sensitive` (`redact.rs`). docs/api.md is the
//! guide.
//!
//! The OpenAPI 3 document at `/api/v1/openapi.json` is generated from the handlers and types
//! here (utoipa): each handler is registered with the router and the document at once, so the
//! document lists exactly what is served.

mod auth;
mod history;
mod monthly;
mod records;
mod redact;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::metrics::ApiAnswer;
use crate::storage::StorageError;
pub use auth::Reader;

/// Records a list page holds unless asked for fewer, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gridsync API",
        description = "Read-only access for the street office's and the county's systems to the \
            records, histories and monthly figures of the grids an API token reads. \
            供街道、区县系统只读访问令牌范围内网格的记录、修改记录和月度统计。 See docs/api.md.",
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "records", description = "Records and their history 记录与修改记录"),
        (name = "figures", description = "The monthly figures 月度统计"),
        (name = "scope", description = "What a token reads 令牌的范围"),
    ),
)]
struct ApiDoc;

/// The document's security scheme: every operation needs `Authorization: Bearer <token>`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `gridsync-server admin token add` 管理员创建的接口令牌",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API's routes and its OpenAPI document, which are made together.
fn parts() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(records::list))
        .routes(routes!(records::one))
        .routes(routes!(history::history))
        .routes(routes!(monthly::monthly))
        .routes(routes!(grids))
        .routes(routes!(schema))
        .split_for_parts()
}

/// The API's routes, merged into the server's router by `crate::router`.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let (routes, doc) = parts();
    let doc = Arc::new(serde_json::to_value(&doc).unwrap_or_default());
    routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/api/v1/{*rest}", any(|| async { ApiError::NotFound }))
        .layer(middleware::from_fn_with_state(state, answer))
}

/// Every answer: counted for `/metrics`, and never kept by a cache on the way (it may hold
/// resident data).
async fn answer(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    state
        .relay
        .metrics
        .api_request(ApiAnswer::of(response.status()));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A grid the token reads.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Grid {
    /// The grid's id, as records name it in `grid_id`.
    pub id: String,
    pub name: String,
    /// The area it belongs to (its community).
    pub parent_id: Option<String>,
    /// The seq of the grid's newest log entry (0 if none): a copy whose cursor is here holds
    /// every change of the grid.
    pub head_seq: u64,
}

/// The grids the token reads: the grids at or below its areas.
#[utoipa::path(
    get,
    path = "/api/v1/grids",
    operation_id = "list_grids",
    tag = "scope",
    responses(
        (status = 200, description = "The token's grids 令牌可读的网格", body = Vec<Grid>),
        (status = 401, description = "No valid token 令牌缺失、无效或已停用", body = ErrorBody),
    ),
)]
async fn grids(
    State(state): State<Arc<AppState>>,
    reader: Reader,
) -> Result<Json<Vec<Grid>>, ApiError> {
    let areas = state.accounts.areas().await?;
    let mut out = Vec::with_capacity(reader.grids.len());
    for id in &reader.grids {
        let area = areas.iter().find(|a| &a.id == id);
        let head = state.relay.log().head(id).await?;
        out.push(Grid {
            id: id.clone(),
            name: area.map_or_else(|| id.clone(), |a| a.name.clone()),
            parent_id: area.and_then(|a| a.parent_id.clone()),
            head_seq: head.map_or(0, |(seq, _)| seq),
        });
    }
    Ok(Json(out))
}

/// The record kinds with their fields as `gridsync schema --json` gives them (labels in zh-CN
/// and English, types, choices, which fields are sensitive); `household_private` too for a
/// token that reads sensitive data.
#[utoipa::path(
    get,
    path = "/api/v1/schema",
    operation_id = "get_schema",
    tag = "scope",
    responses(
        (status = 200, description = "Every kind and its fields 记录类别与字段", body = Object),
        (status = 401, description = "No valid token 令牌缺失、无效或已停用", body = ErrorBody),
    ),
)]
async fn schema(reader: Reader) -> Json<serde_json::Value> {
    use gridsync_core::record::{Kind, schema};
    let mut doc = schema::to_json();
    if reader.sensitive
        && let Some(serde_json::Value::Array(kinds)) = doc.get_mut("kinds")
    {
        kinds.push(Kind::HouseholdPrivate.spec().to_json());
    }
    Json(doc)
}

/// What every refusal says.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong and what to do, in Chinese, then English.
    pub error: String,
}

/// Errors at the API's edge: a status and a safe message, never internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("storage error")]
    Storage(#[from] StorageError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized(m) => {
                let body = Json(ErrorBody { error: m.into() });
                let challenge = HeaderValue::from_static("Bearer realm=\"gridsync\"");
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, challenge)],
                    body,
                )
                    .into_response();
            }
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.to_string()),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "没有找到，或不在令牌的范围内 not found, or outside the token's areas".into(),
            ),
            ApiError::Storage(e) => {
                tracing::error!("api: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "服务器存储出错，请稍后再试 The server could not read its store; try again later"
                        .into(),
                )
            }
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}

impl From<crate::dashboard::Fail> for ApiError {
    fn from(f: crate::dashboard::Fail) -> Self {
        if f.status == StatusCode::NOT_FOUND {
            ApiError::NotFound
        } else {
            ApiError::Storage(StorageError::Database(f.message))
        }
    }
}

/// A query string that does not parse, in the API's words.
fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::BadRequest(format!(
        "查询参数有误 bad query parameters: {}",
        e.body_text()
    ))
}

#[cfg(test)]
mod tests;
