//! Signing a device in: password check, throttling, device enrolment.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use gridsync_core::protocol::{LoginRequest, LoginResponse};

use super::{AccountStore, Device, new_token, verify_password};
use crate::storage::StorageError;

/// Failed attempts allowed per username (and, more loosely, per address) in [`WINDOW`].
const MAX_FAILURES_PER_USER: usize = 5;
const MAX_FAILURES_PER_ADDR: usize = 20;
const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("用户名或密码错误 wrong username or password")]
    BadCredentials,
    #[error("尝试次数过多，请 {0} 秒后再试 too many failed attempts; try again in {0} s")]
    Throttled(u64),
    #[error("该账号已停用 this account is deactivated")]
    Inactive,
    #[error(
        "该账号已登记 {0} 台设备，已达上限：请管理员先停用一台旧设备（gridsync-server admin device \
         revoke <id>）再登录 this account already has {0} devices, the most allowed: ask an admin \
         to revoke an old one (gridsync-server admin device revoke <id>), then sign in again"
    )]
    TooManyDevices(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Counts recent failures in memory. A restart forgets them, which only ever helps the user.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    fn key_user(username: &str) -> String {
        format!("u:{}", username.to_lowercase())
    }

    fn key_addr(addr: IpAddr) -> String {
        format!("a:{addr}")
    }

    /// Seconds to wait, if either key is over its limit.
    pub(crate) fn blocked(&self, username: &str, addr: IpAddr) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for (key, max) in [
            (Self::key_user(username), MAX_FAILURES_PER_USER),
            (Self::key_addr(addr), MAX_FAILURES_PER_ADDR),
        ] {
            if let Some(times) = map.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > WINDOW)
                {
                    times.pop_front();
                }
                if times.len() >= max {
                    let oldest = times.front().copied().unwrap_or(now);
                    let secs = WINDOW.saturating_sub(now.duration_since(oldest)).as_secs() + 1;
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
                }
            }
        }
        wait
    }

    pub(crate) fn failed(&self, username: &str, addr: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded memory under a flood of random usernames: forget everything past a size.
        if map.len() > 100_000 {
            map.clear();
        }
        for key in [Self::key_user(username), Self::key_addr(addr)] {
            map.entry(key).or_default().push_back(Instant::now());
        }
    }

    pub(crate) fn succeeded(&self, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::key_user(username));
    }
}

/// Checks the password and enrols a new device for the user, unless they already have
/// `max_devices` that are not revoked.
pub async fn login(
    accounts: &dyn AccountStore,
    limiter: &LoginLimiter,
    addr: IpAddr,
    req: LoginRequest,
    max_devices: usize,
) -> Result<LoginResponse, LoginError> {
    if req.actor.len() != 32 || !req.actor.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(LoginError::BadRequest(
            "actor must be the replica's 16-byte Automerge actor id in hex".into(),
        ));
    }
    if let Some(wait) = limiter.blocked(&req.username, addr) {
        return Err(LoginError::Throttled(wait));
    }
    let user = accounts.user(&req.username).await?;
    let Some(user) = user.filter(|u| verify_password(&req.password, &u.password_hash)) else {
        limiter.failed(&req.username, addr);
        return Err(LoginError::BadCredentials);
    };
    if !user.active {
        return Err(LoginError::Inactive);
    }
    limiter.succeeded(&req.username);
    let (token, token_hash) = new_token().map_err(LoginError::BadRequest)?;
    let device = Device {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.id.clone(),
        name: if req.device_name.trim().is_empty() {
            format!("{}的设备", user.display_name)
        } else {
            req.device_name.chars().take(100).collect()
        },
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        last_seen_at: None,
        revoked_at: None,
    };
    let enrolled = accounts
        .add_device(
            device.clone(),
            token_hash,
            vec![req.actor.to_lowercase()],
            max_devices,
        )
        .await
        .map_err(|e| match e {
            StorageError::Invalid(m) => LoginError::BadRequest(m),
            other => LoginError::Storage(other),
        })?;
    if !enrolled {
        return Err(LoginError::TooManyDevices(max_devices));
    }
    let (grids, _) = accounts.grids_of(&user).await?;
    Ok(LoginResponse {
        device_id: device.id,
        token,
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        role: user.role.as_str().to_string(),
        grids,
    })
}
