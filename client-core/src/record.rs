//! Field records: their kinds, validation, and the index fields lists filter on.
//!
//! A record travels as a JSON object (what the CLI and the dashboard speak) and is stored as an
//! Automerge document with the same shape (see [`crate::doc`]). Each kind has one module under
//! [`kinds`]: its typed struct (a write is accepted only if the merged record deserialises into
//! it and passes [`validate`]) and its [`schema::KindSpec`] (fields, labels, choices, rules),
//! which validation, the CLI, the dashboard and the phone bindings all read.

pub mod attachment;
mod index;
pub mod kinds;
pub mod received;
pub mod schema;
pub mod sensitive;
mod validate;

use serde::Serialize;
use serde_json::{Map, Value};

pub use attachment::{Attachment, AttachmentRef};
pub use index::IndexRow;
pub use kinds::*;
pub use validate::{
    DeadlineRules, FUTURE_SLACK, MAX_ADDRESS_CHARS, MAX_NAME_CHARS, ValidationContext,
    ValidationError, check_move, check_order, validate, validate_merged,
};

/// The version of the record schema this build writes. Readers keep fields they do not know.
pub const SCHEMA_VERSION: i64 = 1;

/// Fields every record carries, set by the replica, never by a patch.
pub const SYSTEM_FIELDS: &[&str] = &[
    "id",
    "kind",
    "grid_id",
    "created_by",
    "device_id",
    "created_at",
    "schema_version",
];

/// Fields the replica maintains on every write.
pub const TOUCH_FIELDS: &[&str] = &["updated_at", "updated_by"];

/// A record as read from a replica: its JSON fields, including the system fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub id: String,
    pub kind: Kind,
    pub grid_id: String,
    pub fields: Map<String, Value>,
}

impl Record {
    /// Builds a record from a document's hydrated root map, with the kind's computed fields;
    /// `None` if it lacks id, kind or grid.
    pub fn from_fields(mut fields: Map<String, Value>) -> Option<Record> {
        let id = fields.get("id")?.as_str()?.to_string();
        let kind: Kind = fields.get("kind")?.as_str()?.parse().ok()?;
        for computed in kind.spec().computed {
            let value = (computed.value)(&fields);
            fields.insert(computed.field.name.to_string(), value);
        }
        let grid_id = fields.get("grid_id")?.as_str()?.to_string();
        Some(Record {
            id,
            kind,
            grid_id,
            fields,
        })
    }

    /// The record as its typed struct (for example `record.typed::<Case>()`).
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, ValidationError> {
        serde_json::from_value(Value::Object(self.fields.clone()))
            .map_err(|e| ValidationError::Field(e.to_string()))
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    pub fn is_deleted(&self) -> bool {
        self.fields.get("deleted").and_then(Value::as_bool) == Some(true)
    }
}

/// Applies a partial update to a record's fields.
///
/// The rules are JSON merge patch (RFC 7396) with one exception: for an append-only list (case
/// actions, patrol incidents, visit issues, ...) the patch holds the entries to append, not the
/// whole list. `null` removes a field.
pub fn apply_patch(
    kind: Kind,
    fields: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), ValidationError> {
    for (key, value) in patch {
        if SYSTEM_FIELDS.contains(&key.as_str()) || TOUCH_FIELDS.contains(&key.as_str()) {
            return Err(ValidationError::ReadOnlyField(key.clone()));
        }
        if kind.is_append_only(key) {
            let Value::Array(new_items) = value else {
                return Err(ValidationError::Field(format!(
                    "`{key}` is append-only: give a list of entries to add"
                )));
            };
            match fields
                .entry(key.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(items) => items.extend(new_items.iter().cloned()),
                other => *other = Value::Array(new_items.clone()),
            }
            continue;
        }
        merge_value(fields, key, value);
    }
    Ok(())
}

fn merge_value(target: &mut Map<String, Value>, key: &str, patch: &Value) {
    match patch {
        Value::Null => {
            target.remove(key);
        }
        Value::Object(patch_map) => {
            let slot = target
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(map) = slot {
                for (k, v) in patch_map {
                    merge_value(map, k, v);
                }
            }
        }
        other => {
            target.insert(key.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn test_patch_appends_to_append_only_lists() {
        let mut fields = obj(json!({"actions": [{"kind": "visit"}], "plan": "a"}));
        let patch = obj(json!({"actions": [{"kind": "goods"}], "plan": "b"}));
        apply_patch(Kind::Case, &mut fields, &patch).unwrap();
        assert_eq!(fields["actions"].as_array().unwrap().len(), 2);
        assert_eq!(fields["plan"], "b");
    }

    #[test]
    fn test_patch_merges_nested_objects_and_removes_nulls() {
        let mut fields =
            obj(json!({"address": {"building": "3", "door": "101"}, "gps": {"lat": 1.0}}));
        let patch = obj(json!({"address": {"door": "102"}, "gps": null}));
        apply_patch(Kind::Household, &mut fields, &patch).unwrap();
        assert_eq!(fields["address"], json!({"building": "3", "door": "102"}));
        assert!(!fields.contains_key("gps"));
    }

    #[test]
    fn test_patch_refuses_system_fields() {
        let mut fields = Map::new();
        let err = apply_patch(Kind::Case, &mut fields, &obj(json!({"grid_id": "g2"}))).unwrap_err();
        assert_eq!(err, ValidationError::ReadOnlyField("grid_id".into()));
    }
}
