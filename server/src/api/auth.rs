//! Who is asking: the API token in `Authorization: Bearer ...`, looked up by its SHA-256 as
//! device tokens are. Scope comes from the token alone (the grids at or below its areas, read
//! now, so a change of areas or a revocation holds from the next request on); nothing the
//! request says about itself widens it.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use gridsync_core::record::Kind;

use super::ApiError;
use crate::AppState;
use crate::accounts;
use crate::storage::KindFilter;

const MISSING: &str = "缺少接口令牌：请在请求头中发送 Authorization: Bearer <令牌> \
                       no API token: send `Authorization: Bearer <token>`";
const UNKNOWN: &str = "接口令牌无效 the API token is not valid";
const REVOKED: &str = "接口令牌已停用 the API token was revoked";

/// The system a request comes from, as its token says.
#[derive(Debug, Clone)]
pub struct Reader {
    /// The grids it reads; a record elsewhere is "not found".
    pub grids: Vec<String>,
    /// It may read sensitive resident data.
    pub sensitive: bool,
}

impl Reader {
    /// Whether it may read records of `kind`: every kind, the private part of households only
    /// with sensitive data.
    pub fn may_read(&self, kind: Kind) -> bool {
        self.sensitive || kind != Kind::HouseholdPrivate
    }

    /// The kinds it reads, for a list that names none.
    pub fn kinds(&self) -> KindFilter {
        KindFilter::Only(
            Kind::ALL_STORED
                .into_iter()
                .filter(|k| self.may_read(*k))
                .collect(),
        )
    }
}

impl FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(MISSING))?;
        let found = state
            .accounts
            .api_token_by_hash(&accounts::token_hash(token))
            .await?;
        let Some((token, grids)) = found else {
            return Err(ApiError::Unauthorized(UNKNOWN));
        };
        if token.revoked_at.is_some() {
            return Err(ApiError::Unauthorized(REVOKED));
        }
        // When it was last used, for the admin's list: to the minute, so that a system paging
        // through a grid does not write to the store on every request.
        let now = crate::storage::utc_string(chrono::Utc::now());
        if token.last_used_at.as_ref().and_then(|t| t.get(..16)) != now.get(..16) {
            state.accounts.touch_api_token(&token.id, &now).await?;
        }
        Ok(Reader {
            grids,
            sensitive: token.sensitive,
        })
    }
}
