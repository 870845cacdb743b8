//! The account store in memory, kept as SQLite keeps it: each method checks everything before it
//! changes anything, so a refused request leaves nothing behind (SQLite's transactions).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;

use super::MemoryStorage;
use crate::accounts::{
    AccountStore, ApiToken, ApiTokenStore, Area, Device, NewUser, Role, SessionStore, User,
    WebSession, now,
};
use crate::storage::{Result, StorageError};

const LEVELS: &[&str] = &["county", "street", "community", "grid"];

#[derive(Default)]
pub(super) struct Accounts {
    areas: BTreeMap<String, Area>,
    /// By user id.
    users: BTreeMap<String, User>,
    /// Areas assigned, by user id.
    user_areas: HashMap<String, BTreeSet<String>>,
    /// Former grids, by user id, with since when.
    former: HashMap<String, BTreeMap<String, String>>,
    devices: Vec<(Device, Vec<u8>)>,
    /// Actor to device id.
    actors: BTreeMap<String, String>,
    /// User id to the device of their dashboard.
    dashboard_devices: HashMap<String, String>,
    /// By the session id's hash: (user id, csrf, expires at).
    sessions: HashMap<Vec<u8>, (String, String, String)>,
    tokens: Vec<(ApiToken, Vec<u8>)>,
}

impl Accounts {
    /// Every grid at or below the given areas, ordered.
    fn grids_below<'a>(&self, roots: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = roots
            .into_iter()
            .filter(|id| self.areas.contains_key(*id))
            .cloned()
            .collect();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            todo.extend(
                self.areas
                    .values()
                    .filter(|a| a.parent_id.as_deref() == Some(id.as_str()))
                    .map(|a| a.id.clone()),
            );
        }
        seen.into_iter()
            .filter(|id| self.areas.get(id).is_some_and(|a| a.level == "grid"))
            .collect()
    }

    fn user_grids(&self, user_id: &str) -> Vec<String> {
        match self.user_areas.get(user_id) {
            Some(areas) => self.grids_below(areas),
            None => Vec::new(),
        }
    }

    fn end_sessions_of(&mut self, user_id: &str) {
        self.sessions.retain(|_, (user, _, _)| user != user_id);
    }

    fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().map(|(d, _)| d).find(|d| d.id == id)
    }

    fn insert_device(&mut self, device: Device, token_hash: Vec<u8>) -> Result<()> {
        if self.device(&device.id).is_some() {
            return Err(StorageError::Database(format!(
                "device {} already exists",
                device.id
            )));
        }
        if self.devices.iter().any(|(_, h)| *h == token_hash) {
            return Err(StorageError::Database("token hash already in use".into()));
        }
        self.devices.push((device, token_hash));
        Ok(())
    }
}

impl MemoryStorage {
    fn accounts(&self) -> Result<std::sync::MutexGuard<'_, Accounts>> {
        self.accounts
            .lock()
            .map_err(|_| StorageError::Database("memory store poisoned".into()))
    }
}

#[async_trait]
impl AccountStore for MemoryStorage {
    async fn add_area(&self, area: Area) -> Result<()> {
        let mut a = self.accounts()?;
        if let Some(parent) = &area.parent_id
            && !a.areas.contains_key(parent)
        {
            return Err(StorageError::Invalid(format!("no parent area {parent}")));
        }
        if a.areas.contains_key(&area.id) {
            return Err(StorageError::Invalid(format!(
                "area {} already exists",
                area.id
            )));
        }
        if !LEVELS.contains(&area.level.as_str()) {
            return Err(StorageError::Invalid(format!(
                "invalid area: level {} is not one of {LEVELS:?}",
                area.level
            )));
        }
        a.areas.insert(area.id.clone(), area);
        Ok(())
    }

    async fn areas(&self) -> Result<Vec<Area>> {
        Ok(self.accounts()?.areas.values().cloned().collect())
    }

