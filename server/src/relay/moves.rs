//! Grid adjustment (网格调整, docs/protocol.md §15): the office moves a household, with every
//! record that names it, to another grid of its community.
//!
//! A move is two changes per document, made on the relay's copy with the mover's dashboard
//! actor: the first sets the root `grid_id` to the new grid and is filed under the old grid
//! (its devices learn that the record left), the second sets it again and is filed under the new
//! grid (its devices catching up past it get the whole document, `Relay::read_batch`). The
//! document's `docs` and `records` rows are filed under the new grid in the same commit.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, ROOT};
use gridsync_core::record::Kind;
use gridsync_core::record::schema::FieldType;

use super::{CachedDoc, Relay};
use crate::accounts::{AccountStore, Device, Identity, Role, User};
use crate::storage::{Commit, GridMove, KindFilter, NewChange, RecordQuery, StorageError};

/// How often a serving relay looks for moves another process made.
const MOVES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Moves read per call of [`Relay::refresh_moves`] at most, in pages of this many.
const MOVES_PAGE: usize = 1000;
const MOVES_PAGES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The kinds whose records belong to a household: those with a top-level reference to one.
pub fn household_kinds() -> Vec<Kind> {
    Kind::ALL_STORED
        .into_iter()
        .filter(|k| {
            k.spec()
                .fields
                .iter()
                .any(|f| matches!(f.ty, FieldType::Ref(Kind::Household)))
        })
        .collect()
}

impl Relay {
    /// Moves household `household_id` and the records that name it to grid `to`, as `mover`
    /// (office staff or an admin, with both grids in scope; the caller checks that they are of
    /// one community). Returns the ids of the documents moved.
    pub async fn move_household(
        &self,
        mover: &Identity,
        household_id: &str,
        to: &str,
    ) -> Result<Vec<String>, MoveError> {
        if !matches!(mover.role, Role::Office | Role::Admin) {
            return Err(MoveError::Refused(
                "只有社区办公室可以调整网格 only the office may move a household".into(),
            ));
        }
        if !mover.grids.iter().any(|g| g == to) {
            return Err(MoveError::Refused(format!(
                "grid {to} is outside this user's scope"
            )));
        }
        let actor: ActorId = mover
            .actors
            .first()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| MoveError::Refused("the mover has no actor".into()))?;
        let _guard = self.apply.lock().await;
        self.refresh_moves_locked().await?;
        let household = self.take_doc(household_id).await?;
        let from = match household {
            Some(h) if h.kind == Some(Kind::Household) => {
                let grid = h.grid_id.clone();
                self.put_doc(household_id.to_string(), h);
                grid
            }
            Some(h) => {
                self.put_doc(household_id.to_string(), h);
                return Err(MoveError::Refused(format!(
                    "{household_id} is not a household"
                )));
            }
            None => {
                return Err(MoveError::Refused(format!(
                    "household {household_id} does not exist"
                )));
            }
        };
        if !mover.grids.contains(&from) {
            return Err(MoveError::Refused(format!(
                "household {household_id} does not exist"
            )));
        }
        if from == to {
            return Err(MoveError::Refused(format!(
                "户已在网格 {to} the household is in grid {to} already"
            )));
        }
        // The household and every record with a household field naming it, deleted ones too.
        let q = RecordQuery {
            grids: mover.grids.clone(),
            kinds: KindFilter::Only(
                household_kinds()
                    .into_iter()
                    .chain([Kind::Household])
                    .collect(),
            ),
            household: Some(household_id.to_string()),
            include_deleted: true,
            ..RecordQuery::default()
        };
        let mut ids: Vec<String> = self
            .storage
            .list_records(&q)
            .await?
            .rows
            .into_iter()
            .filter(|r| r.row.grid_id != to)
            .map(|r| r.row.id)
            .collect();
        if !ids.iter().any(|id| id == household_id) {
            ids.insert(0, household_id.to_string());
        }
        let now = chrono::Utc::now();
        let mut commit = Commit::default();
        let mut touched = Vec::new();
        for id in &ids {
            let Some(mut cached) = self.take_doc(id).await? else {
                continue;
            };
            let from_grid = cached.grid_id.clone();
            let (left, arrived) = move_changes(&mut cached, &actor, &mover.username, to, now);
            let entry = |change: &automerge::Change, grid: &str| NewChange {
                grid_id: grid.to_string(),
                doc_id: id.clone(),
                kind: cached.kind,
                hash: change.hash().0,
                bytes: change.raw_bytes().to_vec(),
                device_id: mover.device_id.clone(),
                worker_id: mover.user_id.clone(),
                in_snapshot: false,
            };
            commit.changes.push(entry(&left, &from_grid));
            commit.changes.push(entry(&arrived, to));
            commit.moves.push(GridMove {
                doc_id: id.clone(),
                from_grid,
                to_grid: to.to_string(),
                left: left.hash().0,
                arrived: arrived.hash().0,
                moved_by: mover.user_id.clone(),
                seq: 0,
                moved_at: String::new(),
            });
            cached.grid_id = to.to_string();
            cached.since_snapshot += 2;
            let conflicts = gridsync_core::doc::has_conflicts(&cached.doc);
            commit
                .docs
                .push(super::doc_update(id, &mut cached, false, conflicts, None));
            touched.push((id.clone(), cached));
        }
        let stored = commit.changes.len();
        self.finish(commit, touched).await?;
        self.metrics.changes_accepted(stored);
        Ok(ids)
    }

    /// Learns the moves another process committed (`admin move-household` beside this relay):
    /// drops the moved documents' cached copies, which still say their old grid, and tells both
    /// grids' listeners. Called under the writers' lock before a copy is used.
    pub(super) async fn refresh_moves_locked(&self) -> Result<(), StorageError> {
        let mut seen = *self.moves_seen.lock().unwrap_or_else(|p| p.into_inner());
        let first = seen.is_none();
        let mut after = seen.unwrap_or(0);
        for _ in 0..MOVES_PAGES {
            let page = self.storage.moves_after(after, MOVES_PAGE).await?;
            let full = page.len() == MOVES_PAGE;
            for m in page {
                after = m.seq;
                if first {
                    continue;
                }
                self.lock_cache().pop(&m.doc_id);
                for grid_id in [m.from_grid, m.to_grid] {
                    self.notify(super::GridMoved {
                        grid_id,
                        seq: m.seq,
                    });
                }
            }
            if !full {
                break;
            }
        }
        seen = Some(after);
        *self.moves_seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        Ok(())
    }

    /// [`Relay::refresh_moves_locked`] from outside: a relay's timer calls it so that live
    /// sessions hear of a move made by another process.
    pub async fn refresh_moves(&self) -> Result<(), StorageError> {
        let _guard = self.apply.lock().await;
        self.refresh_moves_locked().await
    }
}

