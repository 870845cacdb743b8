//! The account store in SQLite: areas, users, devices and their actors (`AccountStore`), browser
//! sessions and the dashboard's devices (`SessionStore`), and API tokens (`ApiTokenStore`). The
//! traits and what they promise are in `accounts/`; `storage::tests::accounts_conformance` is
//! the contract every backend passes.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStorage;
use crate::accounts::{
    AccountStore, ApiToken, ApiTokenStore, Area, Device, NewUser, Role, SessionStore, User,
    WebSession,
};
use crate::storage::{Result, StorageError};

fn now() -> String {
    crate::accounts::now()
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

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
        last_seen_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const USER_COLUMNS: &str = "id, username, display_name, role, password_hash, active, scope_version";
const DEVICE_COLUMNS: &str = "id, user_id, name, created_at, last_seen_at, revoked_at";

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

// Browser sessions and the dashboard's devices.

#[async_trait]
impl SessionStore for SqliteStorage {
    async fn create_session(
        &self,
        id_hash: Vec<u8>,
        user_id: &str,
        csrf: &str,
        now: &str,
        expires_at: &str,
    ) -> Result<()> {
        let (user_id, csrf, now, expires_at) = (
            user_id.to_string(),
            csrf.to_string(),
            now.to_string(),
            expires_at.to_string(),
        );
        self.write(move |c| {
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [&now])?;
            c.execute(
                "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, user_id, csrf, now, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &[u8], now: &str) -> Result<Option<WebSession>> {
        let (id_hash, now) = (id_hash.to_vec(), now.to_string());
        self.read(move |c| {
            let sql = format!(
                "SELECT s.csrf, s.expires_at, {} FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id_hash = ?1 AND s.expires_at >= ?2",
                prefixed("u", USER_COLUMNS)
            );
            let found = c
                .prepare_cached(&sql)?
                .query_row(params![id_hash, now], |r| {
                    let csrf: String = r.get(0)?;
                    let expires_at: String = r.get(1)?;
                    Ok((csrf, expires_at, user_row_at(r, 2)?))
                })
                .optional()?;
            Ok(found.map(|(csrf, expires_at, user)| WebSession {
                user,
                csrf,
                expires_at,
            }))
        })
        .await
    }

    async fn end_session(&self, id_hash: &[u8]) -> Result<()> {
        let id_hash = id_hash.to_vec();
        self.write(move |c| {
            c.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
            Ok(())
        })
        .await
    }

    async fn dashboard_device(&self, user_id: &str) -> Result<Option<(Device, String)>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let sql = format!(
                "SELECT {}, (SELECT actor FROM device_actors a WHERE a.device_id = d.id LIMIT 1)
                 FROM dashboard_devices x JOIN devices d ON d.id = x.device_id WHERE x.user_id = ?1",
                prefixed("d", DEVICE_COLUMNS)
            );
            let found = c
                .prepare_cached(&sql)?
                .query_row([user_id], |r| {
                    let actor: Option<String> = r.get(6)?;
                    Ok((device_row(r)?, actor))
                })
                .optional()?;
            Ok(found.and_then(|(device, actor)| actor.map(|a| (device, a))))
        })
        .await
    }

    async fn set_dashboard_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actor: String,
    ) -> Result<()> {
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO devices (id, user_id, token_hash, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![device.id, device.user_id, token_hash, device.name, device.created_at],
            )?;
            tx.execute(
                "INSERT INTO device_actors (actor, device_id) VALUES (?1, ?2)",
                params![actor, device.id],
            )?;
            tx.execute(
                "INSERT INTO dashboard_devices (user_id, device_id) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id",
                params![device.user_id, device.id],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

fn prefixed(table: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|col| format!("{table}.{col}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A user read from the columns starting at `at`.
fn user_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<User> {
    let role: String = r.get(at + 3)?;
    Ok(User {
        id: r.get(at)?,
        username: r.get(at + 1)?,
        display_name: r.get(at + 2)?,
        role: role.parse().unwrap_or(Role::Volunteer),
        password_hash: r.get(at + 4)?,
        active: r.get(at + 5)?,
        scope_version: r.get(at + 6)?,
    })
}

// API tokens.

/// Every grid at or below a token's areas.
const TOKEN_GRIDS: &str = "WITH RECURSIVE below(id, level) AS (
        SELECT id, level FROM areas WHERE id IN (SELECT area_id FROM api_token_areas WHERE token_id = ?1)
        UNION SELECT a.id, a.level FROM areas a JOIN below b ON a.parent_id = b.id
    ) SELECT id FROM below WHERE level = 'grid' ORDER BY id";

const TOKEN_COLUMNS: &str = "id, name, sensitive, created_at, last_used_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        areas: Vec::new(),
        sensitive: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn areas_of(c: &rusqlite::Connection, token_id: &str) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT area_id FROM api_token_areas WHERE token_id = ?1 ORDER BY area_id",
    )?;
    let rows = stmt.query_map([token_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}

#[async_trait]
impl ApiTokenStore for SqliteStorage {
    async fn add_api_token(&self, token: ApiToken, token_hash: Vec<u8>) -> Result<()> {
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO api_tokens (id, name, token_hash, sensitive, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    token.id,
                    token.name,
                    token_hash,
                    token.sensitive,
                    token.created_at
                ],
            )?;
            for area in &token.areas {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM areas WHERE id = ?1")?
                    .exists([area])?;
                if !exists {
                    return Err(StorageError::Invalid(format!(
                        "没有区域 {area}，未创建令牌 no area {area}; no token was created"
                    )));
                }
                tx.execute(
                    "INSERT OR IGNORE INTO api_token_areas (token_id, area_id) VALUES (?1, ?2)",
                    params![token.id, area],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
            ))?;
            let mut tokens = stmt
                .query_map([], token_row)?
                .collect::<Result<Vec<_>, _>>()?;
            for t in &mut tokens {
                t.areas = areas_of(c, &t.id)?;
            }
            Ok(tokens)
        })
        .await
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(ApiToken, Vec<String>)>> {
        let token_hash = token_hash.to_vec();
        self.read(move |c| {
            let found = c
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1"
                ))?
                .query_row([token_hash], token_row)
                .optional()?;
            let Some(mut token) = found else {
                return Ok(None);
            };
            token.areas = areas_of(c, &token.id)?;
            let mut stmt = c.prepare_cached(TOKEN_GRIDS)?;
            let grids = stmt
                .query_map([&token.id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(Some((token, grids)))
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        let (id, now) = (id.to_string(), now());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![id, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_api_token(&self, id: &str, now: &str) -> Result<()> {
        let (id, now) = (id.to_string(), now.to_string());
        self.write(move |c| {
            c.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_sqlite_storage_keeps_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        crate::storage::tests::accounts_conformance(&storage).await;
    }

    #[tokio::test]
    async fn test_users_deactivated_before_the_upgrade_lose_devices_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(dir.path()).unwrap();
        let user = s
            .add_user(NewUser {
                username: "wang".into(),
                display_name: "王".into(),
                role: Role::GridWorker,
                password_hash: "x".into(),
            })
            .await
            .unwrap();
        let device = Device {
            id: "phone".into(),
            user_id: user.id.clone(),
            name: "手机".into(),
            created_at: "2026-11-01T00:00:00Z".into(),
            last_seen_at: None,
            revoked_at: None,
        };
        s.add_device(device, vec![7; 32], vec![], 10).await.unwrap();
        s.create_session(
            vec![1; 32],
            &user.id,
            "csrf",
            "2026-11-01T00:00:00Z",
            "2999-01-01T00:00:00Z",
        )
        .await
        .unwrap();
        // A store of version 3 (before migrations 004 to 007) whose user was deactivated
        // then, when that revoked nothing.
        s.write(|c| {
            c.execute_batch(
                "UPDATE users SET active = 0;
                 DROP TRIGGER records_tally_in;
                 DROP TRIGGER records_tally_out;
                 DROP TRIGGER records_tally_moved;
                 DROP TRIGGER facts_tally_in;
                 DROP TRIGGER facts_tally_moved;
                 DROP TRIGGER facts_tally_out;
                 DROP TABLE record_tallies;
                 ALTER TABLE users DROP COLUMN scope_version;
                 ALTER TABLE record_facts DROP COLUMN ended_at;
                 ALTER TABLE record_facts DROP COLUMN handled_at;
                 ALTER TABLE record_facts DROP COLUMN unit_id;
                 ALTER TABLE record_facts DROP COLUMN source_id;
                 ALTER TABLE record_facts DROP COLUMN low_at;
                 ALTER TABLE record_facts DROP COLUMN measure;
                 ALTER TABLE record_facts DROP COLUMN participants;
                 ALTER TABLE record_facts DROP COLUMN movements;
                 DROP INDEX review_flags_settled;
                 DROP INDEX records_household;
                 ALTER TABLE review_flags DROP COLUMN had_conflicts;
                 ALTER TABLE review_flags DROP COLUMN settled_at;
                 ALTER TABLE review_flags DROP COLUMN settled_seq;
                 DROP TABLE api_token_areas;
                 DROP TABLE api_tokens;
                 DROP TABLE attachment_refs;
                 DROP TABLE attachment_blobs;
                 DROP TABLE grid_moves;
                 ALTER TABLE log DROP COLUMN size;
                 PRAGMA user_version = 3;",
            )?;
            Ok(())
        })
        .await
        .unwrap();
        drop(s);

        let s = SqliteStorage::open(dir.path()).unwrap();
        s.set_active(&user.id, true).await.unwrap();
        let (device, user) = s.device_by_token(&[7; 32]).await.unwrap().unwrap();
        assert!(user.active);
        assert!(
            device.revoked_at.is_some(),
            "the old phone came back to life"
        );
        let session = s.session(&[1; 32], "2026-11-02T00:00:00Z").await.unwrap();
        assert!(session.is_none(), "the old browser came back to life");
    }
}
