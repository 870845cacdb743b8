//! Accounts, roles and the access rules: who may read and write which records where.
//!
//! The relay decides a device's scope from its authenticated identity (the device token), never
//! from what the device claims. `docs/security.md` states the model in prose; [`can_read`] and
//! [`can_write`] are the model in code, kept in client-core (`gridsync_core::access`) so that a
//! device refuses what its role may never write in the relay's own words. The access-matrix
//! test checks every cell of it.

mod login;
mod sessions;
mod store;
mod tokens;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use gridsync_core::record::Kind;
use sha2::{Digest, Sha256};

pub use gridsync_core::access::{Role, can_read, can_write, check_write, readable_kinds};
pub use login::{LoginError, LoginLimiter, Outcome, SHARED_OUTCOMES, login};
pub use sessions::{SessionStore, WebSession};
pub(crate) use store::now;
pub use store::{AccountStore, Area, Device, NewUser, User};
pub use tokens::{API_TOKEN_PREFIX, ApiToken, ApiTokenStore, new_api_token};

/// Who is on the other end of a sync session, as the relay established it from the token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub device_id: String,
    /// Grids the device receives and writes.
    pub grids: Vec<String>,
    /// Grids the user was moved away from: writes to existing records still accepted.
    pub former_grids: Vec<String>,
    /// Automerge actors bound to this device.
    pub actors: Vec<String>,
    /// The kinds this role receives.
    pub readable_kinds: crate::storage::KindFilter,
}

impl Identity {
    pub fn may_write(&self, kind: Kind, grid: &str, existing: bool) -> Result<(), String> {
        check_write(self.role, kind).map_err(|refused| refused.to_string())?;
        let current = self.grids.iter().any(|g| g == grid);
        let former = existing && self.former_grids.iter().any(|g| g == grid);
        if current || former {
            Ok(())
        } else {
            Err(format!("grid {grid} is outside this user's scope"))
        }
    }
}

/// Why a username cannot be given to a new account, if it cannot: 1 to 64 characters, lower-case
/// ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit. People type it on
/// phones and office PCs; the display name is where Chinese names go.
pub fn check_username(username: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let first_ok = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if username.is_empty() {
        Err("用户名不能为空 the username is empty".into())
    } else if username.chars().count() > 64 {
        Err("用户名最多 64 个字符 the username is longer than 64 characters".into())
    } else if !first_ok || !username.chars().all(ok_char) {
        Err(format!(
            "用户名只能用小写字母、数字和 . _ -，并以字母或数字开头 \
             `{username}`: use lower-case letters, digits, `.`, `_` and `-`, starting with a \
             letter or digit"
        ))
    } else {
        Ok(())
    }
}

/// Passwords too common or too regular to keep anyone out, checked whole and lower-cased (the
/// rules below already refuse anything shorter than 10 characters).
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "0123456789",
    "12345678910",
    "123456789a",
    "a123456789",
    "aa12345678",
    "abc1234567",
    "abcd123456",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "asdfghjkl;",
    "zxcvbnm123",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "p@ssw0rd123",
    "iloveyou12",
    "admin12345",
    "admin123456",
    "administrator",
    "woaini1314",
    "woaini520520",
    "5201314520",
    "1314520520",
    "gridsync123",
    "gridsync2026",
    "changeme123",
    "letmein1234",
];

/// Runs of keys people type instead of a password; a password that is one stretch of one of
/// these (or of its reverse) is refused.
const SEQUENCES: &[&str] = &[
    "01234567890123456789",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "1q2w3e4r5t6y7u8i9o0p",
];

/// Why a new password is refused, if it is: at least 10 characters, not only spaces, at least
/// 5 different characters, not the username, not a run like `1234567890` or `qwertyuiop`, and
/// not on a short list of the most common ones. Phrases (`correct horse 电池`) pass.
pub fn check_new_password(username: &str, password: &str) -> Result<(), String> {
    let lower = password.to_lowercase();
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    let distinct = compact
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let in_sequence = compact.chars().count() >= 3
        && SEQUENCES.iter().any(|run| {
            let reversed: String = run.chars().rev().collect();
            run.contains(&compact) || reversed.contains(&compact)
        });
    let problem = if password.chars().count() < 10 {
        "密码至少 10 个字符 the password needs at least 10 characters"
    } else if compact.is_empty() {
        "密码不能只有空格 the password is only spaces"
    } else if distinct < 5 {
        "密码至少要有 5 个不同的字符 the password needs at least 5 different characters"
    } else if compact == username.trim().to_lowercase() {
        "密码不能与用户名相同 the password is the username"
    } else if in_sequence || COMMON_PASSWORDS.contains(&compact.as_str()) {
        "密码太常见，容易被猜到 the password is too common to keep anyone out"
    } else {
        return Ok(());
    };
    Err(problem.into())
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new device token (256 random bits, hex) and the hash the server keeps of it.
pub fn new_token() -> Result<(String, Vec<u8>), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    Ok((token, hash))
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_password_hash_verifies_only_the_right_password() {
        let hash = hash_password("正确的密码").unwrap();
        assert!(hash.starts_with("$argon2"));
        assert!(verify_password("正确的密码", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn test_tokens_are_random_and_stored_hashed() {
        let (a, ha) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a), ha);
        assert_ne!(ha, a.as_bytes());
    }
}
