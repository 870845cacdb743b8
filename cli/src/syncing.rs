//! `sync` and `status`: one sync session with the server, and where this replica stands.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use gridsync_core::Identity;
use gridsync_core::protocol::Cursor;
use gridsync_core::store::DB_FILE;
use gridsync_core::store::{AttachmentStatus, SyncStatus};
use gridsync_core::transport::{self, Progress, SyncReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::records::open_existing;
use crate::table;

/// Signs this device in and sets up its replica in `dir`. A failed sign-in leaves no replica.
pub fn login(
    dir: &Path,
    server: &str,
    user: &str,
    device_name: &str,
    ca_cert: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let server = server.trim();
    if !["http://", "https://", "ws://", "wss://"]
        .iter()
        .any(|scheme| server.starts_with(scheme))
    {
        bail!(
            "服务器地址无效 invalid server address `{server}`: use https://host (or http://host:port \
             on this machine or a trusted local network)"
        );
    }
    let ca_pem = match ca_cert {
        Some(file) => {
            let pem = std::fs::read_to_string(file).with_context(|| {
                format!(
                    "无法读取 CA 证书 cannot read the CA certificate {}",
                    file.display()
                )
            })?;
            transport::check_ca_certificate(&pem)?;
            Some(pem)
        }
        None => None,
    };
    if transport::is_cleartext_remote(server) {
        eprintln!(
            "警告 Warning: {server} 未加密，密码和设备令牌将以明文传输 is not encrypted: the \
             password and the device token travel in clear. Use https:// unless this network is \
             trusted"
        );
    }
    let existed = dir.join(DB_FILE).exists();
    if existed {
        let replica = crate::keys::open(dir)?;
        if let Ok(identity) = replica.identity()
            && identity.worker_id != user.trim()
        {
            bail!(
                "副本已登录 this replica is already signed in as {}: use another --replica DIR",
                identity.worker_id
            );
        }
    }
    // A bad key is refused before the password is asked for.
    crate::keys::replica_key()?;
    let password = read_password()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // With GRIDSYNC_REPLICA_KEY set, a new replica is created encrypted with it.
    let mut replica = crate::keys::open(dir)?;
    let result = runtime.block_on(transport::sign_in_with_ca(
        &mut replica,
        server,
        user.trim(),
        &password,
        device_name,
        ca_pem.as_deref(),
    ));
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => {
            drop(replica);
            if !existed {
                // Nothing was written worth keeping: leave no half-made replica behind.
                let _ = std::fs::remove_dir_all(dir);
            }
            if let gridsync_core::Error::Unreachable { url, message } = &e {
                bail!(
                    "无法连接服务器 Cannot reach the server at {url} ({message}); 未登录 not signed \
                     in: check the address and run `gridsync login` again"
                );
            }
            return Err(e.into());
        }
    };
    writeln!(
        out,
        "已登录 Signed in as {} ({}, {}): grids {}; replica in {}",
        answer.display_name,
        answer.username,
        answer.role,
        answer.grids.join(", "),
        dir.display()
    )?;
    Ok(())
}

/// Reads the password: prompted for (without echo) on a terminal, else the first line of stdin.
fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("密码 Password: ");
        let _ = std::io::stderr().flush();
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    read?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("需要密码 a password is needed (type it, or pipe it on stdin)");
    }
    Ok(password)
}

pub fn sync(dir: &Path, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let mut replica = open_existing(dir)?;
    let bar = ProgressBar::hidden();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(transport::sync_once(&mut replica, progress_callback(&bar)));
    bar.finish_and_clear();
    let report = result?;
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(out, "{}", summary(&report))?;
    }
    if report.stats.attachments_refused > 0 {
        eprintln!(
            "注意 Note: 服务器拒绝了 {n} 个附件 the server refused {n} attachment(s); \
             run `gridsync status` for the reasons",
            n = report.stats.attachments_refused
        );
    }
    if report.stats.rejected > 0 {
        eprintln!(
            "注意 Note: 服务器拒绝了 {n} 条修改 the server rejected {n} change(s); \
             run `gridsync status` for the reasons",
            n = report.stats.rejected
        );
    }
    Ok(())
}

/// A progress bar on stderr for the catch-up, only when stderr is a terminal and there is
/// something to catch up on.
fn progress_callback(bar: &ProgressBar) -> Option<Box<dyn FnMut(Progress) + Send + 'static>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = bar.clone();
    let mut shown = false;
    Some(Box::new(move |p: Progress| {
        if p.total == 0 {
            return;
        }
        if !shown {
            shown = true;
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("接收中 Receiving");
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_length(p.total);
        bar.set_position(p.done);
    }))
}

