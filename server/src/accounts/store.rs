//! Where accounts live: the `AccountStore` trait; its backends are under `storage/` (SQLite in
//! `storage/sqlite/accounts.rs`, in memory in `storage/memory/accounts.rs`).

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use super::Role;
use super::sessions::SessionStore;
use super::tokens::ApiTokenStore;
use crate::storage::Result;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Area {
    pub id: String,
    pub parent_id: Option<String>,
    /// county, street, community or grid
    pub level: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    #[serde(skip)]
    pub password_hash: String,
    pub active: bool,
    /// Moves whenever the user's grids change; an open sync session ends when it moved.
    #[serde(skip)]
    pub scope_version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[async_trait]
/// Every account store also keeps browser sessions ([`SessionStore`]) and API tokens
/// ([`ApiTokenStore`]), so neither the dashboard nor the API needs a store of its own.
pub trait AccountStore: SessionStore + ApiTokenStore + Send + Sync + 'static {
    async fn add_area(&self, area: Area) -> Result<()>;
    async fn areas(&self) -> Result<Vec<Area>>;
    async fn add_user(&self, user: NewUser) -> Result<User>;
    async fn user(&self, username: &str) -> Result<Option<User>>;
    async fn users(&self) -> Result<Vec<User>>;
    /// Replaces the user's areas; grids they lose become former grids. When the grids change,
    /// the user's scope version moves, which ends their open sync sessions.
    async fn set_user_areas(&self, user_id: &str, areas: &[String]) -> Result<()>;
    /// Sets a new password and ends the user's browser sessions; devices stay signed in.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()>;
    /// Deactivating revokes every device of the user and ends their browser sessions, for
    /// good: activating the user again revives neither, the user signs in anew.
    async fn set_active(&self, user_id: &str, active: bool) -> Result<()>;
    /// The grids a user works in now, and the grids they were moved away from.
    async fn grids_of(&self, user: &User) -> Result<(Vec<String>, Vec<String>)>;
    /// The areas a user was assigned (a community for office staff, grids for workers), as
    /// assigned: what `grids_of` expands.
    async fn user_areas(&self, user_id: &str) -> Result<Vec<String>>;
    /// Enrols a device unless its user already has `max_devices` that are not revoked (the
    /// dashboard's own device not counted); returns whether it was enrolled.
    async fn add_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actors: Vec<String>,
        max_devices: usize,
    ) -> Result<bool>;
    /// The device and its user for a token hash, whether revoked or not.
    async fn device_by_token(&self, token_hash: &[u8]) -> Result<Option<(Device, User)>>;
    async fn device_actors(&self, device_id: &str) -> Result<Vec<String>>;
    async fn devices(&self, username: Option<&str>) -> Result<Vec<Device>>;
    /// Returns whether a device with that id existed.
    async fn revoke_device(&self, device_id: &str) -> Result<bool>;
    async fn touch_device(&self, device_id: &str) -> Result<()>;
}

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}
