//! Browser sessions of office staff and admins, and the server-side devices their dashboard
//! writes come from. Part of the account store; see `dashboard/auth.rs` for the rules.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::store::{DEVICE_COLUMNS, USER_COLUMNS, device_row};
use super::{Device, User};
use crate::storage::{Result, SqliteStorage};

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
        role: role.parse().unwrap_or(super::Role::Volunteer),
        password_hash: r.get(at + 4)?,
        active: r.get(at + 5)?,
        scope_version: r.get(at + 6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountStore, NewUser, Role};

    #[tokio::test]
    async fn test_sessions_expire_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(dir.path()).unwrap();
        let user = s
            .add_user(NewUser {
                username: "zhao".into(),
                display_name: "赵".into(),
                role: Role::Office,
                password_hash: "x".into(),
            })
            .await
            .unwrap();
        s.create_session(
            vec![1; 32],
            &user.id,
            "csrf",
            "2026-11-01T00:00:00Z",
            "2026-11-01T12:00:00Z",
        )
        .await
        .unwrap();
        let found = s
            .session(&[1; 32], "2026-11-01T06:00:00Z")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.user.username.as_str(), found.csrf.as_str()),
            ("zhao", "csrf")
        );
        assert!(
            s.session(&[1; 32], "2026-11-01T13:00:00Z")
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        assert!(
            s.session(&[2; 32], "2026-11-01T06:00:00Z")
                .await
                .unwrap()
                .is_none()
        );
        s.end_session(&[1; 32]).await.unwrap();
        assert!(
            s.session(&[1; 32], "2026-11-01T06:00:00Z")
                .await
                .unwrap()
                .is_none(),
            "ended"
        );
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
