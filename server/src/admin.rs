//! `gridsync-server admin ...`: areas, users, grids, passwords, devices and API tokens, on the
//! server's store; backups of it, and restores; the purge of attachments no record names; the
//! move of a SQLite relay's store into PostgreSQL (`migrate`, in `admin/migrate.rs`).
//!
//! It works on the data directory directly, or on the PostgreSQL database `--database` names, so
//! it runs beside a serving relay (SQLite allows a second writer to wait its turn); only
//! `restore` and `migrate` need the SQLite relay stopped, and on PostgreSQL `backup` and
//! `restore` are pg_dump's. The relay learns of a change only through the database: a
//! revoked device is refused from its next message on, an open session of a reassigned user
//! ends before it sends or accepts anything more, and a dashboard page's event stream ends
//! within seconds of its session.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use gridsync_core::record::attachment::hash_text;

use crate::accounts::{self, AccountStore, ApiToken, Area, NewUser, Role};
use crate::attachments::{self, Purged};
use crate::storage::{FsBlobStore, PostgresStorage, SqliteStorage, Storage, StorageError};

mod migrate;
pub use migrate::{BlobCopy, Migrated, migrate};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Areas: county > street > community > grid. 区域：县 > 街道 > 社区 > 网格
    #[command(subcommand)]
    Area(AreaCommand),
    /// Accounts and the areas they work in. 账号
    #[command(subcommand)]
    User(UserCommand),
    /// Signed-in devices. 设备
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Writes a consistent copy of the whole store (records, log, accounts, devices) to FILE,
    /// while the relay serves. An older FILE is replaced only once the new copy is whole.
    /// 在线备份
    Backup {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Replaces the store by the backup FILE. Stop the relay first: a store in use is refused.
    /// The replaced store is kept beside it; devices repair at their next sync, and devices
    /// signed in after the backup was made sign in again. 从备份恢复（需先停止服务器）
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Tokens other systems read the API under /api/v1 with. 接口令牌
    #[command(subcommand)]
    Token(TokenCommand),
    /// Removes the attachments no record has named for the grace period (`attachment-grace-days`)
    /// and the uploads nobody continued for as long, as the relay does once a day, and lists
    /// them; beside a running relay too. 清除无记录引用的附件和中断的上传
    PurgeAttachments {
        /// Only list what would be removed. 只列出，不删除
        #[arg(long)]
        dry_run: bool,
    },
    /// Moves a household, with its private part and every record that names it (visits,
    /// cases, tasks), to another grid of its community, as the dashboard's form does; beside a
    /// running relay too. 调整网格：把户及其走访、个案等记录调整到本社区的另一个网格
    MoveHousehold {
        #[arg(value_name = "HOUSEHOLD_ID")]
        household: String,
        /// The grid to move it to. 调整到的网格
        #[arg(long, value_name = "GRID")]
        to: String,
        /// The office or admin user the move is recorded as (default: the first active admin
        /// by username). 记录为谁调整
        #[arg(long, value_name = "USERNAME")]
        by: Option<String>,
    },
    /// Moves everything the SQLite relay in DIR stores into the PostgreSQL database URL: an
    /// exact copy into an empty database (devices keep their cursors), a merge into one that
    /// holds other communities (clashing ids refused before anything is written; devices
    /// repair). Stop the relay on DIR first: a store in use is refused. Attachments' files are
    /// copied to the data directory (`--data-dir`) when it is given and not DIR.
    /// 从 SQLite 服务器迁移到县里的 PostgreSQL（需先停止该服务器）
    Migrate {
        /// The SQLite relay's data directory. SQLite 服务器的数据目录
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database, postgres://user@host:port/name. 目标数据库
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AreaCommand {
    Add {
        id: String,
        #[arg(long)]
        name: String,
        /// county, street, community or grid
        #[arg(long)]
        level: String,
        #[arg(long)]
        parent: Option<String>,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Adds a user; the password is read from standard input.
    Add {
        username: String,
        #[arg(long)]
        name: String,
        /// grid_worker, volunteer, office or admin
        #[arg(long)]
        role: String,
        /// Grids (workers, volunteers) or a community (office staff); repeat for several.
        #[arg(long = "area")]
        areas: Vec<String>,
    },
    List,
    /// Replaces the areas a user works in. Open sync sessions end at once and reconnect with the
    /// new grids; devices stop receiving grids the user leaves, and purge them after their
    /// unsent changes there have been accepted.
    Assign {
        username: String,
        #[arg(long = "area", required = true)]
        areas: Vec<String>,
    },
    /// Sets a new password, read from standard input, and signs the user's browsers out of the
    /// dashboard. Devices stay signed in: revoke a lost one with `device revoke`.
    Passwd {
        username: String,
    },
    /// Revokes every device of the user at once (they erase their data at next contact) and
    /// signs them out of the dashboard. For good: activating them again revives neither.
    Deactivate {
        username: String,
    },
    /// Lets a deactivated user sign in again, on their devices anew.
    Activate {
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revokes a device (a lost phone): its token stops working and it erases its data.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Makes a read-only token for another system (the street office's, the county's) and
    /// prints it, once: the relay keeps only its hash.
    Add {
        /// Whose system it is (shown in `token list`).
        name: String,
        /// It reads the grids at or below these areas; repeat for several.
        #[arg(long = "area", required = true)]
        areas: Vec<String>,
        /// It also reads residents' sensitive data (ID numbers, health, disability, benefits,
        /// volunteers' phones); without it those are left out of every answer.
        #[arg(long)]
        sensitive: bool,
    },
    List,
    /// Revokes a token at once and for good: its next request gets 401.
    Revoke {
        id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

type Result<T> = std::result::Result<T, AdminError>;

/// Runs one admin command; returns what to print.
pub async fn run(
    store: &dyn AccountStore,
    command: AdminCommand,
    stdin: &mut dyn BufRead,
) -> Result<String> {
    match command {
        AdminCommand::Area(AreaCommand::Add {
            id,
            name,
            level,
            parent,
        }) => {
            if !["county", "street", "community", "grid"].contains(&level.as_str()) {
                return Err(AdminError::Invalid(format!(
                    "unknown level `{level}`: use county, street, community or grid"
                )));
            }
            store
                .add_area(Area {
                    id: id.clone(),
                    parent_id: parent,
                    level,
                    name,
                })
                .await?;
            Ok(format!("已添加区域 area added: {id}"))
        }
        AdminCommand::Area(AreaCommand::List) => Ok(std::iter::once(
            "编号 id\t级别 level\t名称 name\t上级 parent".to_string(),
        )
        .chain(store.areas().await?.iter().map(|a| {
            format!(
                "{}\t{}\t{}\t{}",
                a.id,
                a.level,
                a.name,
                a.parent_id.as_deref().unwrap_or("-")
            )
        }))
        .collect::<Vec<_>>()
        .join("\n")),
        AdminCommand::User(cmd) => user(store, cmd, stdin).await,
        AdminCommand::Token(cmd) => token(store, cmd).await,
        AdminCommand::Device(DeviceCommand::List { user }) => {
            let owners: std::collections::HashMap<String, String> = store
                .users()
                .await?
                .into_iter()
                .map(|u| (u.id, u.username))
                .collect();
            let mut lines = vec![
                "编号 id\t用户 user\t名称 name\t登记 created\t最近同步 last seen\t状态 state"
                    .to_string(),
            ];
            for d in store.devices(user.as_deref()).await? {
                lines.push(format!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    d.id,
                    owners.get(&d.user_id).map_or("?", String::as_str),
                    d.name,
                    d.created_at,
                    d.last_seen_at.as_deref().unwrap_or("never"),
                    d.revoked_at
                        .as_ref()
                        .map_or("active".to_string(), |t| format!("revoked {t}"))
                ));
            }
            Ok(lines.join("\n"))
        }
        AdminCommand::Backup { .. }
        | AdminCommand::Restore { .. }
        | AdminCommand::PurgeAttachments { .. }
        | AdminCommand::MoveHousehold { .. }
        | AdminCommand::Migrate { .. } => Err(AdminError::Invalid(
            "backup, restore, purge-attachments, move-household and migrate work on the data \
             directory, not on an open store: see admin::backup, admin::restore, \
             admin::purge_attachments, admin::move_household and admin::migrate"
                .into(),
        )),
        AdminCommand::Device(DeviceCommand::Revoke { id }) => {
            if store.revoke_device(&id).await? {
                Ok(format!("已停用设备 device revoked: {id}"))
            } else {
                Err(AdminError::Invalid(format!("no device {id}")))
            }
        }
    }
}

async fn user(
    store: &dyn AccountStore,
    cmd: UserCommand,
    stdin: &mut dyn BufRead,
) -> Result<String> {
    let find = |username: String| async move {
        store
            .user(&username)
            .await?
            .ok_or_else(|| AdminError::Invalid(format!("no user {username}")))
    };
    match cmd {
        UserCommand::Add {
            username,
            name,
            role,
            areas,
        } => {
            accounts::check_username(&username).map_err(AdminError::Invalid)?;
            let role: Role = role.parse().map_err(AdminError::Invalid)?;
            // Every area must exist before the account does: a typo creates nothing.
            let known = store.areas().await?;
            if let Some(missing) = areas.iter().find(|a| !known.iter().any(|k| &k.id == *a)) {
                return Err(AdminError::Invalid(format!(
                    "没有区域 {missing}，未创建用户 no area {missing}; the user was not created"
                )));
            }
            let password = read_password(stdin, &username)?;
            let hash = accounts::hash_password(&password).map_err(AdminError::Invalid)?;
            let user = store
                .add_user(NewUser {
                    username: username.clone(),
                    display_name: name,
                    role,
                    password_hash: hash,
                })
                .await?;
            store.set_user_areas(&user.id, &areas).await?;
            Ok(format!("已添加用户 user added: {username} ({role})"))
        }
        UserCommand::List => {
            let mut lines = vec![
                "用户名 username\t姓名 name\t角色 role\t状态 state\t区域 areas\t网格 grids"
                    .to_string(),
            ];
            for u in store.users().await? {
                let (grids, _) = store.grids_of(&u).await?;
                let areas = store.user_areas(&u.id).await?;
                lines.push(format!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    u.username,
                    u.display_name,
                    u.role,
                    if u.active { "active" } else { "deactivated" },
                    areas.join(","),
                    grids.join(",")
                ));
            }
            Ok(lines.join("\n"))
        }
        UserCommand::Assign { username, areas } => {
            let user = find(username.clone()).await?;
            store.set_user_areas(&user.id, &areas).await?;
            Ok(format!("已调整 assigned {username}: {}", areas.join(", ")))
        }
        UserCommand::Passwd { username } => {
            let user = find(username.clone()).await?;
            let password = read_password(stdin, &username)?;
            let hash = accounts::hash_password(&password).map_err(AdminError::Invalid)?;
            store.set_password(&user.id, &hash).await?;
            Ok(format!(
                "已重设密码，网页端已退出 password reset, dashboard sessions ended: {username}"
            ))
        }
        UserCommand::Deactivate { username } => {
            let user = find(username.clone()).await?;
            store.set_active(&user.id, false).await?;
            Ok(format!(
                "已停用账号及其全部设备 user deactivated, every device revoked: {username}"
            ))
        }
        UserCommand::Activate { username } => {
            let user = find(username.clone()).await?;
            store.set_active(&user.id, true).await?;
            Ok(format!(
                "已启用账号，请在设备上重新登录 user activated; they sign in again on their devices: {username}"
            ))
        }
    }
}

/// What `admin backup` and `admin restore` answer on PostgreSQL: its own tools do both.
pub const NOT_ON_POSTGRES: &str = "备份与恢复 PostgreSQL 数据库请用 pg_dump 与 pg_restore（或持续归档做时间点恢复），\
     见 docs/operations.md「PostgreSQL」；附件文件在数据目录下，另行备份。 admin backup and restore work on \
     the SQLite store only: back a PostgreSQL database up with pg_dump and restore it with \
     pg_restore (or continuous archiving for point-in-time recovery), see docs/operations.md, \
     \"PostgreSQL\"; back up the attachments under the data directory beside it.";

/// Runs one admin command on the store `config` names (the PostgreSQL database of
/// `config.database`, else SQLite under `config.data_dir`); returns what to print.
pub async fn execute(
    config: &crate::Config,
    command: AdminCommand,
    stdin: &mut dyn BufRead,
) -> Result<String> {
    let grace = config.limits.attachment_grace;
    match (&config.database, command) {
        (_, AdminCommand::Migrate { from, to }) => {
            // The PostgreSQL relay's data directory, if the operator named one.
            let given = config.data_dir != crate::Config::default().data_dir;
            let blobs_to = given.then_some(config.data_dir.as_path());
            Ok(migrate(&from, &to, blobs_to).await?.report())
        }
        (Some(_), AdminCommand::Backup { .. } | AdminCommand::Restore { .. }) => {
            Err(AdminError::Invalid(NOT_ON_POSTGRES.into()))
        }
        (None, AdminCommand::Backup { file }) => backup(&config.data_dir, &file).await,
        (None, AdminCommand::Restore { file }) => restore(&config.data_dir, &file).await,
        (Some(url), AdminCommand::PurgeAttachments { dry_run }) => {
            let storage = PostgresStorage::connect(url).await?;
            let blobs = FsBlobStore::new(&config.data_dir);
            let purged = attachments::purge(&storage, blobs.as_ref(), grace, dry_run).await?;
            Ok(purge_report(&purged, grace, dry_run))
        }
        (None, AdminCommand::PurgeAttachments { dry_run }) => {
            purge_attachments(&config.data_dir, grace, dry_run).await
        }
        (Some(url), AdminCommand::MoveHousehold { household, to, by }) => {
            let storage = Arc::new(PostgresStorage::connect(url).await?);
            move_household_in(storage, &household, &to, by.as_deref()).await
        }
        (None, AdminCommand::MoveHousehold { household, to, by }) => {
            move_household(&config.data_dir, &household, &to, by.as_deref()).await
        }
        (Some(url), command) => run(&PostgresStorage::connect(url).await?, command, stdin).await,
        (None, command) => {
            let store = SqliteStorage::open(&config.data_dir).map_err(|e| {
                AdminError::Invalid(format!(
                    "无法打开 cannot open the store in {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            run(&store, command, stdin).await
        }
    }
}

/// `admin backup FILE`: an online backup of the store in `data_dir`.
pub async fn backup(data_dir: &Path, file: &Path) -> Result<String> {
    let (dir, path) = (data_dir.to_path_buf(), file.to_path_buf());
    let summary = blocking(move || SqliteStorage::backup(&dir, &path)).await?;
    Ok(format!(
        "已备份 backup written: {} ({} KiB; {} changes in the log, up to seq {}; server {})",
        file.display(),
        summary.bytes.div_ceil(1024),
        summary.log_entries,
        summary.last_seq,
        summary.server_id
    ))
}

/// `admin restore FILE`: the store in `data_dir` replaced by a backup, the relay stopped.
pub async fn restore(data_dir: &Path, file: &Path) -> Result<String> {
    let (dir, path) = (data_dir.to_path_buf(), file.to_path_buf());
    let restored = blocking(move || SqliteStorage::restore(&dir, &path)).await?;
    let summary = &restored.summary;
    let kept = match &restored.replaced {
        Some(kept) => format!(
            "\n原数据已保留为 the store it replaced is kept as {} (delete it once the relay \
             serves as it should)",
            kept.display()
        ),
        None => String::new(),
    };
    Ok(format!(
        "已恢复 restored {} into {} ({} changes in the log, up to seq {}; server {}).{kept}\n\
         启动服务器后，设备在下次同步时自动修复；备份之后登录的设备需重新登录。\n\
         Start the relay: devices repair their grids at their next sync and give back what the \
         backup lacks; devices signed in after the backup was made must sign in again.",
        file.display(),
        data_dir.display(),
        summary.log_entries,
        summary.last_seq,
        summary.server_id
    ))
}

/// `admin purge-attachments [--dry-run]`: [`attachments::purge`] on the store and the
/// attachments in `data_dir`, with the configured grace period; what it removed (or would).
pub async fn purge_attachments(data_dir: &Path, grace: Duration, dry_run: bool) -> Result<String> {
    let storage = SqliteStorage::open(data_dir)?;
    let blobs = FsBlobStore::new(data_dir);
    let purged = attachments::purge(&storage, blobs.as_ref(), grace, dry_run).await?;
    Ok(purge_report(&purged, grace, dry_run))
}

/// `admin move-household HOUSEHOLD_ID --to GRID [--by USERNAME]`: [`crate::relay::move_as`]
/// on the store in `data_dir`. A relay serving it learns of the move at its next write or within
/// seconds (`Relay::refresh_moves`), and its devices then as after a move from the dashboard.
pub async fn move_household(
    data_dir: &Path,
    household: &str,
    to: &str,
    by: Option<&str>,
) -> Result<String> {
    move_household_in(Arc::new(SqliteStorage::open(data_dir)?), household, to, by).await
}

/// `admin move-household` on any store (the SQLite one under the data dir, or PostgreSQL).
async fn move_household_in<S: Storage + AccountStore>(
    storage: Arc<S>,
    household: &str,
    to: &str,
    by: Option<&str>,
) -> Result<String> {
    let by = match by {
        Some(by) => by.to_string(),
        None => {
            let mut admins: Vec<_> = storage
                .users()
                .await?
                .into_iter()
                .filter(|u| u.active && u.role == Role::Admin)
                .map(|u| u.username)
                .collect();
            admins.sort();
            admins.into_iter().next().ok_or_else(|| {
                AdminError::Invalid("no active admin: name the mover with --by USERNAME".into())
            })?
        }
    };
    let relay = crate::relay::Relay::new(storage.clone(), 16);
    let moved = crate::relay::move_as(&relay, storage.as_ref(), &by, household, to)
        .await
        .map_err(|e| match e {
            crate::relay::MoveError::Refused(why) => AdminError::Invalid(why),
            crate::relay::MoveError::Storage(e) => AdminError::Storage(e),
        })?;
    Ok(format!(
        "已调整到网格 {to}：{} 条记录 moved to grid {to}: {} records ({}), by {by}",
        moved.len(),
        moved.len(),
        moved.join(", ")
    ))
}

fn purge_report(purged: &Purged, grace: Duration, dry_run: bool) -> String {
    let days = grace.as_secs() / (24 * 3600);
    let all = purged.unnamed.iter().chain(&purged.abandoned);
    let (count, bytes) = all.fold((0usize, 0u64), |(n, b), (_, size)| (n + 1, b + size));
    let (unnamed, abandoned) = (purged.unnamed.len(), purged.abandoned.len());
    let mut lines = vec![if count == 0 {
        format!("没有可清除的附件（宽限期 {days} 天） nothing to purge (grace period {days} days)")
    } else if dry_run {
        format!(
            "试运行，未删除任何文件：将清除 {count} 项，共 {bytes} 字节（无记录引用的附件 \
             {unnamed} 个，中断的上传 {abandoned} 个；宽限期 {days} 天） dry run, nothing \
             removed: would purge {count}, {bytes} bytes ({unnamed} attachments no record \
             names, {abandoned} abandoned uploads; grace period {days} days)"
        )
    } else {
        format!(
            "已清除 {count} 项，共 {bytes} 字节（无记录引用的附件 {unnamed} 个，中断的上传 \
             {abandoned} 个；宽限期 {days} 天） purged {count}, {bytes} bytes ({unnamed} \
             attachments no record names, {abandoned} abandoned uploads; grace period {days} \
             days)"
        )
    }];
    if count > 0 {
        lines.push("类别 kind\t摘要 hash\t字节 bytes".to_string());
        let rows = (purged.unnamed.iter().map(|b| ("无引用 unnamed", b)))
            .chain(purged.abandoned.iter().map(|b| ("未完成 partial", b)));
        for (kind, (hash, size)) in rows {
            lines.push(format!("{kind}\t{}\t{size}", hash_text(hash)));
        }
    }
    lines.join("\n")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, StorageError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError::Invalid(format!("the task failed: {e}")))?
        .map_err(AdminError::from)
}

async fn token(store: &dyn AccountStore, cmd: TokenCommand) -> Result<String> {
    match cmd {
        TokenCommand::Add {
            name,
            areas,
            sensitive,
        } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err(AdminError::Invalid(
                    "令牌名称须为 1 到 100 个字符，不含控制字符 the token's name must be 1 to 100 \
                     characters without control characters"
                        .into(),
                ));
            }
            let (secret, hash) = accounts::new_api_token().map_err(AdminError::Invalid)?;
            let id = uuid::Uuid::now_v7().to_string();
            let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            store
                .add_api_token(
                    ApiToken {
                        id: id.clone(),
                        name: name.clone(),
                        areas,
                        sensitive,
                        created_at,
                        last_used_at: None,
                        revoked_at: None,
                    },
                    hash,
                )
                .await?;
            let reads = if sensitive {
                "含敏感信息 with sensitive data"
            } else {
                "不含敏感信息 without sensitive data"
            };
            Ok(format!(
                "已创建接口令牌 API token created: {id} ({name}, {reads})\n\
                 令牌只显示这一次，请妥善保存 the token is shown only this once; keep it safe:\n\
                 {secret}"
            ))
        }
        TokenCommand::List => {
            let mut lines = vec![
                "编号 id\t名称 name\t区域 areas\t敏感信息 sensitive\t创建 created\t最近使用 last used\t状态 state"
                    .to_string(),
            ];
            for t in store.api_tokens().await? {
                lines.push(format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    t.areas.join(","),
                    if t.sensitive { "yes" } else { "no" },
                    t.created_at,
                    t.last_used_at.as_deref().unwrap_or("never"),
                    t.revoked_at
                        .as_ref()
                        .map_or("active".to_string(), |at| format!("revoked {at}"))
                ));
            }
            Ok(lines.join("\n"))
        }
        TokenCommand::Revoke { id } => {
            if store.revoke_api_token(&id).await? {
                Ok(format!("已停用接口令牌 API token revoked: {id}"))
            } else {
                Err(AdminError::Invalid(format!(
                    "没有令牌 {id} no API token {id}"
                )))
            }
        }
    }
}

/// The new password of `username`, one line of standard input, if it is strong enough
/// ([`accounts::check_new_password`]).
fn read_password(stdin: &mut dyn BufRead, username: &str) -> Result<String> {
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .map_err(|e| AdminError::Invalid(format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    accounts::check_new_password(username, &password).map_err(AdminError::Invalid)?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use gridsync_core::protocol::Hash;

    use super::*;
    use crate::accounts::ApiTokenStore;
    use crate::storage::SqliteStorage;

    async fn store() -> (tempfile::TempDir, SqliteStorage) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStorage::open(dir.path()).unwrap();
        let add = AdminCommand::Area(AreaCommand::Add {
            id: "g1".into(),
            name: "第一网格".into(),
            level: "grid".into(),
            parent: None,
        });
        run(&store, add, &mut &b""[..]).await.unwrap();
        (dir, store)
    }

    async fn add(
        store: &SqliteStorage,
        username: &str,
        area: &str,
        password: &str,
    ) -> Result<String> {
        let cmd = AdminCommand::User(UserCommand::Add {
            username: username.into(),
            name: "王芳".into(),
            role: "grid_worker".into(),
            areas: vec![area.into()],
        });
        run(store, cmd, &mut format!("{password}\n").as_bytes()).await
    }

    #[tokio::test]
    async fn test_lists_have_a_header_and_show_an_office_users_community() {
        let (_dir, store) = store().await;
        let community = AdminCommand::Area(AreaCommand::Add {
            id: "m1".into(),
            name: "和平社区".into(),
            level: "community".into(),
            parent: None,
        });
        run(&store, community, &mut &b""[..]).await.unwrap();
        let office = AdminCommand::User(UserCommand::Add {
            username: "zhou".into(),
            name: "周主任".into(),
            role: "office".into(),
            areas: vec!["m1".into()],
        });
        run(&store, office, &mut &b"office-pass-2026\n"[..])
            .await
            .unwrap();
        let users = run(&store, AdminCommand::User(UserCommand::List), &mut &b""[..])
            .await
            .unwrap();
        let lines: Vec<&str> = users.lines().collect();
        assert!(lines[0].starts_with("用户名 username\t"), "{users}");
        let zhou: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(zhou[0], "zhou");
        assert_eq!(zhou[4], "m1", "the area as assigned: {users}");
        let devices = run(
            &store,
            AdminCommand::Device(DeviceCommand::List { user: None }),
            &mut &b""[..],
        )
        .await
        .unwrap();
        assert!(devices.starts_with("编号 id\t用户 user\t"), "{devices}");
        let areas = run(&store, AdminCommand::Area(AreaCommand::List), &mut &b""[..])
            .await
            .unwrap();
        assert!(areas.starts_with("编号 id\t级别 level"), "{areas}");
    }

    #[tokio::test]
    async fn test_a_token_is_printed_once_listed_with_a_header_and_revoked() {
        let (_dir, store) = store().await;
        let add = |areas: Vec<String>| {
            AdminCommand::Token(TokenCommand::Add {
                name: "街道办系统 street office".into(),
                areas,
                sensitive: false,
            })
        };
        let err = run(&store, add(vec!["nowhere".into()]), &mut &b""[..])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
        let out = run(&store, add(vec!["g1".into()]), &mut &b""[..])
            .await
            .unwrap();
        let secret = out.lines().last().unwrap();
        assert!(secret.starts_with(accounts::API_TOKEN_PREFIX), "{out}");
        let hash = accounts::token_hash(secret);
        let (token, grids) = store.api_token_by_hash(&hash).await.unwrap().unwrap();
        assert_eq!((grids, token.sensitive), (vec!["g1".to_string()], false));
        assert!(out.contains(&token.id), "{out}");

        let list = run(
            &store,
            AdminCommand::Token(TokenCommand::List),
            &mut &b""[..],
        )
        .await
        .unwrap();
        let lines: Vec<&str> = list.lines().collect();
        assert!(
            lines[0].starts_with("编号 id\t名称 name\t区域 areas"),
            "{list}"
        );
        assert_eq!(
            lines.len(),
            2,
            "one token, the failed one stored nothing: {list}"
        );
        assert!(lines[1].contains("\tg1\tno\t") && lines[1].ends_with("active"));
        assert!(!list.contains(secret), "the list never shows the secret");

        let revoke = AdminCommand::Token(TokenCommand::Revoke {
            id: token.id.clone(),
        });
        run(&store, revoke, &mut &b""[..]).await.unwrap();
        let list = run(
            &store,
            AdminCommand::Token(TokenCommand::List),
            &mut &b""[..],
        )
        .await
        .unwrap();
        assert!(
            list.lines().nth(1).unwrap().contains("\trevoked "),
            "{list}"
        );
        let unknown = AdminCommand::Token(TokenCommand::Revoke { id: "nope".into() });
        assert!(run(&store, unknown, &mut &b""[..]).await.is_err());
    }

    #[tokio::test]
    async fn test_weak_passwords_are_refused_and_create_no_user() {
        let (_dir, store) = store().await;
        for weak in [
            "        ",
            "          ",
            "12345678",
            "1234567890",
            "0987654321",
            "abcdefghijk",
            "qwertyuiop",
            "Password123",
            "aaaaaaaaaaaa",
            "abababababab",
            "short-pw",
            "wangfang2026",
        ] {
            let err = add(&store, "wangfang2026", "g1", weak).await.unwrap_err();
            assert!(err.to_string().contains("密码"), "{weak:?}: {err}");
            assert!(
                store.user("wangfang2026").await.unwrap().is_none(),
                "{weak:?}"
            );
        }
        for strong in ["wang-pass-2026", "correct horse 电池"] {
            let username = format!("u{}", strong.len());
            add(&store, &username, "g1", strong).await.unwrap();
        }
    }

    #[tokio::test]
    async fn test_passwd_refuses_a_weak_password_and_keeps_the_old_one() {
        let (_dir, store) = store().await;
        add(&store, "wang", "g1", "wang-pass-2026").await.unwrap();
        let before = store.user("wang").await.unwrap().unwrap().password_hash;
        let cmd = AdminCommand::User(UserCommand::Passwd {
            username: "wang".into(),
        });
        let err = run(&store, cmd, &mut &b"12345678\n"[..]).await.unwrap_err();
        assert!(err.to_string().contains("密码"), "{err}");
        let after = store.user("wang").await.unwrap().unwrap().password_hash;
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn test_empty_or_odd_usernames_are_refused() {
        let (_dir, store) = store().await;
        for bad in [
            "",
            " ",
            "Wang",
            "wang fang",
            "王芳",
            "-wang",
            "../wang",
            "wang\n",
        ] {
            let err = add(&store, bad, "g1", "wang-pass-2026").await.unwrap_err();
            assert!(err.to_string().contains("用户名"), "{bad:?}: {err}");
        }
        assert!(store.users().await.unwrap().is_empty());
        add(&store, "wang.fang-2_0", "g1", "wang-pass-2026")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn test_purge_attachments_removes_the_unnamed_and_abandoned_and_dry_run_only_lists_them()
    {
        use crate::attachments::tests::{name, stored};
        use crate::storage::{Attachments, BlobStore, blobs::Stand};

        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let blobs = FsBlobStore::new(dir.path());
        let week = Duration::from_secs(7 * 24 * 3600);
        let named = stored(&storage, blobs.as_ref(), b"a named photo").await;
        let old = stored(&storage, blobs.as_ref(), &vec![1u8; 200_000]).await;
        name(&storage, "v1", &[(named, 13), (old, 200_000)]).await;
        // `old` unnamed since a purge of long ago; `fresh` unnamed only from now on.
        name(&storage, "v1", &[(named, 13)]).await;
        storage
            .orphan_blobs("2020-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let fresh = stored(&storage, blobs.as_ref(), b"unnamed since today").await;
        // An upload abandoned eight days ago, and one under way.
        let stale: Hash = [0xab; 32];
        let going: Hash = [0xcd; 32];
        blobs.append(&stale, 0, &[5u8; 70_000]).await.unwrap();
        blobs.append(&going, 0, b"begun").await.unwrap();
        let partial = dir
            .path()
            .join("attachments/partial")
            .join(hash_text(&stale));
        std::fs::File::options()
            .write(true)
            .open(&partial)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600))
            .unwrap();
        let gone = |out: &str| {
            [old, stale].iter().all(|h| out.contains(&hash_text(h)))
                && ![named, fresh, going]
                    .iter()
                    .any(|h| out.contains(&hash_text(h)))
        };

        let dry = purge_attachments(dir.path(), week, true).await.unwrap();
        assert!(
            dry.starts_with("试运行，未删除任何文件：将清除 2 项，共 270000 字节"),
            "{dry}"
        );
        assert!(dry.contains("grace period 7 days"), "{dry}");
        assert!(gone(&dry), "{dry}");
        assert!(dry.contains(&format!("无引用 unnamed\t{}\t200000", hash_text(&old))));
        assert!(dry.contains(&format!("未完成 partial\t{}\t70000", hash_text(&stale))));
        for h in [named, old, fresh] {
            assert!(matches!(blobs.stand(&h).await.unwrap(), Stand::Complete(_)));
        }
        assert_eq!(blobs.stand(&stale).await.unwrap(), Stand::Partial(70_000));
        assert!(storage.stored_blob(&old).await.unwrap().is_some());

        let out = purge_attachments(dir.path(), week, false).await.unwrap();
        assert!(
            out.starts_with("已清除 2 项，共 270000 字节（无记录引用的附件 1 个，中断的上传 1 个"),
            "{out}"
        );
        assert_eq!(
            out.lines().skip(1).collect::<Vec<_>>(),
            dry.lines().skip(1).collect::<Vec<_>>(),
            "the same as the dry run listed"
        );
        assert_eq!(blobs.stand(&old).await.unwrap(), Stand::Missing);
        assert_eq!(blobs.stand(&stale).await.unwrap(), Stand::Missing);
        assert!(storage.stored_blob(&old).await.unwrap().is_none());
        for h in [named, fresh] {
            assert!(matches!(blobs.stand(&h).await.unwrap(), Stand::Complete(_)));
            assert!(storage.stored_blob(&h).await.unwrap().is_some());
        }
        assert_eq!(blobs.stand(&going).await.unwrap(), Stand::Partial(5));
        let again = purge_attachments(dir.path(), week, false).await.unwrap();
        assert!(
            again.starts_with("没有可清除的附件（宽限期 7 天）"),
            "{again}"
        );
    }

    #[tokio::test]
    async fn test_user_add_with_an_unknown_area_creates_no_user() {
        let (_dir, store) = store().await;
        let err = add(&store, "wang", "nosucharea", "wang-pass-2026")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nosucharea"), "{err}");
        assert!(
            store.user("wang").await.unwrap().is_none(),
            "no user was created"
        );
        add(&store, "wang", "g1", "wang-pass-2026").await.unwrap();
    }
}
