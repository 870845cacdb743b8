//! `gridsync-server`: parse flags, open the store, serve, shut down on a signal.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use gridsync_server::config::LogFormat;
use gridsync_server::options::Options;
use gridsync_server::{Config, Server, admin, tls};

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage areas, users and devices, back up or restore the store, purge attachments, migrate
    /// a SQLite relay to PostgreSQL (all but `restore` and `migrate` work beside a running
    /// server). 管理区域、用户和设备，备份与恢复，清除附件，迁移到 PostgreSQL
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// gridsync relay: stores every change, pushes changes to devices. 网格数据同步服务器。
///
/// Every setting is a flag, an environment variable and a key of the config file; a flag
/// overrides the environment, which overrides the file (docs/operations.md).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Read settings from this TOML file: one key a flag, spelt like it without `--`
    /// (`data-dir = "/var/lib/gridsync"`). 配置文件
    #[arg(long, env = "GRIDSYNC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    options: Options,
}

/// The settings of the flags and environment over those of the config file, if any.
fn settings(args: Args) -> anyhow::Result<(Config, Option<Command>)> {
    let file = match &args.config {
        Some(path) => Options::from_file(path)?,
        None => Options::default(),
    };
    Ok((args.options.over(file).into_config()?, args.command))
}

fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    let log = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // Colour codes only for a person at a terminal, not in a file, a pipe or the journal.
        LogFormat::Text => log.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => log.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, command) = match settings(Args::parse()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("错误 Error: {e}");
            std::process::exit(2);
        }
    };
    init_log(config.log_format);
    if let Some(Command::Admin(command)) = command {
        let out = admin::execute(&config, command, &mut std::io::stdin().lock()).await;
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
    let mut server = Server::connect(&config)
        .await
        .with_context(|| match &config.database {
            Some(_) => "cannot open the PostgreSQL database (--database)".to_string(),
            None => format!("cannot open the store in {}", config.data_dir.display()),
        })?;
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
        server = server.with_metrics(listener);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let stop = shutdown_signal();
    tracing::info!(
        "gridsync-server listening on {}://{} ({}data in {})",
        if config.tls.is_some() {
            "https"
        } else {
            "http"
        },
        listener.local_addr()?,
        if config.database.is_some() {
            "records in PostgreSQL, attachments' "
        } else {
            ""
        },
        config.data_dir.display()
    );
    server.serve(listener, stop).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes at SIGTERM or Ctrl-C. The handlers are installed when this is called, not when it
/// is first awaited: a SIGTERM right after the relay said it listens stops it gracefully too.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
