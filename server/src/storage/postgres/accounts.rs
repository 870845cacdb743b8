//! The account store in PostgreSQL: areas, users, devices and their actors (`AccountStore`),
//! browser sessions and the dashboard's devices (`SessionStore`), and API tokens
//! (`ApiTokenStore`): the SQL of `sqlite/accounts.rs` in PostgreSQL's dialect. Where SQLite's
//! single writer made a check and a write one step (the device cap, a user's areas), the user's
//! row is locked first, so two relays on one database keep the same rules.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PostgresStorage;
use crate::accounts::{
    AccountStore, ApiToken, ApiTokenStore, Area, Device, NewUser, Role, SessionStore, User,
    WebSession,
};
use crate::storage::{Result, StorageError};

fn now() -> String {
    crate::accounts::now()
}

const USER_COLUMNS: &str = "id, username, display_name, role, password_hash, active, scope_version";
const DEVICE_COLUMNS: &str = "id, user_id, name, created_at, last_seen_at, revoked_at";

/// A user read from the columns starting at `at`.
fn user_at(r: &Row, at: usize) -> User {
    let role: String = r.get(at + 3);
    User {
        id: r.get(at),
        username: r.get(at + 1),
        display_name: r.get(at + 2),
        role: role.parse().unwrap_or(Role::Volunteer),
        password_hash: r.get(at + 4),
        active: r.get(at + 5),
        scope_version: r.get(at + 6),
    }
}

fn device_row(r: &Row) -> Device {
    Device {
        id: r.get(0),
        user_id: r.get(1),
        name: r.get(2),
        created_at: r.get(3),
        last_seen_at: r.get(4),
        revoked_at: r.get(5),
    }
}

