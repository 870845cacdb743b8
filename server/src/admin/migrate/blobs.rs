//! The attachments' files of `admin migrate`, copied when the relay on PostgreSQL keeps its
//! data directory elsewhere.

use std::path::{Path, PathBuf};

use super::{BlobCopy, Result};
use crate::admin::AdminError;
use crate::storage::blobs::ATTACHMENTS_DIR;

pub(super) fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn blob_path(dir: &Path, hash: &[u8]) -> PathBuf {
    let hex = hex::encode(hash);
    dir.join(ATTACHMENTS_DIR).join(&hex[..2]).join(&hex)
}

pub(super) fn missing_blobs(from: &Path, hashes: &[Vec<u8>]) -> Vec<String> {
    hashes
        .iter()
        .filter(|h| !blob_path(from, h).is_file())
        .map(hex::encode)
        .collect()
}

/// Copies the complete attachments' files `hashes` names from `from` to `to`, each to a
/// temporary name then renamed (the relay only ever reads whole files), skipping those there
/// already with the same size.
pub(super) fn copy_blobs(from: &Path, to: &Path, hashes: &[Vec<u8>]) -> Result<BlobCopy> {
    let mut done = BlobCopy {
        to: Some(to.to_path_buf()),
        ..BlobCopy::default()
    };
    let io = |path: &Path, e: std::io::Error| {
        AdminError::Invalid(format!(
            "无法复制附件文件 cannot copy an attachment's file {}: {e}",
            path.display()
        ))
    };
    for hash in hashes {
        let (src, dst) = (blob_path(from, hash), blob_path(to, hash));
        let Ok(meta) = std::fs::metadata(&src) else {
            done.missing.push(hex::encode(hash));
            continue;
        };
        if std::fs::metadata(&dst).is_ok_and(|d| d.len() == meta.len()) {
            done.identical += 1;
            continue;
        }
        let dir = dst.parent().unwrap_or(to);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let staged = dir.join(format!(".{}.migrating", hex::encode(hash)));
        std::fs::copy(&src, &staged).map_err(|e| io(&src, e))?;
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&staged, e))?;
        std::fs::rename(&staged, &dst).map_err(|e| io(&dst, e))?;
        done.copied += 1;
        done.bytes += meta.len();
    }
    Ok(done)
}
