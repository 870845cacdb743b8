//! The words of records for an app's screens: every kind's fields with their zh-CN and English
//! labels, types and choices, from client-core's kind specs — the same words the office
//! dashboard and the CLI show.

use gridsync_core::record::schema::{self, FieldType};

use crate::error::Result;
use crate::types::parse_kind;

/// A word in both languages: an app shows `zh` (or `en` when its locale is English).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Label {
    pub zh: String,
    pub en: String,
}

impl From<schema::Label> for Label {
    fn from(l: schema::Label) -> Label {
        Label {
            zh: l.zh.into(),
            en: l.en.into(),
        }
    }
}

/// Every kind people create with its fields (name, label, type, required, sensitive, choices,
/// nested fields), as JSON: the document `gridsync schema --json` prints and docs/records.md
/// describes. Build forms and pickers from it.
#[uniffi::export]
pub fn record_schema() -> String {
    schema::to_json().to_string()
}

/// The name users know a kind by (`case` → 帮扶个案 / Assistance case).
#[uniffi::export]
pub fn kind_label(kind: String) -> Result<Label> {
    Ok(parse_kind(&kind)?.spec().label.into())
}

/// A field's label in a kind, by its path (`head_name`, `residents[0].name`, `address.door`);
/// `None` for a field the kind does not have (one a newer app version wrote).
#[uniffi::export]
pub fn field_label(kind: String, path: String) -> Result<Option<Label>> {
    let kind = parse_kind(&kind)?;
    Ok(kind.spec().field_at(&path).map(|f| f.label.into()))
}

/// The label of a stored choice (`case`, `status`, `in_progress` → 帮扶中 / In progress);
/// `None` when the field has no such choice (a value a newer app version wrote: show the code).
#[uniffi::export]
pub fn choice_label(kind: String, path: String, code: String) -> Result<Option<Label>> {
    let kind = parse_kind(&kind)?;
    let mut ty = kind.spec().field_at(&path).map(|f| f.ty);
    while let Some(FieldType::List(inner)) = ty {
        ty = Some(*inner);
    }
    Ok(match ty {
        Some(FieldType::Choice(set)) => set.get(&code).map(|c| c.label.into()),
        _ => None,
    })
}