fn prefixed(table: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|col| format!("{table}.{col}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every grid at or below the areas of `$1` in `link` (`user_areas` by user,
/// `api_token_areas` by token).
fn grids_below(link: &str, owner: &str) -> String {
    format!(
        "WITH RECURSIVE below(id, level) AS (
            SELECT id, level FROM areas WHERE id IN (SELECT area_id FROM {link} WHERE {owner} = $1)
            UNION SELECT a.id, a.level FROM areas a JOIN below b ON a.parent_id = b.id
        ) SELECT id FROM below WHERE level = 'grid' ORDER BY id"
    )
}

async fn strings(
    c: &impl GenericClient,
    sql: &str,
    arg: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Vec<String>> {
    Ok(c.query(sql, &[arg])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn area_exists(c: &impl GenericClient, id: &str) -> Result<bool> {
    Ok(c.query_opt("SELECT 1 FROM areas WHERE id = $1", &[&id])
        .await?
        .is_some())
}

#[async_trait]
impl AccountStore for PostgresStorage {
    async fn add_area(&self, area: Area) -> Result<()> {
        let c = self.client().await?;
        if let Some(parent) = &area.parent_id
            && !area_exists(&c, parent).await?
        {
            return Err(StorageError::Invalid(format!("no parent area {parent}")));
        }
        let inserted = c
            .execute(
                "INSERT INTO areas (id, parent_id, level, name) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING",
                &[&area.id, &area.parent_id, &area.level, &area.name],
            )
            .await;
        match inserted {
            Ok(0) => Err(StorageError::Invalid(format!(
                "area {} already exists",
                area.id
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(StorageError::Invalid(format!(
                "invalid area: {}",
                StorageError::from(e)
            ))),
        }
    }

    async fn areas(&self) -> Result<Vec<Area>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, parent_id, level, name FROM areas ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Area {
                id: r.get(0),
                parent_id: r.get(1),
                level: r.get(2),
                name: r.get(3),
            })
            .collect())
    }

    async fn add_user(&self, user: NewUser) -> Result<User> {
        let id = uuid::Uuid::now_v7().to_string();
        let c = self.client().await?;
        let inserted = c
            .execute(
                "INSERT INTO users (id, username, display_name, role, password_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING",
                &[
                    &id,
                    &user.username,
                    &user.display_name,
                    &user.role.as_str(),
                    &user.password_hash,
                    &now(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StorageError::Invalid(format!(
                "user {} already exists",
                user.username
            )));
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
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
                ))
                .await?,
                &[&username],
            )
            .await?;
        Ok(row.map(|r| user_at(&r, 0)))
    }

    async fn users(&self) -> Result<Vec<User>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| user_at(r, 0)).collect())
    }

    async fn set_user_areas(&self, user_id: &str, areas: &[String]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // One reassignment of a user at a time, whichever relay or admin makes it.
        tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user_id])
            .await?;
        let below = grids_below("user_areas", "user_id");
        let before = strings(&tx, &below, &user_id).await?;
        tx.execute("DELETE FROM user_areas WHERE user_id = $1", &[&user_id])
            .await?;
        for area in areas {
            if !area_exists(&tx, area).await? {
                return Err(StorageError::Invalid(format!("no area {area}")));
            }
            tx.execute(
                "INSERT INTO user_areas (user_id, area_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&user_id, area],
            )
            .await?;
        }
        let after = strings(&tx, &below, &user_id).await?;
        if after != before {
            tx.execute(
                "UPDATE users SET scope_version = scope_version + 1 WHERE id = $1",
                &[&user_id],
            )
            .await?;
        }
        tx.execute(
            "DELETE FROM former_grids WHERE user_id = $1 AND grid_id = ANY($2::text[])",
            &[&user_id, &after],
        )
        .await?;
        for grid in before.iter().filter(|g| !after.contains(g)) {
            tx.execute(
                "INSERT INTO former_grids (user_id, grid_id, since) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, grid_id) DO UPDATE SET since = excluded.since",
                &[&user_id, grid, &now()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            &[&user_id, &password_hash],
        )
        .await?;
        // Whoever knew the old password may hold a browser signed in with it.
        tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_active(&self, user_id: &str, active: bool) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE users SET active = $2 WHERE id = $1",
            &[&user_id, &active],
        )
        .await?;
        if !active {
            // For good: a lost phone or a forgotten browser must not come back to life when
            // the user is activated again.
            tx.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, $2) WHERE user_id = $1",
                &[&user_id, &now()],
            )
            .await?;
            tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn grids_of(&self, user: &User) -> Result<(Vec<String>, Vec<String>)> {
        let c = self.client().await?;
        let current = if user.role == Role::Admin {
            c.query("SELECT id FROM areas WHERE level = 'grid' ORDER BY id", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            let below = c
                .prepare_cached(&grids_below("user_areas", "user_id"))
                .await?;
            c.query(&below, &[&user.id])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        let former = c
            .query(
                &c.prepare_cached(
                    "SELECT grid_id FROM former_grids WHERE user_id = $1 ORDER BY grid_id",
                )
                .await?,
                &[&user.id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((current, former))
    }

    async fn user_areas(&self, user_id: &str) -> Result<Vec<String>> {
        let c = self.client().await?;
        strings(
            &c,
            "SELECT area_id FROM user_areas WHERE user_id = $1 ORDER BY area_id",
            &user_id,
        )
        .await
    }

    async fn add_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actors: Vec<String>,
        max_devices: usize,
    ) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The cap holds however many relays enrol the user's phones at once.
        tx.execute(
            "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
            &[&device.user_id],
        )
        .await?;
        let active: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM devices WHERE user_id = $1 AND revoked_at IS NULL
                 AND id NOT IN (SELECT device_id FROM dashboard_devices)",
                &[&device.user_id],
            )
            .await?
            .get(0);
        if usize::try_from(active).unwrap_or(usize::MAX) >= max_devices {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO devices (id, user_id, token_hash, name, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &device.id,
                &device.user_id,
                &token_hash,
                &device.name,
                &device.created_at,
            ],
        )
        .await?;
        for actor in actors {
            let inserted = tx
                .execute(
                    "INSERT INTO device_actors (actor, device_id) VALUES ($1, $2)
                     ON CONFLICT (actor) DO NOTHING",
                    &[&actor, &device.id],
                )
                .await?;
            if inserted == 0 {
                return Err(StorageError::Invalid(format!(
                    "actor {actor} is already bound to another device"
                )));
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn device_by_token(&self, token_hash: &[u8]) -> Result<Option<(Device, User)>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {}, {} FROM devices d JOIN users u ON u.id = d.user_id
                     WHERE d.token_hash = $1",
                    prefixed("d", DEVICE_COLUMNS),
                    prefixed("u", USER_COLUMNS)
                ))
                .await?,
                &[&token_hash],
            )
            .await?;
        Ok(row.map(|r| (device_row(&r), user_at(&r, 6))))
    }

    async fn device_actors(&self, device_id: &str) -> Result<Vec<String>> {
        let c = self.client().await?;
        strings(
            &c,
            "SELECT actor FROM device_actors WHERE device_id = $1 ORDER BY actor",
            &device_id,
        )
        .await
    }

    async fn devices(&self, username: Option<&str>) -> Result<Vec<Device>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {} FROM devices d JOIN users u ON u.id = d.user_id
                     WHERE $1::text IS NULL OR u.username = $1::text ORDER BY d.created_at, d.id",
                    prefixed("d", DEVICE_COLUMNS)
                ),
                &[&username],
            )
            .await?;
        Ok(rows.iter().map(device_row).collect())
    }

    async fn revoke_device(&self, device_id: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                &[&device_id, &now()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn touch_device(&self, device_id: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached("UPDATE devices SET last_seen_at = $2 WHERE id = $1")
                .await?,
            &[&device_id, &now()],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for PostgresStorage {
    async fn create_session(
        &self,
        id_hash: Vec<u8>,
        user_id: &str,
        csrf: &str,
        now: &str,
        expires_at: &str,
    ) -> Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM sessions WHERE expires_at < $1", &[&now])
            .await?;
        c.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&id_hash, &user_id, &csrf, &now, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &[u8], now: &str) -> Result<Option<WebSession>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT s.csrf, s.expires_at, {} FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.id_hash = $1 AND s.expires_at >= $2",
                    prefixed("u", USER_COLUMNS)
                ))
                .await?,
                &[&id_hash, &now],
            )
            .await?;
        Ok(row.map(|r| WebSession {
            csrf: r.get(0),
            expires_at: r.get(1),
            user: user_at(&r, 2),
        }))
    }

    async fn end_session(&self, id_hash: &[u8]) -> Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
            .await?;
        Ok(())
    }

    async fn dashboard_device(&self, user_id: &str) -> Result<Option<(Device, String)>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {}, (SELECT actor FROM device_actors a WHERE a.device_id = d.id
                                 ORDER BY actor LIMIT 1)
                     FROM dashboard_devices x JOIN devices d ON d.id = x.device_id
                     WHERE x.user_id = $1",
                    prefixed("d", DEVICE_COLUMNS)
                ))
                .await?,
                &[&user_id],
            )
            .await?;
        Ok(row.and_then(|r| {
            let actor: Option<String> = r.get(6);
            actor.map(|a| (device_row(&r), a))
        }))
    }

    async fn set_dashboard_device(
        &self,
        device: Device,
        token_hash: Vec<u8>,
        actor: String,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "INSERT INTO devices (id, user_id, token_hash, name, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &device.id,
                &device.user_id,
                &token_hash,
                &device.name,
                &device.created_at,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO device_actors (actor, device_id) VALUES ($1, $2)",
            &[&actor, &device.id],
        )
        .await?;
        tx.execute(
            "INSERT INTO dashboard_devices (user_id, device_id) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id",
            &[&device.user_id, &device.id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

const TOKEN_COLUMNS: &str = "id, name, sensitive, created_at, last_used_at, revoked_at";

fn token_row(r: &Row) -> ApiToken {
    ApiToken {
        id: r.get(0),
        name: r.get(1),
        areas: Vec::new(),
        sensitive: r.get(2),
        created_at: r.get(3),
        last_used_at: r.get(4),
        revoked_at: r.get(5),
    }
}

async fn token_areas(c: &impl GenericClient, token_id: &str) -> Result<Vec<String>> {
    strings(
        c,
        "SELECT area_id FROM api_token_areas WHERE token_id = $1 ORDER BY area_id",
        &token_id,
    )
    .await
}

#[async_trait]
impl ApiTokenStore for PostgresStorage {
    async fn add_api_token(&self, token: ApiToken, token_hash: Vec<u8>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "INSERT INTO api_tokens (id, name, token_hash, sensitive, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &token.id,
                &token.name,
                &token_hash,
                &token.sensitive,
                &token.created_at,
            ],
        )
        .await?;
        for area in &token.areas {
            if !area_exists(&tx, area).await? {
                return Err(StorageError::Invalid(format!(
                    "没有区域 {area}，未创建令牌 no area {area}; no token was created"
                )));
            }
            tx.execute(
                "INSERT INTO api_token_areas (token_id, area_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&token.id, area],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"),
                &[],
            )
            .await?;
        let mut tokens: Vec<ApiToken> = rows.iter().map(token_row).collect();
        for t in &mut tokens {
            t.areas = token_areas(&c, &t.id).await?;
        }
        Ok(tokens)
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(ApiToken, Vec<String>)>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"
                ))
                .await?,
                &[&token_hash],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut token = token_row(&row);
        token.areas = token_areas(&c, &token.id).await?;
        let grids = strings(&c, &grids_below("api_token_areas", "token_id"), &token.id).await?;
        Ok(Some((token, grids)))
    }

    async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                &[&id, &now()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn touch_api_token(&self, id: &str, now: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await?;
        Ok(())
    }
}