    async fn add_user(&self, user: NewUser) -> Result<User> {
        let mut a = self.accounts()?;
        if a.users.values().any(|u| u.username == user.username) {
            return Err(StorageError::Invalid(format!(
                "user {} already exists",
                user.username
            )));
        }
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            username: user.username,
            display_name: user.display_name,
            role: user.role,
            password_hash: user.password_hash,
            active: true,
            scope_version: 0,
        };
        a.users.insert(user.id.clone(), user.clone());
        Ok(user)
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        let a = self.accounts()?;
        Ok(a.users.values().find(|u| u.username == username).cloned())
    }

    async fn users(&self) -> Result<Vec<User>> {
        let mut users: Vec<User> = self.accounts()?.users.values().cloned().collect();
        users.sort_by(|x, y| x.username.cmp(&y.username));
        Ok(users)
    }

    async fn set_user_areas(&self, user_id: &str, areas: &[String]) -> Result<()> {
        let mut a = self.accounts()?;
        if let Some(missing) = areas.iter().find(|id| !a.areas.contains_key(*id)) {
            return Err(StorageError::Invalid(format!("no area {missing}")));
        }
        let before = a.user_grids(user_id);
        a.user_areas
            .insert(user_id.to_string(), areas.iter().cloned().collect());
        let after = a.user_grids(user_id);
        if after != before
            && let Some(user) = a.users.get_mut(user_id)
        {
            user.scope_version += 1;
        }
        let former = a.former.entry(user_id.to_string()).or_default();
        for grid in &after {
            former.remove(grid);
        }
        for grid in before.iter().filter(|g| !after.contains(g)) {
            former.insert(grid.clone(), now());
        }
        Ok(())
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()> {
        let mut a = self.accounts()?;
        if let Some(user) = a.users.get_mut(user_id) {
            user.password_hash = password_hash.to_string();
        }
        a.end_sessions_of(user_id);
        Ok(())
    }

    async fn set_active(&self, user_id: &str, active: bool) -> Result<()> {
        let mut a = self.accounts()?;
        if let Some(user) = a.users.get_mut(user_id) {
            user.active = active;
        }
        if !active {
            let at = now();
            for (device, _) in a.devices.iter_mut().filter(|(d, _)| d.user_id == user_id) {
                device.revoked_at.get_or_insert_with(|| at.clone());
            }
            a.end_sessions_of(user_id);
        }
        Ok(())
    }

    async fn grids_of(&self, user: &User) -> Result<(Vec<String>, Vec<String>)> {
        let a = self.accounts()?;
        let current = if user.role == Role::Admin {
            a.areas
                .values()
                .filter(|area| area.level == "grid")
                .map(|area| area.id.clone())
                .collect()
        } else {
            a.user_grids(&user.id)
        };
        let former = a
            .former
            .get(&user.id)
            .map(|f| f.keys().cloned().collect())
            .unwrap_or_default();
        Ok((current, former))
    }

    async fn user_areas(&self, user_id: &str) -> Result<Vec<String>> {
        let a = self.accounts()?;
        Ok(a.user_areas
            .get(user_id)
            .map(|areas| areas.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn add_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actors: Vec<String>,
        max_devices: usize,
    ) -> Result<bool> {
        let mut a = self.accounts()?;
        let in_use = a
            .devices
            .iter()
            .filter(|(d, _)| {
                d.user_id == device.user_id
                    && d.revoked_at.is_none()
                    && !a.dashboard_devices.values().any(|id| *id == d.id)
            })
            .count();
        if in_use >= max_devices {
            return Ok(false);
        }
        if let Some(actor) = actors.iter().find(|actor| a.actors.contains_key(*actor)) {
            return Err(StorageError::Invalid(format!(
                "actor {actor} is already bound to another device"
            )));
        }
        let id = device.id.clone();
        a.insert_device(device, token_hash)?;
        for actor in actors {
            a.actors.insert(actor, id.clone());
        }
        Ok(true)
    }

    async fn device_by_token(&self, token_hash: &[u8]) -> Result<Option<(Device, User)>> {
        let a = self.accounts()?;
        let Some((device, _)) = a.devices.iter().find(|(_, h)| h == token_hash) else {
            return Ok(None);
        };
        let user =
            a.users.get(&device.user_id).cloned().ok_or_else(|| {
                StorageError::Corrupt(format!("device {} has no user", device.id))
            })?;
        Ok(Some((device.clone(), user)))
    }

    async fn device_actors(&self, device_id: &str) -> Result<Vec<String>> {
        let a = self.accounts()?;
        Ok(a.actors
            .iter()
            .filter(|(_, d)| *d == device_id)
            .map(|(actor, _)| actor.clone())
            .collect())
    }

    async fn devices(&self, username: Option<&str>) -> Result<Vec<Device>> {
        let a = self.accounts()?;
        let mut devices: Vec<Device> = a
            .devices
            .iter()
            .map(|(d, _)| d)
            .filter(|d| {
                a.users
                    .get(&d.user_id)
                    .is_some_and(|user| username.is_none_or(|name| user.username == name))
            })
            .cloned()
            .collect();
        devices.sort_by(|x, y| x.created_at.cmp(&y.created_at));
        Ok(devices)
    }

    async fn revoke_device(&self, device_id: &str) -> Result<bool> {
        let mut a = self.accounts()?;
        let at = now();
        match a.devices.iter_mut().find(|(d, _)| d.id == device_id) {
            Some((device, _)) => {
                device.revoked_at.get_or_insert(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn touch_device(&self, device_id: &str) -> Result<()> {
        let mut a = self.accounts()?;
        let at = now();
        if let Some((device, _)) = a.devices.iter_mut().find(|(d, _)| d.id == device_id) {
            device.last_seen_at = Some(at);
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryStorage {
    async fn create_session(
        &self,
        id_hash: Vec<u8>,
        user_id: &str,
        csrf: &str,
        now: &str,
        expires_at: &str,
    ) -> Result<()> {
        let mut a = self.accounts()?;
        a.sessions
            .retain(|_, (_, _, expires)| expires.as_str() >= now);
        if a.sessions.contains_key(&id_hash) {
            return Err(StorageError::Database("session already exists".into()));
        }
        a.sessions.insert(
            id_hash,
            (
                user_id.to_string(),
                csrf.to_string(),
                expires_at.to_string(),
            ),
        );
        Ok(())
    }

    async fn session(&self, id_hash: &[u8], now: &str) -> Result<Option<WebSession>> {
        let a = self.accounts()?;
        let Some((user_id, csrf, expires_at)) = a.sessions.get(id_hash) else {
            return Ok(None);
        };
        if expires_at.as_str() < now {
            return Ok(None);
        }
        Ok(a.users.get(user_id).map(|user| WebSession {
            user: user.clone(),
            csrf: csrf.clone(),
            expires_at: expires_at.clone(),
        }))
    }

    async fn end_session(&self, id_hash: &[u8]) -> Result<()> {
        self.accounts()?.sessions.remove(id_hash);
        Ok(())
    }

    async fn dashboard_device(&self, user_id: &str) -> Result<Option<(Device, String)>> {
        let a = self.accounts()?;
        let Some(device) = a.dashboard_devices.get(user_id).and_then(|id| a.device(id)) else {
            return Ok(None);
        };
        let actor = a
            .actors
            .iter()
            .find(|(_, d)| **d == device.id)
            .map(|(actor, _)| actor.clone());
        Ok(actor.map(|actor| (device.clone(), actor)))
    }

    async fn set_dashboard_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actor: String,
    ) -> Result<()> {
        let mut a = self.accounts()?;
        if a.actors.contains_key(&actor) {
            return Err(StorageError::Database(format!(
                "actor {actor} is already bound"
            )));
        }
        let (id, user_id) = (device.id.clone(), device.user_id.clone());
        a.insert_device(device, token_hash)?;
        a.actors.insert(actor, id.clone());
        a.dashboard_devices.insert(user_id, id);
        Ok(())
    }
}

#[async_trait]
impl ApiTokenStore for MemoryStorage {
    async fn add_api_token(&self, mut token: ApiToken, token_hash: Vec<u8>) -> Result<()> {
        let mut a = self.accounts()?;
        if a.tokens
            .iter()
            .any(|(t, h)| t.id == token.id || *h == token_hash)
        {
            return Err(StorageError::Database(format!(
                "token {} already exists",
                token.id
            )));
        }
        if let Some(area) = token.areas.iter().find(|id| !a.areas.contains_key(*id)) {
            return Err(StorageError::Invalid(format!(
                "没有区域 {area}，未创建令牌 no area {area}; no token was created"
            )));
        }
        token.areas.sort();
        token.areas.dedup();
        a.tokens.push((token, token_hash));
        Ok(())
    }

    async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let mut tokens: Vec<ApiToken> = self
            .accounts()?
            .tokens
            .iter()
            .map(|(t, _)| t.clone())
            .collect();
        tokens.sort_by(|x, y| (&x.created_at, &x.id).cmp(&(&y.created_at, &y.id)));
        Ok(tokens)
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(ApiToken, Vec<String>)>> {
        let a = self.accounts()?;
        Ok(a.tokens
            .iter()
            .find(|(_, h)| h == token_hash)
            .map(|(t, _)| (t.clone(), a.grids_below(&t.areas))))
    }

    async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        let mut a = self.accounts()?;
        let at = now();
        match a.tokens.iter_mut().find(|(t, _)| t.id == id) {
            Some((token, _)) => {
                token.revoked_at.get_or_insert(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn touch_api_token(&self, id: &str, now: &str) -> Result<()> {
        let mut a = self.accounts()?;
        if let Some((token, _)) = a.tokens.iter_mut().find(|(t, _)| t.id == id) {
            token.last_used_at = Some(now.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn test_memory_storage_keeps_accounts() {
        crate::storage::tests::accounts_conformance(&super::MemoryStorage::default()).await;
    }
}
