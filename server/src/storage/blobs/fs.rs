//! Blobs as files under the data directory: `attachments/ab/<hex>` once complete (`ab` the
//! hash's first two hex digits, so no directory holds more than a 256th of them), and
//! `attachments/partial/<hex>` while an upload is under way. A partial file only grows at its
//! end, each piece fsynced before it is acknowledged; completing it is one rename, after its
//! SHA-256 was checked. Nothing reads a partial file's bytes but that check.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use gridsync_core::protocol::Hash;
use gridsync_core::record::attachment::{hash_text, parse_hash};
use sha2::{Digest, Sha256};

use super::{BlobRemoval, BlobStore, Finished, PartialBlob, Stand};
use crate::storage::{Result, StorageError};

/// The directory under the data directory that holds the attachments.
pub const ATTACHMENTS_DIR: &str = "attachments";
const PARTIAL_DIR: &str = "partial";
/// Uploads of different blobs go on side by side; two of the same blob (two sessions of one
/// device, or two devices that took the same photo) take turns by these locks.
const STRIPES: usize = 64;
/// What the hash check reads at a time.
const READ_PIECE: usize = 64 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
    stripes: Arc<Vec<tokio::sync::Mutex<()>>>,
}

impl FsBlobStore {
    /// The store under `data_dir` (its directories are made when the first piece arrives).
    pub fn new(data_dir: &Path) -> Arc<FsBlobStore> {
        Arc::new(FsBlobStore {
            root: data_dir.join(ATTACHMENTS_DIR),
            stripes: Arc::new((0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect()),
        })
    }

    fn stripe_of(&self, hash: &Hash) -> usize {
        usize::from(hash[0]) % STRIPES
    }

    fn stripe(&self, hash: &Hash) -> &tokio::sync::Mutex<()> {
        &self.stripes[self.stripe_of(hash)]
    }

    fn paths(&self, hash: &Hash) -> Paths {
        let hex = hash_text(hash);
        Paths {
            complete: self.root.join(&hex[..2]).join(&hex),
            partial: self.root.join(PARTIAL_DIR).join(&hex),
        }
    }
}

#[derive(Clone)]
struct Paths {
    complete: PathBuf,
    partial: PathBuf,
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Disk(format!("attachment task failed: {e}")))?
        .map_err(disk)
}

fn disk(e: io::Error) -> StorageError {
    // ENOSPC and EDQUOT: nothing of the piece is kept, and uploads go on once there is room.
    if e.kind() == io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122)) {
        StorageError::Full
    } else {
        StorageError::Disk(format!("attachment store: {e}"))
    }
}

fn len_of(path: &Path) -> io::Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn stand_of(paths: &Paths) -> io::Result<Stand> {
    if let Some(len) = len_of(&paths.complete)? {
        return Ok(Stand::Complete(len));
    }
    Ok(len_of(&paths.partial)?.map_or(Stand::Missing, Stand::Partial))
}

/// Makes a directory's entries (a new file, a rename) survive a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::other("an attachment's path has no directory"))
}

fn append_piece(paths: &Paths, offset: u64, data: &[u8]) -> io::Result<Stand> {
    let stand = stand_of(paths)?;
    let Some(len) = stand.append_at(offset, data) else {
        return Ok(stand);
    };
    let dir = parent(&paths.partial)?;
    let new = stand == Stand::Missing;
    if new {
        fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.partial)?;
    let written = file.write_all(data).and_then(|()| file.sync_data());
    if let Err(e) = written {
        // Keep the prefix what was acknowledged: a piece half written (a full disk) is gone.
        let _ = file.set_len(len).and_then(|()| file.sync_data());
        return Err(e);
    }
    if new {
        sync_dir(dir)?;
    }
    Ok(Stand::Partial(len + data.len() as u64))
}

