//! Signing in: password check, throttling, device enrolment.
//!
//! The throttle counts failures against three keys, each with its own allowance, after which
//! every further attempt on that key waits [`FIRST_WAIT`] after the last failure, doubling with
//! each failure up to [`MAX_WAIT`]:
//!
//! - the account from one address (5 free): what slows a guesser down without touching the
//!   owner's other devices;
//! - the account from every address (20 free, looser): a cap on guessers spread over many
//!   addresses;
//! - the address across accounts (20 free): password spraying from one place.
//!
//! An address the account signed in from before ([`KNOWN_FOR`]) is a known device: the
//! account-wide and address-wide keys do not hold it back, so an attack from elsewhere (or from
//! a colleague's typos behind the same office address) never locks the owner out of it. The
//! state lives in memory, bounded by [`MAX_KEYS`]; when full, keys that hold nobody back go
//! first, oldest first; only then the others, oldest first. A restart forgets it all.
//!
//! Several relays on one PostgreSQL database share what they count: each attempt's
//! [`Outcome`] goes to the others ([`LoginLimiter::share_with`], carried by the database's
//! notices), which count it as if it had been theirs ([`LoginLimiter::learned`]), so a guesser
//! spreading attempts over the relays behind a load balancer is held back as on one.
//!
//! Every refusal of a password costs one argon2 verification, against a dummy hash when the
//! username is unknown, so the time of the answer does not tell whether an account exists.
//! Verifications run on the blocking pool, at most one per core at a time (each takes about
//! 19 MiB).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use gridsync_core::protocol::{LoginRequest, LoginResponse};
use sha2::{Digest, Sha256};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};

use super::{AccountStore, Device, User, hash_password, new_token};
use crate::storage::StorageError;

/// Keys the throttle remembers at most (about 200 bytes each, with the eviction order).
pub(crate) const MAX_KEYS: usize = 100_000;
/// The wait after a key's free failures are used up; it doubles with every further failure.
const FIRST_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long a successful sign-in makes an address a known device of the account.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// How many failures a key forgives, and after how long without one it forgets them.
struct Rule {
    free: u32,
    forget: Duration,
}

const PER_ACCOUNT_AND_ADDRESS: Rule = Rule {
    free: 5,
    forget: Duration::from_secs(24 * 3600),
};
const PER_ACCOUNT: Rule = Rule {
    free: 20,
    forget: Duration::from_secs(3600),
};
const PER_ADDRESS: Rule = Rule {
    free: 20,
    forget: Duration::from_secs(15 * 60),
};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("用户名或密码错误 wrong username or password")]
    BadCredentials,
    #[error("尝试次数过多，请 {0} 秒后再试 too many failed attempts; try again in {0} s")]
    Throttled(u64),
    #[error("该账号已停用 this account is deactivated")]
    Inactive,
    #[error(
        "该账号还没有分配网格，请联系管理员（admin user assign）\
         this account has no grid yet: ask the admin to assign one (admin user assign)"
    )]
    NoGrids,
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

/// What failures are counted against. Usernames are kept as a hash (case-insensitive), so a
/// key has a fixed size whatever was typed; IPv6 addresses by their /64, which one host
/// usually holds whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Pair([u8; 16], IpAddr),
    Account([u8; 16]),
    Address(IpAddr),
}

impl Key {
    fn rule(&self) -> &'static Rule {
        match self {
            Key::Pair(..) => &PER_ACCOUNT_AND_ADDRESS,
            Key::Account(_) => &PER_ACCOUNT,
            Key::Address(_) => &PER_ADDRESS,
        }
    }
}

