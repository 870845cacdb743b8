//! A record's history: who changed which fields when, from its Automerge changes (the
//! dashboard's `history`, the same reading its record page shows) joined with the relay's log
//! (when the relay received each change, and its seq).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::records::load;
use super::{ApiError, ErrorBody, Reader, redact};
use crate::AppState;
use crate::dashboard::history;
use crate::storage::{ChangeSource, utc_string};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordHistory {
    pub id: String,
    pub kind: String,
    /// Oldest first; at most the last 300 (the first one shown then starts from what the ones
    /// before it had made).
    pub changes: Vec<Change>,
}

/// One change of a record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// The Automerge change's hash (hex).
    pub hash: String,
    /// Its entry in the relay's log (null if the log does not hold it).
    pub seq: Option<u64>,
    /// Who wrote it (username), as the change says.
    pub author: Option<String>,
    /// When, by the writing device's clock (RFC 3339): shown, never used for order.
    pub time: Option<String>,
    /// When the relay received it (RFC 3339).
    pub received_at: Option<String>,
    /// The record's first change.
    pub created: bool,
    /// Written without seeing another person's change, which was written without seeing it
    /// (a parallel edit).
    pub concurrent: bool,
    /// The fields it changed, sensitive ones left out unless the token reads them.
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    /// The field (`status`), or a part of one (`address.door`).
    pub path: String,
    /// Its value before (absent: it was not set, or the change only added entries to a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub before: Option<Value>,
    /// Its value after (absent: removed); for a list that only grew, the entries added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub after: Option<Value>,
}

/// Who changed which fields of a record when.
#[utoipa::path(
    get,
    path = "/api/v1/records/{id}/history",
    operation_id = "record_history",
    tag = "records",
    params(("id" = String, Path, description = "The record's id 记录编号")),
    responses(
        (status = 200, description = "The record's changes 修改记录", body = RecordHistory),
        (status = 401, description = "No valid token 令牌缺失、无效或已停用", body = ErrorBody),
        (status = 404, description = "No such record in the token's grids 令牌范围内没有该记录", body = ErrorBody),
    ),
)]
pub async fn history(
    State(state): State<Arc<AppState>>,
    reader: Reader,
    Path(id): Path<String>,
) -> Result<Json<RecordHistory>, ApiError> {
    let (kind, found) = load(&state, &reader, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let sources: HashMap<String, ChangeSource> = state
        .relay
        .queries()
        .change_sources(&id)
        .await?
        .into_iter()
        .map(|s| (hex::encode(s.hash), s))
        .collect();
    let changes = history::history(&found.doc)
        .into_iter()
        .map(|e| {
            let hash = hex::encode(e.hash.0);
            let source = sources.get(&hash);
            let fields = e
                .fields
                .into_iter()
                .filter_map(|f| {
                    let (before, after) = if reader.sensitive {
                        (f.before, f.after)
                    } else {
                        redact::change(kind, &f.path, f.before, f.after)?
                    };
                    Some(FieldChange {
                        path: f.path,
                        before,
                        after,
                    })
                })
                .collect();
            Change {
                seq: source.map(|s| s.seq),
                author: e.author,
                time: (e.time > 0)
                    .then(|| chrono::DateTime::from_timestamp(e.time, 0).map(utc_string))
                    .flatten(),
                received_at: source.map(|s| s.received_at.clone()),
                created: e.created,
                concurrent: e.concurrent,
                fields,
                hash,
            }
        })
        .collect();
    Ok(Json(RecordHistory {
        id,
        kind: kind.as_str().to_string(),
        changes,
    }))
}
