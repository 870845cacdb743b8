//! Fixture files of golden bytes: hex text, 64 digits a line, after `#` comment lines that say
//! what the bytes are. Shared by the golden tests of this crate (`mod fixture;`).
//!
//! `GRIDSYNC_BLESS=1` writes the fixtures from the samples instead of comparing: for a change
//! of format made on purpose (a new protocol version, a new migration), never to make a test
//! pass (docs/protocol.md §12).

#![allow(dead_code)] // each test file uses its own part of it

use std::path::{Path, PathBuf};

/// Where the fixtures live: `client-core/tests/golden/<dir>/`.
pub fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(sub)
}

pub fn blessing() -> bool {
    std::env::var("GRIDSYNC_BLESS").is_ok_and(|v| v == "1")
}

/// Hex text of a fixture: the comment, then the bytes in lines of 64 digits.
pub fn render(comment: &str, bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in comment.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    let hex = hex::encode(bytes);
    for chunk in hex.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// The bytes of a fixture's text: comment lines and whitespace skipped.
pub fn parse(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).map_err(|e| format!("not hex: {e}"))
}

/// Compares `bytes` with the fixture `name` (or writes it when blessing). Returns the fixture's
/// bytes (what the test then decodes), or why it does not match.
pub fn check(sub: &str, name: &str, comment: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let path = dir(sub).join(format!("{name}.hex"));
    if blessing() {
        std::fs::create_dir_all(dir(sub)).map_err(|e| e.to_string())?;
        std::fs::write(&path, render(comment, bytes)).map_err(|e| e.to_string())?;
        return Ok(bytes.to_vec());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (a new fixture is written by GRIDSYNC_BLESS=1)",
            path.display()
        )
    })?;
    let fixed = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if fixed != bytes {
        return Err(format!(
            "{name}: the bytes changed. A change to what is on the wire or on disk must be \
             deliberate (docs/protocol.md §12); if it is, bless it.\n  fixture {}\n  now     {}",
            hex::encode(&fixed),
            hex::encode(bytes)
        ));
    }
    Ok(fixed)
}

/// The fixtures present in `sub`, by name: every one must belong to a sample.
pub fn names(sub: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir(sub))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".hex"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Panics with every failure at once, so one run shows all that changed.
pub fn report(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} golden fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
