//! `gridsync`: the device command line. Parses the arguments, runs one command, and turns errors
//! into a bilingual message on stderr and an exit code (2: server unreachable, 1: anything else).

mod args;
mod attachments;
mod check;
mod clock;
mod keys;
mod records;
mod schema;
mod syncing;
mod table;
mod words;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use gridsync_core::Error as CoreError;
use gridsync_core::record::ValidationError;
use gridsync_core::store::KeyProblem;

use args::{Cli, Command};
use records::ListArgs;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors exit 1, not clap's 2: exit code 2 means "server unreachable, retry".
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(cli, &mut out).and_then(|()| Ok(out.flush()?));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("错误 Error: {}", describe(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = cli.replica.as_path();
    match cli.command {
        Command::Login {
            server,
            user,
            device_name,
            ca_cert,
        } => syncing::login(dir, &server, &user, &device_name, ca_cert.as_deref(), out),
        Command::Create { kind, json } => records::create(dir, kind, &json, out),
        Command::Update { id, json } => records::update(dir, &id, &json, out),
        Command::Get { id, json } => records::get(dir, &id, json, out),
        Command::List {
            kind,
            grid,
            status,
            household,
            overdue,
            mine,
            json,
        } => {
            let args = ListArgs {
                kind,
                grid,
                status,
                household,
                overdue,
                mine,
                json,
            };
            records::list(dir, args, out)
        }
        Command::Conflicts { json } => records::conflicts(dir, json, out),
        Command::Attach {
            id,
            file,
            caption,
            original,
        } => attachments::attach(dir, &id, &file, caption, original, out),
        Command::Attachment { hash, out: to } => attachments::attachment(dir, &hash, &to, out),
        Command::Sync { json } => syncing::sync(dir, json, out),
        Command::Status { json } => syncing::status(dir, json, out),
        Command::Rekey => keys::rekey(dir, out),
        Command::Check { json } => check::check(dir, json, out),
        Command::Schema {
            kind,
            json,
            markdown,
        } => schema::schema(kind, json, markdown, out),
    }
}

/// Logs go to stderr, quiet unless `RUST_LOG` asks for more.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The message for stderr: client-core errors get a short Chinese gloss before their English text.
fn describe(err: &anyhow::Error) -> String {
    let Some(core) = err.downcast_ref::<CoreError>() else {
        return format!("{err:#}");
    };
    if let CoreError::ReplicaKey(problem) = core {
        let hint = match problem {
            KeyProblem::Missing => format!("set {} to the replica's key", keys::KEY_ENV),
            KeyProblem::Wrong => format!("check {}", keys::KEY_ENV),
            KeyProblem::NotEncrypted => format!(
                "unset {}, or encrypt the replica with `gridsync rekey`",
                keys::KEY_ENV
            ),
            _ => format!("see `gridsync rekey --help` for {}", keys::KEY_ENV),
        };
        return format!("{core} ({hint})");
    }
    if core.is_disk_full() {
        return format!(
            "本机存储空间已满，未保存，已有数据完好，请腾出空间后重试 this device's storage is \
             full: nothing was stored, what was stored before is intact; free some space and \
             try again ({core})"
        );
    }
    if core.is_damaged_replica() && !matches!(core, CoreError::Damaged(_)) {
        return format!(
            "本地数据库错误 {core}; 副本文件可能已损坏 the replica's file may be damaged: \
             `gridsync check` 会移开损坏的文件并保留未上传的修改 moves it aside and keeps the \
             unsent changes"
        );
    }
    if let CoreError::NotAllowed(_) = core {
        // The relay's refusal, word for word, already in both languages.
        return format!("{core}; 未保存 nothing was stored");
    }
    if let CoreError::Invalid(ValidationError::UnknownField {
        kind,
        field,
        nearest,
    }) = core
    {
        let hint = nearest
            .map(|n| format!("，是否想写「{n}」"))
            .unwrap_or_default();
        return format!(
            "{}没有字段「{field}」{hint}（全部字段见 `gridsync schema {kind}`） {core}",
            kind.label_zh()
        );
    }
    let gloss = match core {
        CoreError::Unreachable { url, message } => {
            return format!(
                "无法连接服务器 Cannot reach the server at {url} ({message}); \
                 本地数据未受影响 local data is untouched, run `gridsync sync` again later"
            );
        }
        CoreError::Invalid(_) => "记录无效",
        CoreError::NotFound(_) => "找不到记录",
        CoreError::WrongKind { .. } => "记录类型不符",
        CoreError::NotInitialised => "副本未初始化",
        CoreError::AlreadyInitialised(_) => "副本已初始化",
        CoreError::Sqlite(_) => "本地数据库错误",
        CoreError::CorruptDocument { .. } => "文档损坏",
        CoreError::TooDeep { .. } => "记录嵌套过深，无法使用",
        CoreError::Refused(_) => "服务器拒绝同步",
        CoreError::Protocol(_) => "协议错误",
        CoreError::Io(_) => "读写错误",
        // Already in Chinese and English.
        CoreError::UntrustedCertificate { .. } | CoreError::BadCaCertificate(_) => "",
        _ => "",
    };
    // A client-core message already includes its cause: `{:#}` would repeat it.
    if gloss.is_empty() {
        core.to_string()
    } else {
        format!("{gloss} {core}")
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    let unreachable = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<CoreError>(),
            Some(CoreError::Unreachable { .. })
        )
    });
    if unreachable { 2 } else { 1 }
}

/// `gridsync list | head` closes stdout early; that is not an error worth reporting.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
