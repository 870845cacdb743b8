//! API tokens: what another system (the street office's, the county's) reads the API under
//! `/api/v1` with. An admin makes and revokes them (`gridsync-server admin token ...`); like a
//! user, a token reads the grids at or below its areas; unlike one, it only ever reads. Part of
//! the account store; see `api/auth.rs` for how a request presents one.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::storage::{Result, SqliteStorage, StorageError};

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
        let (id, now) = (id.to_string(), super::store::now());
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
    use crate::accounts::{AccountStore, Area};

    fn token(id: &str, areas: &[&str]) -> ApiToken {
        ApiToken {
            id: id.into(),
            name: format!("{id} system"),
            areas: areas.iter().map(|a| a.to_string()).collect(),
            sensitive: false,
            created_at: "2026-11-01T00:00:00Z".into(),
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn test_a_token_reads_the_grids_below_its_areas_and_is_found_only_by_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(dir.path()).unwrap();
        for (id, parent, level) in [
            ("m1", None, "community"),
            ("g1", Some("m1"), "grid"),
            ("g2", Some("m1"), "grid"),
            ("g9", None, "grid"),
        ] {
            s.add_area(Area {
                id: id.into(),
                parent_id: parent.map(String::from),
                level: level.into(),
                name: id.into(),
            })
            .await
            .unwrap();
        }
        let (secret, hash) = new_api_token().unwrap();
        assert!(secret.starts_with(API_TOKEN_PREFIX));
        assert_eq!(secret.len(), API_TOKEN_PREFIX.len() + 64);
        s.add_api_token(token("t1", &["m1"]), hash.clone())
            .await
            .unwrap();
        let (found, grids) = s.api_token_by_hash(&hash).await.unwrap().unwrap();
        assert_eq!(found.areas, ["m1"]);
        assert_eq!(grids, ["g1", "g2"]);
        assert!(
            s.api_token_by_hash(secret.as_bytes())
                .await
                .unwrap()
                .is_none(),
            "the secret itself is not what is stored"
        );

        let err = s
            .add_api_token(token("t2", &["g1", "nowhere"]), vec![7; 32])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
        assert_eq!(s.api_tokens().await.unwrap().len(), 1, "nothing stored");

        assert!(s.revoke_api_token("t1").await.unwrap());
        assert!(!s.revoke_api_token("nope").await.unwrap());
        let (revoked, _) = s.api_token_by_hash(&hash).await.unwrap().unwrap();
        assert!(revoked.revoked_at.is_some());
    }
}
