//! Every setting of the relay three ways: a flag (`--max-sessions 500`), an environment variable
//! (`GRIDSYNC_MAX_SESSIONS=500`) and a key of the TOML config file given with `--config FILE`
//! (`max-sessions = 500`). A key is spelt as its long flag without the dashes in front. A flag
//! overrides the environment, which overrides the file, which overrides the defaults
//! ([`Config::default`]); docs/operations.md lists every setting with its default in one table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::CommandFactory as _;
use gridsync_core::record::DeadlineRules;

use crate::config::{Config, LogFormat, TlsFiles};
use crate::dashboard::TaskRules;

/// The settings given on the command line, in the environment or in the config file; what none
/// of them gives keeps its default.
#[derive(Debug, Default, Clone, clap::Parser, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// Address to listen on.
    #[arg(long, env = "GRIDSYNC_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve Prometheus metrics at /metrics on this address (off unless given); keep it
    /// reachable by the monitoring system only. 指标监听地址
    #[arg(long, env = "GRIDSYNC_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory of the SQLite store (created if missing).
    #[arg(long, env = "GRIDSYNC_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep records, the log and accounts in this PostgreSQL database (`postgres://user@host/db`)
    /// instead of SQLite under the data directory; the attachments' bytes stay there.
    /// PostgreSQL 数据库地址
    #[arg(long, env = "GRIDSYNC_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Documents kept decoded in memory at most.
    #[arg(long, env = "GRIDSYNC_DOC_CACHE")]
    pub doc_cache: Option<usize>,
    /// Sync sessions open at once (see docs/operations.md for every limit).
    #[arg(long, env = "GRIDSYNC_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// TCP connections open at once in all; keep it below the open-file limit (`ulimit -n`).
    #[arg(long, env = "GRIDSYNC_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// TCP connections open at once from one address; behind a proxy, all come from the
    /// proxy's address, so raise it there.
    #[arg(long, env = "GRIDSYNC_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Sync sessions one device may have open at once.
    #[arg(long, env = "GRIDSYNC_MAX_SESSIONS_PER_DEVICE")]
    pub max_sessions_per_device: Option<usize>,
    /// Devices a user may have signed in and not revoked.
    #[arg(long, env = "GRIDSYNC_MAX_DEVICES_PER_USER")]
    pub max_devices_per_user: Option<usize>,
    /// The largest attachment (photo or file) taken, in bytes. 附件大小上限
    #[arg(long, env = "GRIDSYNC_MAX_ATTACHMENT_BYTES")]
    pub max_attachment_bytes: Option<u64>,
    /// The bytes of attachments one device may store on the relay. 每台设备附件配额
    #[arg(long, env = "GRIDSYNC_ATTACHMENT_QUOTA_BYTES")]
    pub attachment_quota_bytes: Option<u64>,
    /// Days an attachment no record names, or an abandoned upload, is kept before the purge.
    #[arg(long, env = "GRIDSYNC_ATTACHMENT_GRACE_DAYS")]
    pub attachment_grace_days: Option<u64>,
    /// Urgent-report deadlines in minutes after discovery, for critical, urgent and normal
    /// reports (社情民意报送时限), e.g. `20,60,120`.
    #[arg(long, env = "GRIDSYNC_REPORT_DEADLINES", value_parser = parse_deadlines)]
    #[serde(default, deserialize_with = "deadlines_from_text")]
    pub report_deadlines: Option<DeadlineRules>,
    /// Default deadlines of dispatched tasks in hours, for tasks from an urgent report, a
    /// patrol incident, a visit's issue, a meeting's decision and the office (派单办理期限),
    /// e.g. `24,24,72,168,72`.
    #[arg(long, env = "GRIDSYNC_TASK_DEADLINES", value_parser = TaskRules::parse)]
    #[serde(default, deserialize_with = "task_deadlines_from_text")]
    pub task_deadlines: Option<TaskRules>,
    /// The community's offset from UTC in minutes (China: 480); the dashboard's days and
    /// months start at local midnight.
    #[arg(
        long,
        env = "GRIDSYNC_UTC_OFFSET_MINUTES",
        allow_negative_numbers = true
    )]
    pub utc_offset_minutes: Option<i32>,
    /// Send the dashboard's session cookie only over HTTPS (behind a TLS proxy; always so with
    /// --tls-cert). `--secure-cookies=false` turns off what the file or environment turned on.
    #[arg(
        long,
        env = "GRIDSYNC_SECURE_COOKIES",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub secure_cookies: Option<bool>,
    /// Serve HTTPS with this certificate (PEM, followed by any intermediate CA certificates)
    /// instead of plain HTTP; needs --tls-key. 使用此证书提供 HTTPS
    #[arg(long, env = "GRIDSYNC_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM, unencrypted).
    #[arg(long, env = "GRIDSYNC_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The log's format: `text` (coloured only on a terminal) or `json` (one object a line).
    #[arg(long, env = "GRIDSYNC_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// A config file that cannot be used; the relay does not start.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("无法读取配置文件 {path}：{source} cannot read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "配置文件 {path} 中有未知的设置项 \"{key}\"{hint_zh} the config file {path} has an \
         unknown setting \"{key}\"{hint_en}; the settings are the long flags of \
         `gridsync-server --help` without their dashes, e.g. data-dir"
    )]
    Unknown {
        path: String,
        key: String,
        hint_zh: String,
        hint_en: String,
    },
    #[error("配置文件 {path} 有误 the config file {path} is wrong: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "tls-cert 与 tls-key 须同时设置 tls-cert and tls-key go together: give both (flags, \
         environment or config file) or neither"
    )]
    TlsPair,
    #[error(
        "database 须为 PostgreSQL 地址 the database must be a PostgreSQL URL, \
         postgres://user@host:port/name; leave it out for SQLite under the data directory"
    )]
    Database,
    #[error(
        "utc-offset-minutes {0} 不是时区 is not a time zone: give minutes east of UTC, between \
         -{max} and {max} (China: 480)",
        max = gridsync_core::protocol::MAX_UTC_OFFSET_MINUTES
    )]
    UtcOffset(i32),
}