fn account(username: &str) -> [u8; 16] {
    let digest = Sha256::digest(username.trim().to_lowercase().as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

fn address(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    known_until: Option<Instant>,
    /// Position in the eviction order.
    tick: u64,
    protected: bool,
}

impl Entry {
    /// Failures still counted at `now`.
    fn failures(&self, rule: &Rule, now: Instant) -> u32 {
        if now.saturating_duration_since(self.last_failure) > rule.forget {
            0
        } else {
            self.failures
        }
    }

    /// How long an attempt must still wait.
    fn wait(&self, rule: &Rule, now: Instant) -> Option<Duration> {
        let over = self.failures(rule, now).checked_sub(rule.free)?;
        let delay = FIRST_WAIT
            .saturating_mul(1u32 << over.min(16))
            .min(MAX_WAIT);
        let waited = now.saturating_duration_since(self.last_failure);
        delay.checked_sub(waited).filter(|d| !d.is_zero())
    }

    fn known(&self, now: Instant) -> bool {
        self.known_until.is_some_and(|t| t > now)
    }

    /// A key that holds someone back or remembers a known device is evicted last.
    fn holds(&self, rule: &Rule, now: Instant) -> bool {
        self.known(now) || self.failures(rule, now) >= rule.free
    }
}

/// The throttle's memory: entries and two eviction orders (least recently used first).
struct Table {
    entries: HashMap<Key, Entry>,
    /// Keys that hold nobody back: evicted first.
    loose: BTreeMap<u64, Key>,
    /// Keys that hold someone back or remember a known device.
    held: BTreeMap<u64, Key>,
    tick: u64,
    capacity: usize,
}

impl Table {
    fn new(capacity: usize) -> Table {
        Table {
            entries: HashMap::new(),
            loose: BTreeMap::new(),
            held: BTreeMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    /// Changes (or creates) the entry of `key` and moves it to the recent end of its order.
    fn update(&mut self, key: Key, now: Instant, change: impl FnOnce(&mut Entry)) {
        let mut entry = match self.entries.remove(&key) {
            Some(old) => {
                let order = if old.protected {
                    &mut self.held
                } else {
                    &mut self.loose
                };
                order.remove(&old.tick);
                old
            }
            None => {
                while self.entries.len() >= self.capacity {
                    self.evict();
                }
                Entry {
                    failures: 0,
                    last_failure: now,
                    known_until: None,
                    tick: 0,
                    protected: false,
                }
            }
        };
        change(&mut entry);
        self.tick += 1;
        entry.tick = self.tick;
        entry.protected = entry.holds(key.rule(), now);
        let order = if entry.protected {
            &mut self.held
        } else {
            &mut self.loose
        };
        order.insert(entry.tick, key);
        self.entries.insert(key, entry);
    }

    fn evict(&mut self) {
        let oldest = self.loose.pop_first().or_else(|| self.held.pop_first());
        match oldest {
            Some((_, key)) => {
                self.entries.remove(&key);
            }
            None => self.entries.clear(),
        }
    }

    /// Marks `key` as recently used, if it is remembered at all.
    fn touch(&mut self, key: Key, now: Instant) {
        if self.entries.contains_key(&key) {
            self.update(key, now, |_| {});
        }
    }
}

/// One attempt's result as the throttle counts it, for the other relays on the database: the
/// account (as the throttle's hash of the username, never the name or password) and address it
/// came from, and whether the password was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub account: [u8; 16],
    pub addr: IpAddr,
    pub right: bool,
}

/// Outcomes waiting for the database at most; beyond, they are counted here only (and in
/// `gridsync_password_checks_total`) until the database catches up.
pub const SHARED_OUTCOMES: usize = 4096;

/// The sign-in throttle and the gate of password verification, shared by device sign-in and
/// the dashboard.
pub struct LoginLimiter {
    table: Mutex<Table>,
    /// Where this relay's outcomes go for the other relays on its database, if there are any.
    shared: OnceLock<tokio::sync::mpsc::Sender<Outcome>>,
    /// At most one argon2 verification per core at a time; the rest wait their turn.
    verifying: Arc<tokio::sync::Semaphore>,
    /// argon2 verifications run so far (tests check that a refusal really ran one).
    verifications: Arc<AtomicU64>,
    /// Attempts by outcome, for `/metrics`: password right, wrong, held back by the throttle.
    outcomes: [AtomicU64; 3],
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::with_capacity(MAX_KEYS)
    }
}

impl LoginLimiter {
    pub(crate) fn with_capacity(capacity: usize) -> LoginLimiter {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LoginLimiter {
            table: Mutex::new(Table::new(capacity)),
            shared: OnceLock::new(),
            verifying: Arc::new(tokio::sync::Semaphore::new(cores)),
            verifications: Arc::new(AtomicU64::new(0)),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Attempts so far by outcome (devices and the dashboard alike), for `/metrics`.
    pub(crate) fn checks(&self) -> [(&'static str, u64); 3] {
        let n = |i: usize| self.outcomes[i].load(Ordering::Relaxed);
        [("ok", n(0)), ("wrong", n(1)), ("throttled", n(2))]
    }

    fn counted(&self, outcome: usize) {
        self.outcomes[outcome].fetch_add(1, Ordering::Relaxed);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on every attempt's outcome is also sent to `other_relays` (once; later calls
    /// change nothing). When they fall behind by [`SHARED_OUTCOMES`], outcomes are counted
    /// here only.
    pub fn share_with(&self, other_relays: tokio::sync::mpsc::Sender<Outcome>) {
        let _ = self.shared.set(other_relays);
    }

    fn share(&self, account: [u8; 16], addr: IpAddr, right: bool) {
        if let Some(tx) = self.shared.get() {
            let _ = tx.try_send(Outcome {
                account,
                addr,
                right,
            });
        }
    }

    /// Counts an attempt another relay on the database saw, as if it had been made here.
    pub fn learned(&self, outcome: Outcome) {
        let now = Instant::now();
        let keys = Self::keys_of(outcome.account, outcome.addr);
        if outcome.right {
            self.succeeded_at(keys.0, now);
        } else {
            self.count_failure(keys, now);
        }
    }

    fn keys(username: &str, addr: IpAddr) -> (Key, Key, Key) {
        Self::keys_of(account(username), addr)
    }

    fn keys_of(user: [u8; 16], addr: IpAddr) -> (Key, Key, Key) {
        let addr = address(addr);
        (
            Key::Pair(user, addr),
            Key::Account(user),
            Key::Address(addr),
        )
    }

    /// Seconds to wait before this username may be tried from this address, if any.
    pub(crate) fn blocked(&self, username: &str, addr: IpAddr) -> Option<u64> {
        self.blocked_at(username, addr, Instant::now())
    }

    fn blocked_at(&self, username: &str, addr: IpAddr, now: Instant) -> Option<u64> {
        let (pair, account, address) = Self::keys(username, addr);
        let mut table = self.table();
        let known = table.entries.get(&pair).is_some_and(|e| e.known(now));
        let checked: &[Key] = if known {
            &[pair]
        } else {
            &[pair, account, address]
        };
        let mut wait: Option<Duration> = None;
        for key in checked {
            if let Some(w) = table.entries.get(key).and_then(|e| e.wait(key.rule(), now)) {
                wait = Some(wait.map_or(w, |old| old.max(w)));
                // A key under attack stays remembered: asking counts as use.
                table.touch(*key, now);
            }
        }
        wait.map(|w| w.as_secs() + u64::from(w.subsec_nanos() > 0))
    }

    pub(crate) fn failed(&self, username: &str, addr: IpAddr) {
        self.count_failure(Self::keys(username, addr), Instant::now());
        self.share(account(username), addr, false);
    }

    #[cfg(test)]
    fn failed_at(&self, username: &str, addr: IpAddr, now: Instant) {
        self.count_failure(Self::keys(username, addr), now);
    }

    fn count_failure(&self, (pair, account, address): (Key, Key, Key), now: Instant) {
        let mut table = self.table();
        for key in [pair, account, address] {
            let rule = key.rule();
            table.update(key, now, |e| {
                e.failures = e.failures(rule, now).saturating_add(1);
                e.last_failure = now;
            });
        }
    }

    /// The right password from this address: its failures are forgiven and it becomes a known
    /// device of the account. The account's failures from elsewhere still count.
    pub(crate) fn succeeded(&self, username: &str, addr: IpAddr) {
        self.succeeded_at(Self::keys(username, addr).0, Instant::now());
        self.share(account(username), addr, true);
    }

    fn succeeded_at(&self, pair: Key, now: Instant) {
        self.table().update(pair, now, |e| {
            e.failures = 0;
            e.known_until = Some(now + KNOWN_FOR);
        });
    }

    /// How many argon2 verifications ran.
    #[cfg(test)]
    pub(crate) fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Whether `password` is the user's. Always runs one argon2 verification, against a dummy
    /// hash when there is no such user, on the blocking pool.
    async fn password_matches(&self, user: Option<&User>, password: &str) -> bool {
        // The turn is held by the verification itself, not by this future: a client that
        // hangs up does not free it while argon2 still runs.
        let Ok(turn) = self.verifying.clone().acquire_owned().await else {
            return false;
        };
        let known = user.is_some();
        let hash = user.map_or_else(|| dummy_hash().to_string(), |u| u.password_hash.clone());
        let password = password.to_string();
        let ran = self.verifications.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            ran.fetch_add(1, Ordering::Relaxed);
            let matches = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            matches && known
        })
        .await
        .unwrap_or(false)
    }

    /// One sign-in attempt: the throttle, then the password. Returns the user whose password
    /// it is (active or not: the caller decides what an inactive user may do).
    pub(crate) async fn attempt(
        &self,
        accounts: &dyn AccountStore,
        username: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<User, LoginError> {
        if let Some(wait) = self.blocked(username, addr) {
            self.counted(2);
            return Err(LoginError::Throttled(wait));
        }
        let user = accounts.user(username).await?;
        if !self.password_matches(user.as_ref(), password).await {
            self.counted(1);
            self.failed(username, addr);
            return Err(LoginError::BadCredentials);
        }
        self.counted(0);
        self.succeeded(username, addr);
        user.ok_or(LoginError::BadCredentials)
    }
}

/// An argon2 hash with the same parameters as every real one, of a password nobody knows.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let secret = new_token().map_or_else(|_| "gridsync-no-such-user".to_string(), |t| t.0);
        hash_password(&secret).unwrap_or_default()
    })
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
    let user = limiter
        .attempt(accounts, &req.username, &req.password, addr)
        .await?;
    if !user.active {
        return Err(LoginError::Inactive);
    }
    // A device with no grid could hold and write nothing: say so instead of enrolling it.
    let (grids, _) = accounts.grids_of(&user).await?;
    if grids.is_empty() {
        return Err(LoginError::NoGrids);
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use super::*;
    use crate::accounts::{NewUser, Role};
    use crate::storage::SqliteStorage;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn test_waits_double_with_every_failure_past_the_free_ones() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for _ in 0..5 {
            assert_eq!(limiter.blocked_at("zhao", ip(1), t0), None);
            limiter.failed_at("zhao", ip(1), t0);
        }
        assert_eq!(limiter.blocked_at("zhao", ip(1), t0), Some(30));
        assert_eq!(limiter.blocked_at("zhao", ip(1), at(31)), None);
        limiter.failed_at("zhao", ip(1), at(31));
        assert_eq!(limiter.blocked_at("zhao", ip(1), at(31)), Some(60));
        let mut now = 31;
        for _ in 0..10 {
            now += 1000;
            limiter.failed_at("zhao", ip(1), at(now));
        }
        assert_eq!(
            limiter.blocked_at("zhao", ip(1), at(now)),
            Some(MAX_WAIT.as_secs()),
            "the wait stops growing"
        );
        assert_eq!(limiter.blocked_at("ZHAO ", ip(1), at(now)), Some(900));
    }

    #[test]
    fn test_a_guesser_on_one_address_does_not_lock_the_owner_out_elsewhere() {
        let limiter = LoginLimiter::default();
        for _ in 0..10 {
            limiter.failed("zhao", ip(1));
        }
        assert!(
            limiter.blocked("zhao", ip(1)).is_some(),
            "the guesser waits"
        );
        assert_eq!(
            limiter.blocked("zhao", ip(2)),
            None,
            "the owner's phone does not"
        );
    }

    #[test]
    fn test_guessers_on_many_addresses_slow_everyone_but_the_owners_known_device() {
        let limiter = LoginLimiter::default();
        limiter.succeeded("zhao", ip(1));
        for n in 0..PER_ACCOUNT.free {
            limiter.failed("zhao", ip(100 + n));
        }
        assert!(
            limiter.blocked("zhao", ip(7)).is_some(),
            "a new address waits once the account has many failures"
        );
        assert_eq!(
            limiter.blocked("zhao", ip(1)),
            None,
            "the address the owner signed in from before does not"
        );
        // One address spraying many accounts waits too, except for a known device there.
        for n in 0..PER_ADDRESS.free {
            limiter.failed(&format!("user{n}"), ip(9));
        }
        assert!(limiter.blocked("li", ip(9)).is_some());
        limiter.succeeded("wang", ip(9));
        assert_eq!(limiter.blocked("wang", ip(9)), None);
    }

    #[test]
    fn test_when_full_keys_holding_nobody_back_go_first_oldest_first() {
        let limiter = LoginLimiter::with_capacity(30);
        for _ in 0..5 {
            limiter.failed("zhao", ip(1));
        }
        for n in 0..100 {
            limiter.failed(&format!("random{n}"), ip(1000 + n));
            assert!(limiter.table().entries.len() <= 30);
        }
        let table = limiter.table();
        let (pair, _, _) = LoginLimiter::keys("zhao", ip(1));
        assert!(table.entries.contains_key(&pair), "the locked key stays");
        let (oldest, _, _) = LoginLimiter::keys("random0", ip(1000));
        let (newest, _, _) = LoginLimiter::keys("random99", ip(1099));
        assert!(!table.entries.contains_key(&oldest), "the oldest went");
        assert!(table.entries.contains_key(&newest), "the newest stays");
        drop(table);
        assert!(limiter.blocked("zhao", ip(1)).is_some());
    }

    #[test]
    fn test_a_flood_of_random_usernames_neither_grows_the_throttle_nor_unlocks_an_account() {
        let limiter = LoginLimiter::default();
        for _ in 0..5 {
            limiter.failed("zhao", ip(1));
        }
        assert!(limiter.blocked("zhao", ip(1)).is_some());
        for n in 0..(MAX_KEYS as u32 + 1) {
            limiter.failed(&format!("random-{n}"), ip(1_000_000 + n));
        }
        assert!(limiter.table().entries.len() <= MAX_KEYS);
        assert!(
            limiter.blocked("zhao", ip(1)).is_some(),
            "the locked account is still locked"
        );
    }

    async fn store_with_zhao(areas: &[&str]) -> (tempfile::TempDir, SqliteStorage) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStorage::open(dir.path()).unwrap();
        for area in areas {
            store
                .add_area(crate::accounts::Area {
                    id: (*area).into(),
                    parent_id: None,
                    level: "grid".into(),
                    name: (*area).into(),
                })
                .await
                .unwrap();
        }
        let user = store
            .add_user(NewUser {
                username: "zhao".into(),
                display_name: "赵".into(),
                role: Role::GridWorker,
                password_hash: hash_password("zhao-pass-2026").unwrap(),
            })
            .await
            .unwrap();
        let areas: Vec<String> = areas.iter().map(|a| a.to_string()).collect();
        store.set_user_areas(&user.id, &areas).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn test_an_unknown_user_is_refused_after_the_same_argon2_work_as_a_wrong_password() {
        let (_dir, store) = store_with_zhao(&["g1"]).await;
        let limiter = LoginLimiter::default();
        let addr = ip(1);
        let unknown = limiter
            .attempt(&store, "nobody", "some-guess-1", addr)
            .await;
        assert!(matches!(unknown, Err(LoginError::BadCredentials)));
        assert_eq!(limiter.verifications(), 1, "argon2 ran for an unknown user");
        let wrong = limiter.attempt(&store, "zhao", "some-guess-1", addr).await;
        assert!(matches!(wrong, Err(LoginError::BadCredentials)));
        assert_eq!(limiter.verifications(), 2);
        // The dummy hash costs what a real one does: same algorithm and parameters.
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_string();
        let real = store.user("zhao").await.unwrap().unwrap().password_hash;
        assert_eq!(params(dummy_hash()), params(&real));
        let right = limiter
            .attempt(&store, "zhao", "zhao-pass-2026", addr)
            .await;
        assert_eq!(right.unwrap().username, "zhao");
    }

    #[tokio::test]
    async fn test_sign_in_of_a_user_without_grids_is_refused_and_enrols_no_device() {
        let (_dir, store) = store_with_zhao(&[]).await;
        let limiter = LoginLimiter::default();
        let request = LoginRequest {
            username: "zhao".into(),
            password: "zhao-pass-2026".into(),
            device_name: String::new(),
            actor: "00112233445566778899aabbccddeeff".into(),
        };
        let err = login(&store, &limiter, ip(1), request, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::NoGrids), "{err}");
        assert!(err.to_string().contains("没有分配网格"), "{err}");
        assert!(store.devices(None).await.unwrap().is_empty());
    }

    #[test]
    fn test_a_relay_counts_the_failures_another_relay_shares_and_not_its_own_twice() {
        let (one, two) = (LoginLimiter::default(), LoginLimiter::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(SHARED_OUTCOMES);
        let (tx2, mut rx2) = tokio::sync::mpsc::channel(SHARED_OUTCOMES);
        one.share_with(tx);
        two.share_with(tx2);
        // Three wrong passwords on each relay: neither alone is past the five free ones.
        for _ in 0..3 {
            one.failed("zhao", ip(1));
            two.failed("zhao", ip(1));
        }
        assert_eq!(one.blocked("zhao", ip(1)), None);
        let mut shared = Vec::new();
        while let Ok(outcome) = rx.try_recv() {
            shared.push(outcome);
        }
        assert_eq!(shared.len(), 3, "one outcome per attempt");
        assert!(
            shared
                .iter()
                .all(|o| !o.right && o.account == account("Zhao"))
        );
        for outcome in shared {
            two.learned(outcome);
        }
        assert!(
            two.blocked("zhao", ip(1)).is_some(),
            "six wrong passwords over two relays hold the seventh back"
        );
        // The right password, learned: that address becomes a known device there too.
        one.succeeded("zhao", ip(2));
        two.learned(rx.try_recv().unwrap());
        let mut own = 0;
        while rx2.try_recv().is_ok() {
            own += 1;
        }
        assert_eq!(own, 3, "two shares its own attempts, not what it learned");
        for _ in 0..30 {
            two.failed("zhao", ip(3));
        }
        assert_eq!(
            two.blocked("zhao", ip(2)),
            None,
            "the owner's known device is not held back by guessers elsewhere"
        );
    }
}