/// The move's two changes on the document: the one filed under the old grid, then the one
/// filed under the new grid.
fn move_changes(
    cached: &mut CachedDoc,
    actor: &ActorId,
    username: &str,
    to: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> (automerge::Change, automerge::Change) {
    cached.doc.set_actor(actor.clone());
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut one = |fields: &[(&str, &str)]| {
        let mut tx = cached.doc.transaction();
        for (name, value) in fields {
            // A put of a string on the root map never fails.
            let _ = tx.put(ROOT, *name, *value);
        }
        tx.commit_with(
            CommitOptions::default()
                .with_message(username.to_string())
                .with_time(now.timestamp()),
        );
        cached.doc.get_last_local_change()
    };
    // The second change must be a change of its own (Automerge makes none of a put that
    // changes nothing): it stamps the record as the mover's last update.
    let left = one(&[("grid_id", to)]);
    let arrived = one(&[("updated_at", &stamp), ("updated_by", username)]);
    let (Some(left), Some(arrived)) = (left, arrived) else {
        unreachable!("both changes put a new value")
    };
    (left, arrived)
}

/// Moves a household as the office user `username` would from the dashboard: the user must be
/// office staff or an admin with both grids in scope, and the grids of one community. The change
/// is made by the user's dashboard device (enrolled on first use). The dashboard's form and
/// `admin move-household` both come here. Returns the ids of the documents moved.
pub async fn move_as(
    relay: &Relay,
    accounts: &dyn AccountStore,
    username: &str,
    household_id: &str,
    to: &str,
) -> Result<Vec<String>, MoveError> {
    let user = accounts
        .user(username)
        .await?
        .filter(|u| u.active)
        .ok_or_else(|| MoveError::Refused(format!("no active user {username}")))?;
    let (grids, former_grids) = accounts.grids_of(&user).await?;
    let identity = dashboard_identity(accounts, &user, grids, former_grids).await?;
    let areas = accounts.areas().await?;
    let parent = |grid: &str| {
        areas
            .iter()
            .find(|a| a.id == grid && a.level == "grid")
            .map(|a| a.parent_id.clone())
    };
    let Some(community) = parent(to) else {
        return Err(MoveError::Refused(format!("{to} is not a grid")));
    };
    let from = relay
        .document(household_id)
        .await?
        .map(|r| r.grid_id)
        .ok_or_else(|| MoveError::Refused(format!("household {household_id} does not exist")))?;
    if parent(&from) != Some(community) {
        return Err(MoveError::Refused(format!(
            "只能调整到本社区的网格 grid {to} is not of the community of grid {from}"
        )));
    }
    relay.move_household(&identity, household_id, to).await
}

/// The identity of a staff member's dashboard device, enrolling one on first use (or when an
/// admin revoked it): office writes are logged and checked like any device's.
pub async fn dashboard_identity(
    accounts: &dyn AccountStore,
    user: &User,
    grids: Vec<String>,
    former_grids: Vec<String>,
) -> Result<Identity, StorageError> {
    let (device, actor) = match accounts.dashboard_device(&user.id).await? {
        Some((device, actor)) if device.revoked_at.is_none() => (device, actor),
        _ => {
            let (_, token_hash) = crate::accounts::new_token().map_err(StorageError::Database)?;
            let device = Device {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: user.id.clone(),
                name: format!("办公室网页端 office dashboard ({})", user.username),
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                last_seen_at: None,
                revoked_at: None,
            };
            let actor = ActorId::random().to_hex_string();
            accounts
                .set_dashboard_device(device.clone(), token_hash, actor.clone())
                .await?;
            (device, actor)
        }
    };
    Ok(Identity {
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        role: user.role,
        device_id: device.id,
        grids,
        former_grids,
        actors: vec![actor],
        readable_kinds: crate::storage::KindFilter::readable_by(user.role),
    })
}

/// Looks every [`MOVES_EVERY`] for moves another process (`admin move-household`) committed, so
/// that live sessions of both grids hear of them; ended by aborting the task.
pub async fn watch_moves(state: std::sync::Arc<crate::AppState>) {
    let mut tick = tokio::time::interval(MOVES_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = state.relay.refresh_moves().await {
            state.relay.metrics.storage_error();
            tracing::error!("reading grid moves failed: {e}");
        }
    }
}
