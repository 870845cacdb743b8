//! Browser sessions of office staff and admins, and the server-side devices their dashboard
//! writes come from. Part of the account store; see `dashboard/auth.rs` for the rules.

use async_trait::async_trait;

use super::{Device, User};
use crate::storage::Result;

/// A signed-in browser: who, and the token its forms must carry.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub user: User,
    pub csrf: String,
    pub expires_at: String,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session (by the hash of its id) and forgets sessions expired before `now`.
    async fn create_session(
        &self,
        id_hash: Vec<u8>,
        user_id: &str,
        csrf: &str,
        now: &str,
        expires_at: &str,
    ) -> Result<()>;
    /// The session with this id hash, unless it expired before `now`.
    async fn session(&self, id_hash: &[u8], now: &str) -> Result<Option<WebSession>>;
    async fn end_session(&self, id_hash: &[u8]) -> Result<()>;
    /// The device a user's dashboard writes come from, with its Automerge actor.
    async fn dashboard_device(&self, user_id: &str) -> Result<Option<(Device, String)>>;
    /// Enrols a (new) dashboard device for a user, replacing any earlier one.
    async fn set_dashboard_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actor: String,
    ) -> Result<()>;
}
