//! `attach` and `attachment`: photos and files on records. The bytes stay in the replica (in its
//! encrypted file when it is encrypted); `sync` uploads them after the records, and fetches
//! others' ones only when `attachment` asks for them.

use std::io::Write;
use std::path::Path;

use anyhow::{Result, bail};
use gridsync_core::Error as CoreError;
use gridsync_core::store::{
    AttachOptions, AttachSource, AttachmentInfo, AttachmentSettings, DEFAULT_CACHE_BYTES, Replica,
};
use gridsync_core::transport;

use crate::records::open_existing;

/// The cache of fetched attachments, in MB (default 200).
pub const CACHE_ENV: &str = "GRIDSYNC_ATTACHMENT_CACHE_MB";

/// The replica's attachment settings from the environment.
pub fn settings() -> Result<AttachmentSettings> {
    let mut settings = AttachmentSettings::default();
    if let Ok(text) = std::env::var(CACHE_ENV) {
        let Ok(mb) = text.trim().parse::<u64>() else {
            bail!(
                "{CACHE_ENV} 应为兆字节数 must be a number of megabytes (default {}), not `{text}`",
                DEFAULT_CACHE_BYTES >> 20
            );
        };
        settings.cache_bytes = mb.saturating_mul(1024 * 1024);
    }
    Ok(settings)
}

pub fn attach(
    dir: &Path,
    id: &str,
    file: &Path,
    caption: Option<String>,
    original: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut replica = open_existing(dir)?;
    let options = AttachOptions {
        caption: caption.unwrap_or_default(),
        original,
        ..AttachOptions::default()
    };
    let hash = replica.attach(id, AttachSource::Path(file.to_path_buf()), options)?;
    writeln!(out, "{hash}")?;
    Ok(())
}

/// Writes an attachment to `to`; one this replica lacks is wanted and fetched by one sync first.
pub fn attachment(dir: &Path, hash: &str, to: &Path, out: &mut dyn Write) -> Result<()> {
    let mut replica = open_existing(dir)?;
    let here = replica.attachment(hash)?.is_some_and(|a| a.complete);
    if !here {
        replica.want_attachment(hash)?;
        fetch(&mut replica, hash)?;
    }
    let size = replica.save_attachment(hash, to)?;
    writeln!(
        out,
        "已保存 Saved {} ({size} bytes) to {}",
        hash,
        to.display()
    )?;
    Ok(())
}

fn fetch(replica: &mut Replica, hash: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Err(e) = runtime.block_on(transport::sync_once(replica, None)) {
        if let CoreError::Unreachable { url, message } = &e {
            bail!(
                "无法连接服务器，附件 {hash} 未取到 cannot reach the server at {url} ({message}): \
                 attachment {hash} was not fetched; run this again when online"
            );
        }
        return Err(e.into());
    }
    match replica.attachment(hash)? {
        Some(AttachmentInfo { complete: true, .. }) => Ok(()),
        Some(AttachmentInfo {
            refused: Some(reason),
            ..
        }) => bail!("服务器不提供附件 {hash} the relay will not give attachment {hash}: {reason}"),
        Some(AttachmentInfo { not_yet: true, .. }) => bail!(
            "附件 {hash} 尚未由拍摄的设备上传，请稍后再试 attachment {hash} is not uploaded yet by \
             the device that took it: try again later"
        ),
        _ => bail!(
            "附件 {hash} 未取到 attachment {hash} did not arrive: the relay may not take \
             attachments yet (protocol 4); try again later"
        ),
    }
}
