//! API tokens: what another system (the street office's, the county's) reads the API under
//! `/api/v1` with. An admin makes and revokes them (`gridsync-server admin token ...`); like a
//! user, a token reads the grids at or below its areas; unlike one, it only ever reads. Part of
//! the account store; see `api/auth.rs` for how a request presents one.

use async_trait::async_trait;
use serde::Serialize;

use crate::storage::Result;

/// What every API token starts with, so that one pasted somewhere it should not be is easy to
/// recognise (and to tell from a device token).
pub const API_TOKEN_PREFIX: &str = "gsapi_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: String,
    /// Whose system it is, for the admin's list.
    pub name: String,
    /// The areas as the admin gave them.
    pub areas: Vec<String>,
    /// May read residents' sensitive data: `household_private` records and every field the
    /// kinds mark sensitive. Without it those are left out of every answer.
    pub sensitive: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[async_trait]
pub trait ApiTokenStore: Send + Sync + 'static {
    /// Stores a new token by the hash of its secret. Every area must exist, else nothing is
    /// stored.
    async fn add_api_token(&self, token: ApiToken, token_hash: Vec<u8>) -> Result<()>;
    /// Every token, revoked ones included, oldest first.
    async fn api_tokens(&self) -> Result<Vec<ApiToken>>;
    /// The token with this hash, revoked or not, and the grids at or below its areas now.
    async fn api_token_by_hash(&self, token_hash: &[u8])
    -> Result<Option<(ApiToken, Vec<String>)>>;
    /// Revokes a token for good; returns whether one with that id existed.
    async fn revoke_api_token(&self, id: &str) -> Result<bool>;
    /// Notes that the token was used at `now`.
    async fn touch_api_token(&self, id: &str, now: &str) -> Result<()>;
}

/// A new API token (the prefix and 256 random bits in hex) and the hash the relay keeps of it.
pub fn new_api_token() -> std::result::Result<(String, Vec<u8>), String> {
    let (secret, _) = super::new_token()?;
    let token = format!("{API_TOKEN_PREFIX}{secret}");
    let hash = super::token_hash(&token);
    Ok((token, hash))
}
