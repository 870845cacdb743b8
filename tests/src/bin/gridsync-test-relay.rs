//! The relay as a process of its own, for tests that SIGKILL it: `gridsync-test-relay DATA_DIR
//! LISTEN_ADDR [DATABASE]` opens the store in DATA_DIR (or the PostgreSQL database DATABASE, a
//! `postgres://` URL, as `--database` does) and serves on LISTEN_ADDR the way `gridsync-server`'s
//! `main` does (`Server::connect`, then `serve`), with the default settings and no other flags,
//! log, TLS or metrics. It prints `listening on ADDR` once it accepts connections, and runs until killed.
//!
//! It is a binary of this crate so that cargo builds it, current, for the tests that run it
//! (`CARGO_BIN_EXE_gridsync-test-relay`); `gridsync-server`'s own binary is only known to its
//! crate's tests.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use gridsync_server::{Config, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(data_dir), Some(listen)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: gridsync-test-relay DATA_DIR LISTEN_ADDR [DATABASE]");
    };
    let database = args.next();
    let listen: SocketAddr = listen.parse().context("LISTEN_ADDR")?;
    let config = Config {
        listen,
        data_dir: data_dir.into(),
        database,
        ..Config::default()
    };
    let server = Server::connect(&config).await.context("open the store")?;
    // The relay killed a moment ago may not have released its port yet.
    let mut listener = None;
    for _ in 0..200 {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    let listener = listener.with_context(|| format!("cannot listen on {listen}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    server.serve(listener, std::future::pending()).await?;
    Ok(())
}