impl Options {
    /// Every setting's name: the long flags, which are also the keys of the config file.
    pub fn keys() -> Vec<String> {
        Options::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    }

    /// Reads a TOML config file; an unknown key or a value of the wrong kind is an error that
    /// names it.
    pub fn from_file(path: &Path) -> Result<Options, OptionsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| OptionsError::Read {
            path: shown.clone(),
            source,
        })?;
        Options::from_toml(&text, &shown)
    }

    /// [`Options::from_file`] of text already read; `path` names it in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Options, OptionsError> {
        let invalid = |e: toml::de::Error| OptionsError::Invalid {
            path: path.to_string(),
            message: e.to_string().trim_end().to_string(),
        };
        let table: toml::Table = toml::from_str(text).map_err(invalid)?;
        let keys = Options::keys();
        if let Some(key) = table.keys().find(|k| !keys.contains(k)) {
            let spelt = key.trim_start_matches('-').replace('_', "-");
            let (hint_zh, hint_en) = if keys.contains(&spelt) {
                (
                    format!("（应写作 {spelt}）"),
                    format!(" (write it {spelt})"),
                )
            } else {
                (String::new(), String::new())
            };
            return Err(OptionsError::Unknown {
                path: path.to_string(),
                key: key.clone(),
                hint_zh,
                hint_en,
            });
        }
        toml::from_str(text).map_err(invalid)
    }

    /// These settings over `under`: each one given here wins, the rest come from `under`.
    pub fn over(self, under: Options) -> Options {
        Options {
            listen: self.listen.or(under.listen),
            metrics_listen: self.metrics_listen.or(under.metrics_listen),
            data_dir: self.data_dir.or(under.data_dir),
            database: self.database.or(under.database),
            doc_cache: self.doc_cache.or(under.doc_cache),
            max_sessions: self.max_sessions.or(under.max_sessions),
            max_connections: self.max_connections.or(under.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(under.max_connections_per_address),
            max_sessions_per_device: self
                .max_sessions_per_device
                .or(under.max_sessions_per_device),
            max_devices_per_user: self.max_devices_per_user.or(under.max_devices_per_user),
            max_attachment_bytes: self.max_attachment_bytes.or(under.max_attachment_bytes),
            attachment_quota_bytes: self.attachment_quota_bytes.or(under.attachment_quota_bytes),
            attachment_grace_days: self.attachment_grace_days.or(under.attachment_grace_days),
            report_deadlines: self.report_deadlines.or(under.report_deadlines),
            task_deadlines: self.task_deadlines.or(under.task_deadlines),
            utc_offset_minutes: self.utc_offset_minutes.or(under.utc_offset_minutes),
            secure_cookies: self.secure_cookies.or(under.secure_cookies),
            tls_cert: self.tls_cert.or(under.tls_cert),
            tls_key: self.tls_key.or(under.tls_key),
            log_format: self.log_format.or(under.log_format),
        }
    }

    /// The defaults with these settings applied.
    pub fn into_config(self) -> Result<Config, OptionsError> {
        let mut config = Config::default();
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        config.metrics_listen = self.metrics_listen;
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(url) = self.database {
            if !crate::storage::postgres::is_postgres_url(&url) {
                return Err(OptionsError::Database);
            }
            config.database = Some(url);
        }
        if let Some(n) = self.doc_cache {
            config.doc_cache = n;
        }
        let limits = &mut config.limits;
        if let Some(n) = self.max_sessions {
            limits.max_sessions = n;
        }
        if let Some(n) = self.max_connections {
            limits.max_connections = n;
        }
        if let Some(n) = self.max_connections_per_address {
            limits.max_connections_per_address = n;
        }
        if let Some(n) = self.max_sessions_per_device {
            limits.max_sessions_per_device = n;
        }
        if let Some(n) = self.max_devices_per_user {
            limits.max_devices_per_user = n;
        }
        if let Some(n) = self.max_attachment_bytes {
            limits.max_attachment_bytes = n;
        }
        if let Some(n) = self.attachment_quota_bytes {
            limits.attachment_quota_bytes = n;
        }
        if let Some(days) = self.attachment_grace_days {
            limits.attachment_grace = Duration::from_secs(days.saturating_mul(24 * 3600));
        }
        if let Some(rules) = self.report_deadlines {
            config.dashboard.report_deadlines = rules;
        }
        if let Some(rules) = self.task_deadlines {
            config.dashboard.task_deadlines = rules;
        }
        if let Some(offset) = self.utc_offset_minutes {
            // Devices are told it (protocol 5) and refuse a zone no place has.
            if offset.abs() > gridsync_core::protocol::MAX_UTC_OFFSET_MINUTES {
                return Err(OptionsError::UtcOffset(offset));
            }
            config.dashboard.utc_offset_minutes = offset;
        }
        if let Some(secure) = self.secure_cookies {
            config.dashboard.secure_cookies = secure;
        }
        config.tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(OptionsError::TlsPair),
        };
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
        Ok(config)
    }
}

