//! The replica's key: read from `GRIDSYNC_REPLICA_KEY` by every command that opens the replica,
//! and `rekey`, which encrypts a plain replica or changes the key.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Result, bail};
use gridsync_core::Replica;
use gridsync_core::store::{ReplicaFile, ReplicaKey};

/// The key of the replica as it is now: `x'` + 64 hex digits + `'` (a raw 256-bit key), or a
/// passphrase. Unset: the replica is plain.
pub const KEY_ENV: &str = "GRIDSYNC_REPLICA_KEY";
/// The key `gridsync rekey` gives the replica; read from stdin when unset.
pub const NEW_KEY_ENV: &str = "GRIDSYNC_REPLICA_NEW_KEY";

/// The key in `GRIDSYNC_REPLICA_KEY`, if it is set.
pub fn replica_key() -> Result<Option<ReplicaKey>> {
    key_from(KEY_ENV)
}

fn key_from(var: &str) -> Result<Option<ReplicaKey>> {
    match std::env::var(var) {
        Ok(text) if text.is_empty() => {
            // Most likely `GRIDSYNC_REPLICA_KEY=$KEY` with KEY unset: going on without a key
            // would create or open a plain replica where an encrypted one was meant.
            bail!(
                "{var} 为空 {var} is set but empty: give the key, or unset it for a plain replica"
            )
        }
        Ok(text) => Ok(Some(ReplicaKey::parse(&text)?)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{var} 不是有效文本 {var} is not valid UTF-8")
        }
    }
}

/// Opens (or creates) the replica in `dir` with the key in `GRIDSYNC_REPLICA_KEY`, if any.
/// A damaged replica the open salvaged (or a lost journal) is said on stderr, so that it reaches
/// the person even when stdout goes to a script.
pub fn open(dir: &Path) -> Result<Replica> {
    let replica = match replica_key()? {
        Some(key) => Replica::open_with_key(dir, &key)?,
        None => Replica::open(dir)?,
    };
    if let Some(recovery) = replica.recovery() {
        eprintln!("注意 Notice: {}", recovery.message());
    }
    Ok(replica)
}

/// `gridsync rekey`: encrypts a plain replica, or gives an encrypted one a new key.
pub fn rekey(dir: &Path, out: &mut dyn Write) -> Result<()> {
    let old = replica_key()?;
    let state = Replica::inspect(dir)?;
    match (state, &old) {
        (ReplicaFile::Missing, _) => bail!(
            "副本不存在 no replica in {}: run `gridsync login` first, or pass --replica DIR",
            dir.display()
        ),
        (ReplicaFile::Plain, Some(_)) => bail!(
            "此副本未加密 the replica in {} is not encrypted: unset {KEY_ENV} and give the new \
             key in {NEW_KEY_ENV} (or on stdin) to encrypt it",
            dir.display()
        ),
        _ => {}
    }
    let new = match key_from(NEW_KEY_ENV)? {
        Some(key) => key,
        None => read_new_key()?,
    };
    Replica::rekey(dir, old.as_ref(), &new)?;
    if old.is_some() {
        writeln!(
            out,
            "密钥已更换 The replica's key was changed: set {KEY_ENV} to the new key from now on"
        )?;
    } else {
        writeln!(
            out,
            "副本已加密 The replica in {} is encrypted: every command now needs {KEY_ENV}",
            dir.display()
        )?;
    }
    Ok(())
}

/// The new key from stdin: typed twice without echo on a terminal, else the first line.
fn read_new_key() -> Result<ReplicaKey> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            bail!("需要新密钥 a new key is needed: set {NEW_KEY_ENV}, or pipe it on stdin");
        }
        return Ok(ReplicaKey::parse(text)?);
    }
    let first = prompt("新密钥 New key: ")?;
    let second = prompt("再输入一次 Again: ")?;
    if first != second {
        bail!("两次输入不一致 the two keys differ; nothing was changed");
    }
    Ok(ReplicaKey::parse(&first)?)
}

fn prompt(text: &str) -> Result<String> {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let _ = std::process::Command::new("stty").arg("-echo").status();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    let _ = std::process::Command::new("stty").arg("echo").status();
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
