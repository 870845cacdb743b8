//! Records: the list of those changed since a cursor, and one record as it is now.
//!
//! The cursor is the relay's log sequence, the one devices catch up by: the list holds each
//! record once, at the seq of its newest change, oldest first, and a page's `cursor` is where
//! the next page starts. A system that keeps a copy asks again from its last cursor and gets
//! what changed since, each record as it is now. Lists read the index to find the records, then
//! each record's document through the relay's cache, as the dashboard's record page does.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use gridsync_core::doc;
use gridsync_core::record::{Kind, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, DEFAULT_LIMIT, ErrorBody, MAX_LIMIT, Reader, bad_query, redact};
use crate::AppState;
use crate::relay::StoredRecord;
use crate::storage::KindFilter;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this grid (one the token reads); every grid it reads when left out.
    grid: Option<String>,
    /// Only this kind (`household`, `visit`, `case`, ...: see `/api/v1/schema`).
    kind: Option<String>,
    /// Records changed after this seq: 0 (the default) for every record, else the `cursor` of
    /// the page before.
    after: Option<u64>,
    /// Records in a page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// A record as it is now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiRecord {
    pub id: String,
    pub kind: String,
    pub grid_id: String,
    /// The seq of the record's newest change in the relay's log (where lists place it).
    pub seq: u64,
    /// Deleted on a device or in the office (still listed, so that a copy can drop it).
    pub deleted: bool,
    /// Every field of the record, as devices and the dashboard read it (fields in
    /// docs/records.md), without the sensitive ones unless the token reads sensitive data.
    #[schema(value_type = Object)]
    pub record: Map<String, Value>,
}

/// A page of the records changed since a cursor.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordPage {
    /// Oldest change first.
    pub records: Vec<ApiRecord>,
    /// Where the next page starts (`after=`): the last record's seq, or the `after` asked for
    /// when the page is empty. Kept, it asks for what changed since.
    pub cursor: u64,
    /// More records changed after `cursor`: ask for the next page now.
    pub more: bool,
}

/// The records of the token's grids changed since a cursor, each once, oldest change first.
#[utoipa::path(
    get,
    path = "/api/v1/records",
    operation_id = "list_records",
    tag = "records",
    params(ListParams),
    responses(
        (status = 200, description = "A page of records 一页记录", body = RecordPage),
        (status = 400, description = "A parameter is wrong 参数有误", body = ErrorBody),
        (status = 401, description = "No valid token 令牌缺失、无效或已停用", body = ErrorBody),
        (status = 403, description = "The kind holds sensitive data this token may not read 该令牌不能读取敏感信息", body = ErrorBody),
        (status = 404, description = "The grid is not one the token reads 网格不在令牌范围内", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    reader: Reader,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<RecordPage>, ApiError> {
    let Query(p) = query.map_err(bad_query)?;
    let grids = match &p.grid {
        Some(g) if reader.grids.contains(g) => vec![g.clone()],
        Some(_) => return Err(ApiError::NotFound),
        None => reader.grids.clone(),
    };
    let kinds = match &p.kind {
        Some(name) => {
            let kind: Kind = name.parse().map_err(|_| {
                let known: Vec<&str> = Kind::ALL_STORED.iter().map(|k| k.as_str()).collect();
                ApiError::BadRequest(format!(
                    "没有记录类别 {name} no record kind `{name}`: use one of {}",
                    known.join(", ")
                ))
            })?;
            if !reader.may_read(kind) {
                return Err(ApiError::Forbidden(
                    "该令牌不能读取敏感信息 this token may not read sensitive data",
                ));
            }
            KindFilter::Only(vec![kind])
        }
        None => reader.kinds(),
    };
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit 须在 1 到 {MAX_LIMIT} 之间 limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let after = p.after.unwrap_or(0);
    let (changed, more) = state
        .relay
        .queries()
        .changed_since(&grids, &kinds, after, limit)
        .await?;
    let mut records = Vec::with_capacity(changed.len());
    for c in &changed {
        // Gone from the store between the two reads (never in practice): the cursor moves on.
        if let Some(found) = load(&state, &reader, &c.doc_id).await? {
            records.push(shown(&reader, &c.doc_id, found, c.seq));
        }
    }
    let cursor = changed.last().map_or(after, |c| c.seq);
    Ok(Json(RecordPage {
        records,
        cursor,
        more,
    }))
}

/// One record as it is now.
#[utoipa::path(
    get,
    path = "/api/v1/records/{id}",
    operation_id = "get_record",
    tag = "records",
    params(("id" = String, Path, description = "The record's id 记录编号")),
    responses(
        (status = 200, description = "The record 记录", body = ApiRecord),
        (status = 401, description = "No valid token 令牌缺失、无效或已停用", body = ErrorBody),
        (status = 404, description = "No such record in the token's grids 令牌范围内没有该记录", body = ErrorBody),
    ),
)]
pub async fn one(
    State(state): State<Arc<AppState>>,
    reader: Reader,
    Path(id): Path<String>,
) -> Result<Json<ApiRecord>, ApiError> {
    let found = load(&state, &reader, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let seq = state
        .relay
        .queries()
        .change_sources(&id)
        .await?
        .last()
        .map_or(0, |s| s.seq);
    Ok(Json(shown(&reader, &id, found, seq)))
}

/// A record the token may read, through the relay's document cache; `None` for one it may not
/// (outside its grids, a kind it does not read, not complete yet) as for one that does not
/// exist.
pub async fn load(
    state: &AppState,
    reader: &Reader,
    id: &str,
) -> Result<Option<(Kind, StoredRecord)>, ApiError> {
    let Some(found) = state.relay.document(id).await? else {
        return Ok(None);
    };
    let Some(kind) = found.kind else {
        return Ok(None);
    };
    Ok((reader.grids.contains(&found.grid_id) && reader.may_read(kind)).then_some((kind, found)))
}

/// The record as the token may read it: every field with the kind's computed ones (as a device
/// shows them), sensitive ones removed unless it reads them.
fn shown(reader: &Reader, id: &str, (kind, found): (Kind, StoredRecord), seq: u64) -> ApiRecord {
    let read = doc::read_root(&found.doc);
    let mut fields = Record::from_fields(read.clone()).map_or(read, |r| r.fields);
    if !reader.sensitive {
        redact::record(kind, &mut fields);
    }
    ApiRecord {
        id: id.to_string(),
        kind: kind.as_str().to_string(),
        grid_id: found.grid_id,
        seq,
        deleted: fields.get("deleted").and_then(Value::as_bool) == Some(true),
        record: fields,
    }
}
