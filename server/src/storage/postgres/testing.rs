//! For tests only (the relay's own and the end-to-end crate's): a database of its own for each
//! test, made on the PostgreSQL server the tests are given and dropped when the test ends, also
//! when it fails.
//!
//! The server is `GRIDSYNC_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`,
//! trust authentication): the database named there is only where the test databases are made
//! from. When it cannot be reached, [`TestDatabase::create`] says so and the test skips, unless
//! `GRIDSYNC_REQUIRE_POSTGRES=1` (CI), which makes it fail.

use std::str::FromStr as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::PostgresStorage;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A database made for one test: `gridsync_t_<pid>_<n>_<random>`, dropped with this value.
pub struct TestDatabase {
    name: String,
    url: String,
    server: String,
}

fn server() -> String {
    std::env::var("GRIDSYNC_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_string())
}

/// Whether the tests must have PostgreSQL (`GRIDSYNC_REQUIRE_POSTGRES=1`, as in CI).
pub fn required() -> bool {
    std::env::var("GRIDSYNC_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

async fn admin_client(server: &str) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::from_str(server).map_err(|e| e.to_string())?;
    config.connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| crate::storage::StorageError::from(e).to_string())?;
    tokio::spawn(connection);
    Ok(client)
}

impl TestDatabase {
    /// A new, empty database; `None` (after saying why) when PostgreSQL cannot be reached and
    /// is not required.
    pub async fn create() -> Option<TestDatabase> {
        let server = server();
        let name = format!(
            "gridsync_t_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        let made = async {
            let client = admin_client(&server).await?;
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = made {
            let shown = shown(&server);
            if required() {
                panic!(
                    "PostgreSQL is required (GRIDSYNC_REQUIRE_POSTGRES=1) but cannot make a \
                     test database on {shown}: {e}"
                );
            }
            eprintln!(
                "SKIPPED: PostgreSQL test: cannot make a test database on {shown}: {e} \
                 (set GRIDSYNC_TEST_POSTGRES to another server; GRIDSYNC_REQUIRE_POSTGRES=1 \
                 makes this a failure)"
            );
            return None;
        }
        let url = database_url(&server, &name);
        Some(TestDatabase { name, url, server })
    }

    /// The database's URL, as `--database` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on the database (migrated on first use).
    pub async fn storage(&self) -> PostgresStorage {
        PostgresStorage::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test database {}: {e}", self.name))
    }
}

/// `server` with its database replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    // postgres://user@host:port/db: the path after the authority is the database.
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// The server's URL without any password, for messages.
fn shown(server: &str) -> String {
    match (server.find("://"), server.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &server[s + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}{}", &server[..s + 3], &server[at..])
        }
        _ => server.to_string(),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any runtime's reach (also while a failed test unwinds): a thread
        // of its own with a runtime of its own, which ends the pool's connections still open.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = admin_client(&server).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop the test database {}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_database_url_replaces_only_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgresql://u:p@h/test?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(shown("postgres://u:secret@h/test"), "postgres://u@h/test");
    }

    #[tokio::test]
    async fn test_a_test_database_is_gone_after_the_test() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let name = db.name.clone();
        db.storage().await;
        drop(db);
        let client = admin_client(&server()).await.unwrap();
        let left = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap();
        assert!(left.is_none(), "{name} was left behind");
    }
}
