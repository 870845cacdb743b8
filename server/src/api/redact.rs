//! What a token without sensitive data never reads: every field a kind's spec marks sensitive
//! (`Field::sensitive`: residents' ID numbers, health, disability and benefits, volunteers'
//! phones), at any depth, in a record and in its history. `household_private` records, which
//! hold nothing else, are refused whole (`Reader::may_read`). A field the spec does not know
//! (written by a newer client) is passed on as it is.

use gridsync_core::record::Kind;
use gridsync_core::record::schema::{Field, FieldType};
use serde_json::{Map, Value};

/// Removes the sensitive fields of a record of `kind`.
pub fn record(kind: Kind, fields: &mut Map<String, Value>) {
    map(kind.spec().fields, fields);
}

/// One change of a field in a record's history (`path` as `history` gives it: `status`,
/// `address.door`), with sensitive parts removed from its values; `None` when the field itself
/// is sensitive, or lies inside one that is.
pub fn change(
    kind: Kind,
    path: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Option<(Option<Value>, Option<Value>)> {
    let spec = kind.spec();
    let mut prefix = String::new();
    for part in path.split('.') {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(part);
        if spec.field_at(&prefix).is_some_and(|f| f.sensitive) {
            return None;
        }
    }
    let Some(field) = spec.field_at(path) else {
        return Some((before, after));
    };
    let clean = |mut v: Value| {
        value(&field.ty, &mut v);
        v
    };
    Some((before.map(clean), after.map(clean)))
}

fn map(spec: &[Field], fields: &mut Map<String, Value>) {
    for field in spec {
        if field.sensitive {
            fields.remove(field.name);
        } else if let Some(v) = fields.get_mut(field.name) {
            value(&field.ty, v);
        }
    }
}

fn value(ty: &FieldType, v: &mut Value) {
    match (ty, v) {
        (FieldType::Object(parts), Value::Object(m)) => map(parts, m),
        (FieldType::Entries(parts) | FieldType::Log(parts), Value::Array(items)) => {
            for item in items.iter_mut() {
                if let Value::Object(m) = item {
                    map(parts, m);
                }
            }
        }
        (FieldType::List(inner), Value::Array(items)) => {
            items.iter_mut().for_each(|item| value(inner, item));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn test_sensitive_fields_go_at_every_depth_and_the_rest_stays() {
        let mut household = fields(json!({
            "head_name": "张三",
            "residents": [
                {"name": "张三", "id_number": "420102195001011234", "phone": "139", "health": "x"},
                {"name": "李四", "disability_grade": "二级"}
            ],
            "from_a_newer_client": {"kept": true},
        }));
        record(Kind::Household, &mut household);
        assert_eq!(
            Value::Object(household),
            json!({
                "head_name": "张三",
                "residents": [{"name": "张三", "phone": "139"}, {"name": "李四"}],
                "from_a_newer_client": {"kept": true},
            })
        );
        let mut volunteer = fields(json!({"name": "赵六", "phone": "13800000000", "post": "楼长"}));
        record(Kind::Volunteer, &mut volunteer);
        assert_eq!(
            Value::Object(volunteer),
            json!({"name": "赵六", "post": "楼长"})
        );
    }

    #[test]
    fn test_history_drops_sensitive_fields_and_cleans_lists() {
        assert_eq!(
            change(Kind::Volunteer, "phone", None, Some(json!("138"))),
            None
        );
        let added = json!([{"name": "王五", "id_number": "110101199001011234"}]);
        assert_eq!(
            change(Kind::Household, "residents", None, Some(added)),
            Some((None, Some(json!([{"name": "王五"}]))))
        );
        assert_eq!(
            change(
                Kind::Case,
                "status",
                Some(json!("open")),
                Some(json!("closed"))
            ),
            Some((Some(json!("open")), Some(json!("closed"))))
        );
    }
}