fn finish_blob(hash: &Hash, paths: &Paths) -> io::Result<Finished> {
    if let Some(len) = len_of(&paths.complete)? {
        return Ok(Finished::Complete(len));
    }
    let mut file = match File::open(&paths.partial) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Finished::Missing),
        Err(e) => return Err(e),
    };
    let mut hasher = Sha256::new();
    let mut piece = vec![0u8; READ_PIECE];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut piece)?;
        if n == 0 {
            break;
        }
        hasher.update(&piece[..n]);
        len += n as u64;
    }
    drop(file);
    let partial_dir = parent(&paths.partial)?;
    if hasher.finalize().as_slice() != hash.as_slice() {
        fs::remove_file(&paths.partial)?;
        sync_dir(partial_dir)?;
        return Ok(Finished::Mismatch);
    }
    let dir = parent(&paths.complete)?;
    fs::create_dir_all(dir)?;
    fs::rename(&paths.partial, &paths.complete)?;
    sync_dir(dir)?;
    sync_dir(partial_dir)?;
    Ok(Finished::Complete(len))
}

fn read_range(path: &Path, offset: u64, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if offset >= len {
        return Ok(Some(Vec::new()));
    }
    let want = usize::try_from(len - offset).map_or(max, |rest| rest.min(max));
    file.seek(SeekFrom::Start(offset))?;
    let mut out = vec![0u8; want];
    file.read_exact(&mut out)?;
    Ok(Some(out))
}

fn remove_both(paths: &Paths) -> io::Result<bool> {
    let complete = remove_if_there(&paths.complete)?;
    let partial = remove_if_there(&paths.partial)?;
    Ok(complete || partial)
}

fn remove_if_there(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The files of a directory whose names are hashes (anything else is left alone).
fn hashes_in(dir: &Path) -> io::Result<Vec<(Hash, fs::Metadata)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(hash) = entry.file_name().to_str().and_then(parse_hash) else {
            continue;
        };
        let meta = entry.metadata()?;
        if meta.is_file() {
            out.push((hash, meta));
        }
    }
    Ok(out)
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stand(&self, hash: &Hash) -> Result<Stand> {
        let paths = self.paths(hash);
        blocking(move || stand_of(&paths)).await
    }

    async fn append(&self, hash: &Hash, offset: u64, data: &[u8]) -> Result<Stand> {
        let _turn = self.stripe(hash).lock().await;
        let paths = self.paths(hash);
        let data = data.to_vec();
        blocking(move || append_piece(&paths, offset, &data)).await
    }

    async fn finish(&self, hash: &Hash) -> Result<Finished> {
        let _turn = self.stripe(hash).lock().await;
        let paths = self.paths(hash);
        let hash = *hash;
        blocking(move || finish_blob(&hash, &paths)).await
    }

    async fn read(&self, hash: &Hash, offset: u64, max: usize) -> Result<Option<Vec<u8>>> {
        let path = self.paths(hash).complete;
        blocking(move || read_range(&path, offset, max)).await
    }

    async fn remove(&self, hash: &Hash) -> Result<bool> {
        let _turn = self.stripe(hash).lock().await;
        let paths = self.paths(hash);
        blocking(move || remove_both(&paths)).await
    }

    fn removal(&self, hash: &Hash) -> BlobRemoval {
        let (stripes, i) = (self.stripes.clone(), self.stripe_of(hash));
        let paths = self.paths(hash);
        Box::new(move || {
            // On a blocking thread (inside the database's transaction): waits for a piece of
            // the same blob being stored to be done.
            let _turn = stripes[i].blocking_lock();
            remove_both(&paths).map(drop).map_err(disk)
        })
    }

    async fn partials(&self) -> Result<Vec<PartialBlob>> {
        let dir = self.root.join(PARTIAL_DIR);
        blocking(move || {
            hashes_in(&dir)?
                .into_iter()
                .map(|(hash, meta)| {
                    Ok(PartialBlob {
                        hash,
                        len: meta.len(),
                        touched: meta.modified()?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn complete(&self) -> Result<Vec<Hash>> {
        let root = self.root.clone();
        blocking(move || {
            let mut out = Vec::new();
            for b in 0..=255u8 {
                let dir = root.join(hex::encode([b]));
                out.extend(hashes_in(&dir)?.into_iter().map(|(h, _)| h));
            }
            Ok(out)
        })
        .await
    }
}
