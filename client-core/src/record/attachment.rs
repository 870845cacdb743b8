//! Photos and files on records. An attachment is immutable bytes named by their SHA-256; a
//! record refers to it in its `attachments` field with the media type, size, image size and a
//! caption. The bytes never enter the Automerge document (documents stay small): they travel
//! after the records, in chunks (`protocol::BlobPut`, `protocol::BlobGet`), and whoever may read
//! a record that refers to an attachment may fetch it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ValidationError;
use super::schema::{Field, FieldType as T};
use crate::protocol::Hash;

/// The field every kind that carries photos declares with [`FIELD`].
pub const FIELD_NAME: &str = "attachments";

/// The largest attachment a record may name. The relay's own limit (`max_attachment_bytes`) may
/// be lower; this one bounds what any relay is asked to take.
pub const MAX_ATTACHMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The most attachments one record may name (a dispatched task carries up to four photos; a
/// case collects its papers over months).
pub const MAX_ATTACHMENTS: usize = 50;

/// One attachment as a record names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The SHA-256 of the bytes, 64 lowercase hex digits.
    pub hash: String,
    /// `image/jpeg`, `application/pdf`, …
    pub media_type: String,
    /// In bytes.
    pub size: u64,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub caption: String,
    /// The file's name where it came from a file.
    #[serde(default)]
    pub name: Option<String>,
    /// When and by whom it was attached (stamped on the device).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub by: Option<String>,
}

/// The parts of an [`Attachment`].
pub const PARTS: &[Field] = &[
    Field::new("hash", "内容摘要", "SHA-256", T::Name).required(),
    Field::new("media_type", "类型", "Media type", T::Name).required(),
    Field::new("size", "大小（字节）", "Size (bytes)", T::Number).required(),
    Field::new("width", "宽（像素）", "Width (px)", T::Number),
    Field::new("height", "高（像素）", "Height (px)", T::Number),
    Field::new("caption", "说明", "Caption", T::Text),
    Field::new("name", "文件名", "File name", T::Name),
    Field::new("at", "时间", "Time", T::Event),
    Field::new("by", "添加人", "Added by", T::Name),
];

/// The `attachments` field of a kind's spec.
pub const FIELD: Field = Field::new(
    FIELD_NAME,
    "照片和附件",
    "Photos and files",
    T::Entries(PARTS),
);

/// What a store or a relay needs of one attachment a record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRef {
    pub hash: Hash,
    pub size: u64,
    pub media_type: String,
}

/// The attachments a record's fields name, each once, in the record's order. Entries that are
/// not well-formed are left out (validation refuses them on write; a received record is read
/// as it is).
pub fn refs(fields: &Map<String, Value>) -> Vec<AttachmentRef> {
    let Some(Value::Array(items)) = fields.get(FIELD_NAME) else {
        return Vec::new();
    };
    let mut out: Vec<AttachmentRef> = Vec::new();
    for item in items {
        let Some(entry) = item.as_object() else {
            continue;
        };
        let hash = entry
            .get("hash")
            .and_then(Value::as_str)
            .and_then(parse_hash);
        let size = entry.get("size").and_then(Value::as_u64);
        let media_type = entry.get("media_type").and_then(Value::as_str);
        if let (Some(hash), Some(size), Some(media_type)) = (hash, size, media_type)
            && !out.iter().any(|r| r.hash == hash)
        {
            out.push(AttachmentRef {
                hash,
                size,
                media_type: media_type.to_string(),
            });
        }
    }
    out
}

/// A hash as records write it: 64 lowercase hex digits.
pub fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

pub fn hash_text(hash: &Hash) -> String {
    hex::encode(hash)
}

