//! Where accounts live: the `AccountStore` trait and its SQLite implementation.

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Role;
use super::sessions::SessionStore;
use super::tokens::ApiTokenStore;
use crate::storage::{Result, SqliteStorage, StorageError};

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

pub(super) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        role: role.parse().unwrap_or(Role::Volunteer),
        password_hash: r.get(4)?,
        active: r.get(5)?,
        scope_version: r.get(6)?,
    })
}

pub(super) fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
        last_seen_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

pub(super) const USER_COLUMNS: &str =
    "id, username, display_name, role, password_hash, active, scope_version";
pub(super) const DEVICE_COLUMNS: &str = "id, user_id, name, created_at, last_seen_at, revoked_at";

/// Every grid at or below the given areas.
const GRIDS_BELOW: &str = "WITH RECURSIVE below(id, level) AS (
        SELECT id, level FROM areas WHERE id IN (SELECT area_id FROM user_areas WHERE user_id = ?1)
        UNION SELECT a.id, a.level FROM areas a JOIN below b ON a.parent_id = b.id
    ) SELECT id FROM below WHERE level = 'grid' ORDER BY id";

#[async_trait]
impl AccountStore for SqliteStorage {
    async fn add_area(&self, area: Area) -> Result<()> {
        self.write(move |c| {
            if let Some(parent) = &area.parent_id {
                let exists = c
                    .prepare_cached("SELECT 1 FROM areas WHERE id = ?1")?
                    .exists([parent])?;
                if !exists {
                    return Err(StorageError::Invalid(format!("no parent area {parent}")));
                }
            }
            let inserted = c.execute(
                "INSERT OR IGNORE INTO areas (id, parent_id, level, name) VALUES (?1, ?2, ?3, ?4)",
                params![area.id, area.parent_id, area.level, area.name],
            );
            match inserted {
                Ok(0) => Err(StorageError::Invalid(format!(
                    "area {} already exists",
                    area.id
                ))),
                Ok(_) => Ok(()),
                Err(e) => Err(StorageError::Invalid(format!("invalid area: {e}"))),
            }
        })
        .await
    }

