//! The relay's PostgreSQL backend for the bench (`--backend postgres`): a fresh database per relay
//! start, dropped with it. Uses `psql` rather than tokio-postgres: the database is dropped in
//! `Drop`, where no async runtime can be relied on, and `psql` is what an operator would use.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Where the bench's PostgreSQL server is (`--pg-url`), set once at start; `None` = SQLite.
static PG_URL: Mutex<Option<String>> = Mutex::new(None);
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The default of `--pg-url`.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Runs the relays started from now on on PostgreSQL at `url` (or on SQLite with `None`).
pub fn set_backend(url: Option<String>) {
    *PG_URL.lock().unwrap_or_else(|e| e.into_inner()) = url;
}

/// The PostgreSQL server URL, when the relays run on PostgreSQL.
pub fn backend_url() -> Option<String> {
    PG_URL.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The name of the `n`th database of bench process `pid`.
pub fn database_name(pid: u32, n: u32) -> String {
    format!("gridsync_bench_{pid}_{n}")
}

/// `url` with its database replaced by `db` (`postgres://u@h:p/test` → `postgres://u@h:p/db`).
pub fn url_with_database(url: &str, db: &str) -> Result<String> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        bail!("--pg-url 须为 postgres:// 地址 must be a postgres:// URL: {url}");
    };
    let (host, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let host = host.split_once('/').map_or(host, |(h, _)| h);
    let mut out = format!("postgres://{host}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// A database made for one relay, dropped when this goes (also when the run failed).
pub struct FreshDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

fn psql(url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .context("run psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl FreshDatabase {
    /// Creates `gridsync_bench_<pid>_<n>` on the server of `admin_url`.
    pub fn create(admin_url: &str) -> Result<FreshDatabase> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = database_name(std::process::id(), n);
        psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(FreshDatabase {
            admin_url: admin_url.to_string(),
            url: url_with_database(admin_url, &name)?,
            name,
        })
    }

    /// `pg_database_size` of the database: the relay's store on PostgreSQL.
    pub fn size_bytes(&self) -> u64 {
        psql(
            &self.admin_url,
            &format!("SELECT pg_database_size('{}')", self.name),
        )
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_fresh_database_url_keeps_user_host_and_options() {
        assert_eq!(database_name(42, 3), "gridsync_bench_42_3");
        assert_eq!(
            url_with_database(DEFAULT_URL, "gridsync_bench_42_3").unwrap(),
            "postgres://postgres@127.0.0.1:5432/gridsync_bench_42_3"
        );
        assert_eq!(
            url_with_database("postgresql://u@h/x?sslmode=disable", "d").unwrap(),
            "postgres://u@h/d?sslmode=disable"
        );
        assert!(url_with_database("mysql://h/x", "d").is_err());
    }
}