/// `critical,urgent,normal` in minutes, as the flag and the config file take them.
pub fn parse_deadlines(s: &str) -> Result<DeadlineRules, String> {
    let minutes: Vec<i64> = s
        .split(',')
        .map(|p| p.trim().parse::<i64>().map_err(|e| format!("{p}: {e}")))
        .collect::<Result<_, _>>()?;
    match minutes.as_slice() {
        [c, u, n] if [c, u, n].iter().all(|m| **m > 0) => Ok(DeadlineRules {
            critical_minutes: *c,
            urgent_minutes: *u,
            normal_minutes: *n,
        }),
        _ => {
            Err("give three positive minute counts: critical,urgent,normal (e.g. 20,60,120)".into())
        }
    }
}

fn deadlines_from_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DeadlineRules>, D::Error> {
    let text: String = serde::Deserialize::deserialize(d)?;
    parse_deadlines(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn task_deadlines_from_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<TaskRules>, D::Error> {
    let text: String = serde::Deserialize::deserialize(d)?;
    TaskRules::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_file_with_every_key_sets_every_setting() {
        let text = r#"
            listen = "0.0.0.0:9000"
            metrics-listen = "127.0.0.1:9100"
            data-dir = "/srv/gridsync"
            database = "postgres://gridsync@db.example:5432/county"
            doc-cache = 50
            max-sessions = 10
            max-connections = 20
            max-connections-per-address = 5
            max-sessions-per-device = 2
            max-devices-per-user = 3
            max-attachment-bytes = 1000
            attachment-quota-bytes = 5000
            attachment-grace-days = 2
            report-deadlines = "15,45,90"
            task-deadlines = "12,24,48,96,72"
            utc-offset-minutes = -300
            secure-cookies = true
            tls-cert = "relay.pem"
            tls-key = "relay.key"
            log-format = "json"
        "#;
        let options = Options::from_toml(text, "relay.toml").unwrap();
        // Every setting there is appears above: a new flag must be added to this test.
        let keys = Options::keys();
        let table: toml::Table = toml::from_str(text).unwrap();
        assert_eq!(table.len(), keys.len(), "{keys:?}");
        let config = options.into_config().unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(config.data_dir, PathBuf::from("/srv/gridsync"));
        assert_eq!(
            config.database.as_deref(),
            Some("postgres://gridsync@db.example:5432/county")
        );
        assert_eq!(config.doc_cache, 50);
        assert_eq!(config.limits.max_sessions, 10);
        assert_eq!(config.limits.max_connections, 20);
        assert_eq!(config.limits.max_connections_per_address, 5);
        assert_eq!(config.limits.max_sessions_per_device, 2);
        assert_eq!(config.limits.max_devices_per_user, 3);
        assert_eq!(config.limits.max_attachment_bytes, 1000);
        assert_eq!(config.limits.attachment_quota_bytes, 5000);
        assert_eq!(
            config.limits.attachment_grace,
            Duration::from_secs(2 * 24 * 3600)
        );
        assert_eq!(config.dashboard.report_deadlines.urgent_minutes, 45);
        assert_eq!(config.dashboard.task_deadlines.report_hours, 12);
        assert_eq!(config.dashboard.task_deadlines.decision_hours, 96);
        assert_eq!(config.dashboard.utc_offset_minutes, -300);
        assert!(config.dashboard.secure_cookies);
        assert_eq!(config.tls.map(|t| t.key), Some(PathBuf::from("relay.key")));
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn test_a_database_that_is_no_postgresql_url_is_refused() {
        let e = Options::from_toml("database = \"mysql://db/county\"", "a.toml")
            .unwrap()
            .into_config()
            .unwrap_err();
        assert!(matches!(e, OptionsError::Database), "{e}");
        assert_eq!(Config::default().database, None, "SQLite by default");
    }

    #[test]
    fn test_a_utc_offset_no_place_has_is_refused() {
        for (minutes, ok) in [(840, true), (-720, true), (841, false), (-3000, false)] {
            let options =
                Options::from_toml(&format!("utc-offset-minutes = {minutes}"), "a.toml").unwrap();
            match options.into_config() {
                Ok(c) => assert!(ok && c.dashboard.utc_offset_minutes == minutes),
                Err(e) => assert!(!ok && e.to_string().contains("不是时区"), "{e}"),
            }
        }
    }

    #[test]
    fn test_unknown_or_misspelt_keys_are_refused_by_name() {
        let e = Options::from_toml("listen = \"127.0.0.1:1\"\nmax-sesions = 3\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"max-sesions\""), "{e}");
        assert!(
            e.contains("未知的设置项") && e.contains("unknown setting"),
            "{e}"
        );
        let e = Options::from_toml("data_dir = \"x\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("write it data-dir"), "{e}");
        // A table is no setting either.
        let e = Options::from_toml("[limits]\nmax-sessions = 3\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"limits\""), "{e}");
    }

    #[test]
    fn test_a_value_of_the_wrong_kind_names_the_key() {
        let e = Options::from_toml("doc-cache = \"many\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.toml") && e.contains("doc-cache"), "{e}");
        let e = Options::from_toml("report-deadlines = \"20,60\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("critical,urgent,normal"), "{e}");
    }

    #[test]
    fn test_given_settings_win_over_those_under_them() {
        let file = Options::from_toml(
            "max-sessions = 7\nsecure-cookies = true\ntls-key = \"k.pem\"\n",
            "a.toml",
        )
        .unwrap();
        let flags = Options {
            max_sessions: Some(9),
            secure_cookies: Some(false),
            tls_cert: Some("c.pem".into()),
            ..Options::default()
        };
        let config = flags.over(file).into_config().unwrap();
        assert_eq!(config.limits.max_sessions, 9);
        assert!(!config.dashboard.secure_cookies);
        assert!(
            config.tls.is_some(),
            "a certificate and a key from two places"
        );
        let half = Options {
            tls_cert: Some("c.pem".into()),
            ..Options::default()
        };
        assert!(matches!(half.into_config(), Err(OptionsError::TlsPair)));
    }

    /// docs/operations.md holds the one table of settings: every flag with its variable, and
    /// nothing else.
    #[test]
    fn test_operations_md_lists_every_setting_with_its_variable() {
        let doc = include_str!("../../docs/operations.md");
        let mut listed: Vec<(String, String)> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.split('|').map(str::trim).skip(1);
                let key = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                let flag = cells.next()?.strip_prefix("`--")?.strip_suffix('`')?;
                let env = cells.next()?.trim_matches('`');
                (key == flag).then(|| (flag.to_string(), env.to_string()))
            })
            .collect();
        listed.sort();
        let mut wanted: Vec<(String, String)> = Options::command()
            .get_arguments()
            .filter_map(|a| {
                Some((
                    a.get_long()?.to_string(),
                    a.get_env()?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        wanted.sort();
        assert_eq!(listed, wanted);
    }
}
