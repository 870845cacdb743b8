//! The command line: global options and one subcommand per task.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use gridsync_core::record::Kind;

/// gridsync 网格同步: records, sync and status on this device's local replica.
#[derive(Debug, Parser)]
#[command(name = "gridsync", version, about, long_about = None, after_help = KEY_HELP)]
pub struct Cli {
    /// Replica directory 本地副本目录
    #[arg(
        long,
        global = true,
        env = "GRIDSYNC_REPLICA",
        default_value = "./replica",
        value_name = "DIR"
    )]
    pub replica: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// 登录 Sign this device in (once, online); the password is prompted for or read from stdin
    Login {
        /// Server address, e.g. http://10.0.0.5:8080
        #[arg(long, value_name = "URL")]
        server: String,
        /// Username given by the community office
        #[arg(long, value_name = "U")]
        user: String,
        /// A name for this device in the office's device list
        #[arg(long, value_name = "NAME", default_value = "")]
        device_name: String,
        /// 额外信任的 CA 证书 A CA certificate (PEM) to trust for an https:// relay besides the
        /// public ones, e.g. a community intranet's own; kept in the replica for every later sync
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<std::path::PathBuf>,
    },
    /// 新建 Create a record and print its id (fields: `gridsync schema KIND`)
    Create {
        /// household | visit | patrol | case | report | unit | volunteer | activity | stock | task
        #[arg(value_parser = parse_kind, value_name = "KIND")]
        kind: Kind,
        /// The fields: inline JSON, @file.json, or - for stdin
        #[arg(long = "json", value_name = "JSON")]
        json: String,
    },
    /// 修改 Apply a partial update (JSON merge patch) to a record and print its id
    Update {
        id: String,
        /// The changed fields: inline JSON, @file.json, or - for stdin
        #[arg(long = "json", value_name = "JSON")]
        json: String,
    },
    /// 查看 Show one record
    Get {
        id: String,
        /// Print the fields as JSON
        #[arg(long)]
        json: bool,
    },
    /// 列表 List records of one kind from the local index
    List {
        /// household | visit | patrol | case | report | unit | volunteer | activity | stock | task
        #[arg(value_parser = parse_kind, value_name = "KIND")]
        kind: Kind,
        /// Only records of this grid
        #[arg(long, value_name = "G")]
        grid: Option<String>,
        /// Case or report status, or a visit's outcome
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// Only records of this household
        #[arg(long, value_name = "H")]
        household: Option<String>,
        /// Only records due before today (UTC)
        #[arg(long)]
        overdue: bool,
        /// 我的 Only what is assigned to me and not closed, soonest due first (for tasks: my
        /// work plan, with the households due for a visit today)
        #[arg(long)]
        mine: bool,
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// 冲突 Records where concurrent edits left several values in a field
    Conflicts {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// 附件 Attach a photo or file to a record and print its hash; photos over 1,600 px are
    /// stored upright at 1,600 px (JPEG) unless --original. Uploaded at the next sync, after
    /// the records
    Attach {
        id: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// 说明 What the photo shows
        #[arg(long, value_name = "TEXT")]
        caption: Option<String>,
        /// 原图 Keep the file byte for byte
        #[arg(long)]
        original: bool,
    },
    /// 取附件 Write an attachment to a file, fetching it from the server first if this device
    /// lacks it
    #[command(after_help = ATTACHMENT_HELP)]
    Attachment {
        /// The attachment's hash (64 hex digits, as a record's attachments name it)
        hash: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// 同步 Upload unsent changes and receive new ones, once
    Sync {
        /// Print the sync report as JSON
        #[arg(long)]
        json: bool,
    },
    /// 状态 Unsent and rejected changes, attachments waiting or refused, last sync, cursors and
    /// identity
    Status {
        /// Print a JSON object
        #[arg(long)]
        json: bool,
    },
    /// 检查 Check the replica's file is whole; a damaged one is moved aside and its unsent
    /// changes kept
    #[command(after_help = CHECK_HELP)]
    Check {
        /// Print the findings as JSON
        #[arg(long)]
        json: bool,
    },
    /// 加密 Encrypt a plain replica, or change an encrypted replica's key
    #[command(after_help = REKEY_HELP)]
    Rekey,
    /// 字段说明 The kinds of record and the fields each takes (no replica needed)
    Schema {
        /// Only this kind: household | visit | patrol | case | report | unit | volunteer |
        /// activity | stock | task
        #[arg(value_parser = parse_kind, value_name = "KIND")]
        kind: Option<Kind>,
        /// Print JSON for programs
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print docs/records.md (every kind)
        #[arg(long, conflicts_with = "kind")]
        markdown: bool,
    },
}

const KEY_HELP: &str = "\
Encrypted replica 加密副本: every command reads the replica's key from GRIDSYNC_REPLICA_KEY, either
x'<64 hex digits>' (a raw 256-bit key) or a passphrase. `gridsync login` with it set creates an
encrypted replica; a replica created with a key needs it for every later command.";

const ATTACHMENT_HELP: &str = "\
Attachments of others are fetched only when asked for, and kept in a cache of at most
GRIDSYNC_ATTACHMENT_CACHE_MB megabytes (default 200): past it the least recently used are
removed again (never this device's own photos before they are uploaded).";

const REKEY_HELP: &str = "\
GRIDSYNC_REPLICA_KEY is the key the replica has now (unset: the replica is plain and gets
encrypted). The new key comes from GRIDSYNC_REPLICA_NEW_KEY, or from stdin (typed twice on a
terminal). Every record and unsent change is kept; an interruption leaves the old replica or the
new one. Close every other gridsync process using the replica first.";

const CHECK_HELP: &str = "\
Reads every page of the replica (SQLite's integrity check, and SQLCipher's page check when it is
encrypted), loads every record and decodes every unsent change. A damaged replica is renamed to
replica.sqlite3.damaged-<time> in the same folder, and a new one keeps this device's sign-in and
every unsent change that could still be read; the next `gridsync sync` downloads the rest from
the server. Any command checks the replica by itself when the last one did not end (killed, power
lost), and salvages it when it is damaged.";

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.trim().parse::<Kind>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn test_login_takes_server_and_user() {
        let cli = Cli::try_parse_from(["gridsync", "login", "--server", "http://s", "--user", "w"])
            .unwrap();
        match cli.command {
            Command::Login { server, user, .. } => {
                assert_eq!((server.as_str(), user.as_str()), ("http://s", "w"))
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["gridsync", "login", "--server", "http://s"]).is_err());
    }

    #[test]
    fn test_unknown_kind_is_refused() {
        assert!(Cli::try_parse_from(["gridsync", "list", "households"]).is_err());
        assert!(Cli::try_parse_from(["gridsync", "list", "case"]).is_ok());
    }
}