fn summary(report: &SyncReport) -> String {
    let kb = (report.bytes_sent + report.bytes_received) as f64 / 1024.0;
    let s = &report.stats;
    let mut text = format!(
        "同步完成 Sync done: sent {} changes, received {} changes ({kb:.1} KB)",
        s.changes_sent, s.changes_received
    );
    if s.attachments_uploaded + s.attachments_refused + s.attachments_downloaded > 0 {
        text.push_str(&format!(
            "; 附件 attachments: {} uploaded, {} refused, {} fetched",
            s.attachments_uploaded, s.attachments_refused, s.attachments_downloaded
        ));
    }
    text
}

pub fn status(dir: &Path, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let replica = open_existing(dir)?;
    let identity = replica.identity()?;
    let status = replica.status()?;
    let attachments = replica.attachment_status()?;
    let zone = (replica.utc_offset(), replica.zone_source());
    if as_json {
        let mut json = status_json(identity, &status)?;
        if let Value::Object(obj) = &mut json {
            obj.insert("attachments".into(), serde_json::to_value(&attachments)?);
            obj.insert("time_zone".into(), json!(crate::clock::describe(zone.0)));
            obj.insert("time_zone_source".into(), serde_json::to_value(zone.1)?);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        out.write_all(render_status(identity, &status, &attachments).as_bytes())?;
        writeln!(out, "{}", crate::clock::says(zone.0, zone.1))?;
    }
    Ok(())
}

/// Identity and sync status as one flat JSON object; cursor hashes as hex.
fn status_json(identity: &Identity, status: &SyncStatus) -> Result<Value> {
    let mut obj = Map::new();
    for part in [
        serde_json::to_value(identity)?,
        serde_json::to_value(status)?,
    ] {
        if let Value::Object(map) = part {
            obj.extend(map);
        }
    }
    let cursors: Vec<Value> = status.cursors.iter().map(cursor_json).collect();
    obj.insert("cursors".into(), Value::Array(cursors));
    Ok(Value::Object(obj))
}

fn cursor_json(c: &Cursor) -> Value {
    json!({
        "grid": c.grid,
        "seq": c.seq,
        "hash": c.hash.map(|h| hex(&h)),
    })
}

fn render_status(
    identity: &Identity,
    status: &SyncStatus,
    attachments: &AttachmentStatus,
) -> String {
    let cursors = status
        .cursors
        .iter()
        .map(|c| format!("{} @ {}", c.grid, c.seq))
        .collect::<Vec<_>>()
        .join(", ");
    let mut pairs = vec![
        ("工作人员 Worker".to_string(), identity.worker_id.clone()),
        ("网格 Grids".to_string(), identity.grids.join(", ")),
        ("服务器 Server".to_string(), identity.server_url.clone()),
        ("设备 Device".to_string(), identity.device_id.clone()),
        ("记录 Records".to_string(), status.records.to_string()),
        (
            "未发送 Unsent".to_string(),
            format!("{} 条修改 changes", status.unsent_changes),
        ),
        (
            "上次同步 Last sync".to_string(),
            status
                .last_sync
                .clone()
                .unwrap_or_else(|| "从未 never".into()),
        ),
        ("游标 Cursors".to_string(), cursors),
        (
            "被拒绝 Rejected".to_string(),
            format!("{} 条修改 changes", status.rejected.len()),
        ),
    ];
    for r in &status.rejected {
        pairs.push((format!("  {}", r.doc_id), table::clean(&r.reason)));
    }
    pairs.push((
        "待上传附件 Attachments waiting".to_string(),
        format!(
            "{} ({:.1} MB)",
            attachments.waiting,
            attachments.waiting_bytes as f64 / 1048576.0
        ),
    ));
    pairs.push((
        "附件缓存 Attachment cache".to_string(),
        format!(
            "{:.1} / {:.0} MB",
            attachments.cached_bytes as f64 / 1048576.0,
            attachments.cache_bound as f64 / 1048576.0
        ),
    ));
    pairs.push((
        "被拒绝的附件 Attachments refused".to_string(),
        attachments.refused.len().to_string(),
    ));
    for r in &attachments.refused {
        pairs.push((format!("  {}", r.hash), table::clean(&r.reason)));
    }
    table::key_values(&pairs)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_summary_names_changes_and_size() {
        let mut report = SyncReport::default();
        report.stats.changes_sent = 3;
        report.stats.changes_received = 7;
        report.bytes_sent = 1024;
        report.bytes_received = 512;
        assert_eq!(
            summary(&report),
            "同步完成 Sync done: sent 3 changes, received 7 changes (1.5 KB)"
        );
    }

    #[test]
    fn test_hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