    async fn areas(&self) -> Result<Vec<Area>> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id, parent_id, level, name FROM areas ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(Area {
                    id: r.get(0)?,
                    parent_id: r.get(1)?,
                    level: r.get(2)?,
                    name: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn add_user(&self, user: NewUser) -> Result<User> {
        let id = uuid::Uuid::now_v7().to_string();
        self.write(move |c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO users (id, username, display_name, role, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, user.username, user.display_name, user.role.as_str(), user.password_hash, now()],
            )?;
            if inserted == 0 {
                return Err(StorageError::Invalid(format!("user {} already exists", user.username)));
            }
            Ok(User {
                id,
                username: user.username,
                display_name: user.display_name,
                role: user.role,
                password_hash: user.password_hash,
                active: true,
                scope_version: 0,
            })
        })
        .await
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        let username = username.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
            ))?
            .query_row([username], user_row)
            .optional()?)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users ORDER BY username"
            ))?;
            let rows = stmt.query_map([], user_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn set_user_areas(&self, user_id: &str, areas: &[String]) -> Result<()> {
        let (user_id, areas) = (user_id.to_string(), areas.to_vec());
        self.write(move |c| {
            let tx = c.transaction()?;
            let grids = |tx: &rusqlite::Transaction<'_>| -> Result<Vec<String>> {
                let mut stmt = tx.prepare(GRIDS_BELOW)?;
                let rows = stmt.query_map([&user_id], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            };
            let before = grids(&tx)?;
            tx.execute("DELETE FROM user_areas WHERE user_id = ?1", [&user_id])?;
            for area in &areas {
                let exists = tx.prepare("SELECT 1 FROM areas WHERE id = ?1")?.exists([area])?;
                if !exists {
                    return Err(StorageError::Invalid(format!("no area {area}")));
                }
                tx.execute(
                    "INSERT INTO user_areas (user_id, area_id) VALUES (?1, ?2)",
                    params![user_id, area],
                )?;
            }
            let after = grids(&tx)?;
            if after != before {
                tx.execute(
                    "UPDATE users SET scope_version = scope_version + 1 WHERE id = ?1",
                    [&user_id],
                )?;
            }
            for grid in &after {
                tx.execute(
                    "DELETE FROM former_grids WHERE user_id = ?1 AND grid_id = ?2",
                    params![user_id, grid],
                )?;
            }
            for grid in before.iter().filter(|g| !after.contains(g)) {
                tx.execute(
                    "INSERT OR REPLACE INTO former_grids (user_id, grid_id, since) VALUES (?1, ?2, ?3)",
                    params![user_id, grid, now()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()> {
        let (user_id, hash) = (user_id.to_string(), password_hash.to_string());
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                params![user_id, hash],
            )?;
            // Whoever knew the old password may hold a browser signed in with it.
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [&user_id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_active(&self, user_id: &str, active: bool) -> Result<()> {
        let user_id = user_id.to_string();
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE users SET active = ?2 WHERE id = ?1",
                params![user_id, active],
            )?;
            if !active {
                // For good: a lost phone or a forgotten browser must not come back to life when
                // the user is activated again.
                tx.execute(
                    "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE user_id = ?1",
                    params![user_id, now()],
                )?;
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", [&user_id])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn grids_of(&self, user: &User) -> Result<(Vec<String>, Vec<String>)> {
        let (user_id, role) = (user.id.clone(), user.role);
        self.read(move |c| {
            let current: Vec<String> = if role == Role::Admin {
                let mut stmt =
                    c.prepare_cached("SELECT id FROM areas WHERE level = 'grid' ORDER BY id")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            } else {
                let mut stmt = c.prepare_cached(GRIDS_BELOW)?;
                let rows = stmt.query_map([&user_id], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let mut stmt = c.prepare_cached(
                "SELECT grid_id FROM former_grids WHERE user_id = ?1 ORDER BY grid_id",
            )?;
            let former = stmt
                .query_map([&user_id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok((current, former))
        })
        .await
    }

    async fn user_areas(&self, user_id: &str) -> Result<Vec<String>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT area_id FROM user_areas WHERE user_id = ?1 ORDER BY area_id",
            )?;
            let rows = stmt.query_map([&user_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn add_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actors: Vec<String>,
        max_devices: usize,
    ) -> Result<bool> {
        self.write(move |c| {
            let tx = c.transaction()?;
            let active: i64 = tx.query_row(
                "SELECT COUNT(*) FROM devices WHERE user_id = ?1 AND revoked_at IS NULL
                 AND id NOT IN (SELECT device_id FROM dashboard_devices)",
                [&device.user_id],
                |r| r.get(0),
            )?;
            if usize::try_from(active).unwrap_or(usize::MAX) >= max_devices {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO devices (id, user_id, token_hash, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![device.id, device.user_id, token_hash, device.name, device.created_at],
            )?;
            for actor in actors {
                let taken: Option<String> = tx
                    .query_row("SELECT device_id FROM device_actors WHERE actor = ?1", [&actor], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if taken.is_some() {
                    return Err(StorageError::Invalid(format!(
                        "actor {actor} is already bound to another device"
                    )));
                }
                tx.execute(
                    "INSERT INTO device_actors (actor, device_id) VALUES (?1, ?2)",
                    params![actor, device.id],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn device_by_token(&self, token_hash: &[u8]) -> Result<Option<(Device, User)>> {
        let token_hash = token_hash.to_vec();
        self.read(move |c| {
            let device = c
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = ?1"
                ))?
                .query_row([token_hash], device_row)
                .optional()?;
            let Some(device) = device else {
                return Ok(None);
            };
            let user = c
                .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([&device.user_id], user_row)?;
            Ok(Some((device, user)))
        })
        .await
    }

    async fn device_actors(&self, device_id: &str) -> Result<Vec<String>> {
        let device_id = device_id.to_string();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT actor FROM device_actors WHERE device_id = ?1")?;
            let rows = stmt.query_map([device_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn devices(&self, username: Option<&str>) -> Result<Vec<Device>> {
        let username = username.map(str::to_string);
        self.read(move |c| {
            let sql = format!(
                "SELECT {} FROM devices d JOIN users u ON u.id = d.user_id
                 WHERE ?1 IS NULL OR u.username = ?1 ORDER BY d.created_at",
                DEVICE_COLUMNS
                    .split(", ")
                    .map(|col| format!("d.{col}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([username], device_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn revoke_device(&self, device_id: &str) -> Result<bool> {
        let device_id = device_id.to_string();
        self.write(move |c| {
            let n = c.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![device_id, now()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_device(&self, device_id: &str) -> Result<()> {
        let device_id = device_id.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE devices SET last_seen_at = ?2 WHERE id = ?1",
                params![device_id, now()],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{NewUser, Role, SessionStore};

    fn device(id: &str, user_id: &str) -> Device {
        Device {
            id: id.into(),
            user_id: user_id.into(),
            name: id.into(),
            created_at: now(),
            last_seen_at: None,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn test_device_cap_counts_devices_in_use_not_revoked_or_dashboard_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(dir.path()).unwrap();
        let user = s
            .add_user(NewUser {
                username: "qian".into(),
                display_name: "钱".into(),
                role: Role::Office,
                password_hash: "x".into(),
            })
            .await
            .unwrap();
        let actor = |n: u8| vec![format!("{n:032x}")];
        s.set_dashboard_device(device("web", &user.id), vec![9; 32], format!("{:032x}", 9))
            .await
            .unwrap();
        assert!(
            s.add_device(device("a", &user.id), vec![1; 32], actor(1), 2)
                .await
                .unwrap()
        );
        assert!(
            s.add_device(device("b", &user.id), vec![2; 32], actor(2), 2)
                .await
                .unwrap()
        );
        assert!(
            !s.add_device(device("c", &user.id), vec![3; 32], actor(3), 2)
                .await
                .unwrap(),
            "a third phone is one too many; the dashboard's device does not count"
        );
        assert!(
            s.device_by_token(&[3; 32]).await.unwrap().is_none(),
            "nothing stored"
        );
        assert!(s.revoke_device("a").await.unwrap());
        assert!(
            s.add_device(device("c", &user.id), vec![3; 32], actor(3), 2)
                .await
                .unwrap()
        );
    }
}
