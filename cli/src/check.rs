//! `check`: the whole replica checked, and a damaged one salvaged.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use gridsync_core::Replica;
use serde_json::json;

use crate::keys;
use crate::records::open_existing;

/// Checks the replica in `dir` (`Replica::check`); when something is wrong, moves the file
/// aside and keeps its unsent changes in a fresh replica (`Replica::salvage`), and says what
/// happened. A damage the open found itself was salvaged there (and said on stderr).
pub fn check(dir: &Path, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let mut replica = open_existing(dir)?;
    let report = replica.check()?;
    let recovery = if report.is_sound() {
        None
    } else {
        drop(replica);
        let key = keys::replica_key()?;
        Some(Replica::salvage(
            dir,
            key.as_ref(),
            &report.problems.join("; "),
        )?)
    };
    if as_json {
        let json = json!({
            "sound": report.is_sound(),
            "problems": report.problems,
            "documents": report.documents,
            "unsent_changes": report.unsent_changes,
            "recovery": recovery,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        return Ok(());
    }
    match recovery {
        None => writeln!(
            out,
            "副本完好：已检查 {} 条记录、{} 条未上传的修改。\nThe replica is sound: {} records \
             and {} unsent changes checked.",
            report.documents, report.unsent_changes, report.documents, report.unsent_changes
        )?,
        Some(recovery) => writeln!(
            out,
            "{}\n请运行 `gridsync sync` 下载其余数据。Run `gridsync sync` to download the rest.",
            recovery.message()
        )?,
    }
    Ok(())
}