/// The rules of an `attachments` field beyond its shape: a real hash, a size within
/// [`MAX_ATTACHMENT_BYTES`], a media type of the form `type/subtype`, at most
/// [`MAX_ATTACHMENTS`], none named twice.
pub(crate) fn check(fields: &Map<String, Value>) -> Result<(), ValidationError> {
    let Some(value) = fields.get(FIELD_NAME) else {
        return Ok(());
    };
    let Value::Array(items) = value else {
        return Err(ValidationError::Field(format!(
            "`{FIELD_NAME}` must be a list of attachments"
        )));
    };
    if items.len() > MAX_ATTACHMENTS {
        return Err(ValidationError::Field(format!(
            "a record may carry at most {MAX_ATTACHMENTS} attachments, not {}",
            items.len()
        )));
    }
    let mut seen: Vec<Hash> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |part: &str| format!("{FIELD_NAME}[{i}].{part}");
        let entry = item.as_object();
        let part = |name: &str| entry.and_then(|e| e.get(name));
        let Some(hash) = part("hash").and_then(Value::as_str).and_then(parse_hash) else {
            return Err(ValidationError::Field(format!(
                "`{}` must be the SHA-256 of the bytes as 64 lowercase hex digits",
                at("hash")
            )));
        };
        if seen.contains(&hash) {
            return Err(ValidationError::Field(format!(
                "`{}` names an attachment the record already carries",
                at("hash")
            )));
        }
        seen.push(hash);
        match part("size").and_then(Value::as_u64) {
            Some(size) if (1..=MAX_ATTACHMENT_BYTES).contains(&size) => {}
            _ => {
                return Err(ValidationError::Field(format!(
                    "`{}` must be a byte count from 1 to {MAX_ATTACHMENT_BYTES}",
                    at("size")
                )));
            }
        }
        let media_type = part("media_type").and_then(Value::as_str).unwrap_or("");
        if !is_media_type(media_type) {
            return Err(ValidationError::Field(format!(
                "`{}` must be a media type such as image/jpeg, not `{}`",
                at("media_type"),
                media_type.chars().take(40).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Whether `text` has the form of a media type, `type/subtype` (RFC 6838 token characters).
pub fn is_media_type(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 60
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    matches!(text.split_once('/'), Some((a, b)) if token(a) && token(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn fields(attachments: Value) -> Map<String, Value> {
        json!({ "attachments": attachments })
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn test_refs_name_each_attachment_once_and_skip_malformed_ones() {
        let f = fields(json!([
            { "hash": HASH, "media_type": "image/jpeg", "size": 4 },
            { "hash": HASH, "media_type": "image/jpeg", "size": 4 },
            { "hash": "not a hash", "media_type": "image/jpeg", "size": 4 },
        ]));
        let refs = refs(&f);
        assert_eq!(refs.len(), 1);
        assert_eq!(hash_text(&refs[0].hash), HASH);
    }

    #[test]
    fn test_a_malformed_attachment_is_refused_with_its_place() {
        let ok = fields(json!([{ "hash": HASH, "media_type": "image/jpeg", "size": 4 }]));
        assert!(check(&ok).is_ok());
        let upper =
            fields(json!([{ "hash": HASH.to_uppercase(), "media_type": "image/jpeg", "size": 4 }]));
        assert!(
            check(&upper)
                .unwrap_err()
                .to_string()
                .contains("attachments[0].hash")
        );
        let empty = fields(json!([{ "hash": HASH, "media_type": "image/jpeg", "size": 0 }]));
        assert!(
            check(&empty)
                .unwrap_err()
                .to_string()
                .contains("attachments[0].size")
        );
        let kind = fields(json!([{ "hash": HASH, "media_type": "jpeg", "size": 4 }]));
        assert!(check(&kind).unwrap_err().to_string().contains("media type"));
        let twice = fields(json!([
            { "hash": HASH, "media_type": "image/jpeg", "size": 4 },
            { "hash": HASH, "media_type": "image/png", "size": 4 },
        ]));
        assert!(check(&twice).unwrap_err().to_string().contains("already"));
    }
}
