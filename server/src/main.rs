//! `gridsync-server`: parse flags, open the store, serve, shut down on a signal.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use gridsync_server::config::TlsFiles;
use gridsync_server::storage::SqliteStorage;
use gridsync_server::{Config, Server, admin, tls};

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage areas, users and devices (works beside a running server). 管理区域、用户和设备
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// gridsync relay: stores every change, pushes changes to devices. 网格数据同步服务器。
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "GRIDSYNC_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the SQLite store (created if missing).
    #[arg(long, env = "GRIDSYNC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Documents kept decoded in memory at most.
    #[arg(long, env = "GRIDSYNC_DOC_CACHE")]
    doc_cache: Option<usize>,
    /// Sync sessions open at once (see docs/operations.md for every limit).
    #[arg(long, env = "GRIDSYNC_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// TCP connections open at once in all; keep it below the open-file limit (`ulimit -n`).
    #[arg(long, env = "GRIDSYNC_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// TCP connections open at once from one address; behind a proxy, all come from the
    /// proxy's address, so raise it there.
    #[arg(long, env = "GRIDSYNC_MAX_CONNECTIONS_PER_ADDRESS")]
    max_connections_per_address: Option<usize>,
    /// Sync sessions one device may have open at once.
    #[arg(long, env = "GRIDSYNC_MAX_SESSIONS_PER_DEVICE")]
    max_sessions_per_device: Option<usize>,
    /// Devices a user may have signed in and not revoked.
    #[arg(long, env = "GRIDSYNC_MAX_DEVICES_PER_USER")]
    max_devices_per_user: Option<usize>,
    /// Urgent-report deadlines in minutes after discovery, for critical, urgent and normal
    /// reports (社情民意报送时限), e.g. `20,60,120`.
    #[arg(long, env = "GRIDSYNC_REPORT_DEADLINES", value_parser = parse_deadlines)]
    report_deadlines: Option<gridsync_core::record::DeadlineRules>,
    /// The community's offset from UTC in minutes (China: 480); the dashboard's days and
    /// months start at local midnight.
    #[arg(long, env = "GRIDSYNC_UTC_OFFSET_MINUTES")]
    utc_offset_minutes: Option<i32>,
    /// Send the dashboard's session cookie only over HTTPS (behind a TLS proxy; always so with
    /// --tls-cert).
    #[arg(long, env = "GRIDSYNC_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Serve HTTPS with this certificate (PEM, followed by any intermediate CA certificates)
    /// instead of plain HTTP; needs --tls-key. 使用此证书提供 HTTPS
    #[arg(
        long,
        env = "GRIDSYNC_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM, unencrypted).
    #[arg(
        long,
        env = "GRIDSYNC_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
}

fn parse_deadlines(s: &str) -> Result<gridsync_core::record::DeadlineRules, String> {
    let minutes: Vec<i64> = s
        .split(',')
        .map(|p| p.trim().parse::<i64>().map_err(|e| format!("{p}: {e}")))
        .collect::<Result<_, _>>()?;
    match minutes.as_slice() {
        [c, u, n] if [c, u, n].iter().all(|m| **m > 0) => {
            Ok(gridsync_core::record::DeadlineRules {
                critical_minutes: *c,
                urgent_minutes: *u,
                normal_minutes: *n,
            })
        }
        _ => {
            Err("give three positive minute counts: critical,urgent,normal (e.g. 20,60,120)".into())
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = Config::default();
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(n) = args.doc_cache {
        config.doc_cache = n;
    }
    if let Some(n) = args.max_sessions {
        config.limits.max_sessions = n;
    }
    if let Some(n) = args.max_connections {
        config.limits.max_connections = n;
    }
    if let Some(n) = args.max_connections_per_address {
        config.limits.max_connections_per_address = n;
    }
    if let Some(n) = args.max_sessions_per_device {
        config.limits.max_sessions_per_device = n;
    }
    if let Some(n) = args.max_devices_per_user {
        config.limits.max_devices_per_user = n;
    }
    if let Some(rules) = args.report_deadlines {
        config.dashboard.report_deadlines = rules;
    }
    if let Some(offset) = args.utc_offset_minutes {
        config.dashboard.utc_offset_minutes = offset;
    }
    config.dashboard.secure_cookies |= args.secure_cookies;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    if let Some(Command::Admin(command)) = args.command {
        let store = SqliteStorage::open(&config.data_dir)
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
        let out = admin::run(&store, command, &mut std::io::stdin().lock()).await;
        match out {
            Ok(text) => {
                println!("{text}");
                return Ok(());
            }
            Err(e) => {
                eprintln!("错误 Error: {e}");
                std::process::exit(1);
            }
        }
    }
    // A wrong certificate or key stops the relay here, not at the first device.
    let tls = config.tls.as_ref().map(tls::load).transpose()?;
    let mut server = Server::open(&config)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        "gridsync-server listening on {}://{} (data in {})",
        if config.tls.is_some() {
            "https"
        } else {
            "http"
        },
        listener.local_addr()?,
        config.data_dir.display()
    );
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
