//! Photos and files on records, for the apps: attach from a file the camera wrote or from
//! bytes, fetch another phone's on demand, save one to a file to show it.

use std::path::PathBuf;

use gridsync_core::store::{AttachOptions as CoreOptions, AttachSource, AttachmentInfo};

use crate::error::Result;
use crate::replica::Replica;

#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct AttachOptions {
    /// What the photo shows.
    #[uniffi(default = "")]
    pub caption: String,
    /// The name the record shows; by default the file's own.
    #[uniffi(default = None)]
    pub name: Option<String>,
    /// By default sniffed from the bytes (JPEG, PNG, PDF), else from the name.
    #[uniffi(default = None)]
    pub media_type: Option<String>,
    /// Keep a photo byte for byte; by default one over 1,600 px is stored upright at 1,600 px.
    #[uniffi(default = false)]
    pub original: bool,
}

/// Where this device stands with one attachment.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentState {
    pub hash: String,
    /// Every byte is here: `saveAttachment` works.
    pub here: bool,
    /// Taken on this phone: `waiting` for upload, `uploaded`, or `refused`.
    pub upload: Option<String>,
    /// Why the relay refused it (own) or will not give it (another phone's).
    pub refused: Option<String>,
    /// To be fetched at the next sync.
    pub wanted: bool,
    /// The relay does not have it yet: the phone that took it has not uploaded it.
    pub not_yet: bool,
}

impl From<AttachmentInfo> for AttachmentState {
    fn from(a: AttachmentInfo) -> AttachmentState {
        AttachmentState {
            hash: a.hash,
            here: a.complete,
            upload: a.upload,
            refused: a.refused,
            wanted: a.wanted,
            not_yet: a.not_yet,
        }
    }
}

impl From<AttachOptions> for CoreOptions {
    fn from(o: AttachOptions) -> CoreOptions {
        CoreOptions {
            caption: o.caption,
            name: o.name,
            media_type: o.media_type,
            original: o.original,
        }
    }
}

#[uniffi::export]
impl Replica {
    /// Attaches the file at `path` to record `id` and returns its hash. Stored with the
    /// record's change when it returns (read in pieces: a large video does not fill memory);
    /// uploaded at the next sync, after the records.
    pub fn attach(&self, id: String, path: String, options: AttachOptions) -> Result<String> {
        let source = AttachSource::Path(PathBuf::from(path));
        let hash = self.shared.lock().attach(&id, source, options.into())?;
        self.shared.written();
        Ok(hash)
    }

    /// [`Replica::attach`] from bytes in memory.
    pub fn attach_bytes(
        &self,
        id: String,
        bytes: Vec<u8>,
        options: AttachOptions,
    ) -> Result<String> {
        let source = AttachSource::Bytes(bytes);
        let hash = self.shared.lock().attach(&id, source, options.into())?;
        self.shared.written();
        Ok(hash)
    }

    /// Where this device stands with an attachment; none if it neither holds nor wants it.
    pub fn attachment(&self, hash: String) -> Result<Option<AttachmentState>> {
        Ok(self.shared.lock().attachment(&hash)?.map(Into::into))
    }

    /// Asks for another phone's attachment at the next sync (a live session fetches it at
    /// once). Observers are called when it has arrived.
    pub fn want_attachment(&self, hash: String) -> Result<AttachmentState> {
        let state = self.shared.lock().want_attachment(&hash)?.into();
        self.shared.written();
        Ok(state)
    }

    /// Writes a complete attachment to the file at `path` (checked against its hash first
    /// when it was fetched) and returns its size. Fails with `ATTACHMENT` when it is not here.
    pub fn save_attachment(&self, hash: String, path: String) -> Result<u64> {
        Ok(self
            .shared
            .lock()
            .save_attachment(&hash, std::path::Path::new(&path))?)
    }

    /// The bound, in bytes, of the cache of other phones' attachments (default 200 MB).
    pub fn set_attachment_cache(&self, bytes: u64) {
        let mut replica = self.shared.lock();
        let mut settings = replica.attachment_settings();
        settings.cache_bytes = bytes;
        replica.set_attachment_settings(settings);
    }
}
