//! Sensitive resident data lives in a document of its own (`household_private`), so the relay can
//! keep it away from roles that may not see it simply by not sending that document.

use serde_json::{Map, Value};

/// Resident fields that only roles allowed to see sensitive data receive.
pub const SENSITIVE_RESIDENT_FIELDS: &[&str] = &[
    "id_number",
    "health",
    "disability_type",
    "disability_grade",
    "welfare_status",
];

/// The id of a household's private document: derived, so every device addresses the same one.
pub fn private_id(household_id: &str) -> String {
    format!("{household_id}~private")
}

/// Splits a household's fields into what every reader may see and the residents' sensitive
/// fields (one entry per resident, in order, with the name to match them up again).
/// Returns `None` for the private part when no resident has any sensitive value.
pub fn split_household(fields: &Map<String, Value>) -> (Map<String, Value>, Option<Vec<Value>>) {
    let mut public = fields.clone();
    let Some(Value::Array(residents)) = public.get_mut("residents") else {
        return (public, None);
    };
    let mut private = Vec::with_capacity(residents.len());
    let mut any = false;
    for resident in residents.iter_mut() {
        let mut secret = Map::new();
        if let Value::Object(r) = resident {
            if let Some(name) = r.get("name") {
                secret.insert("name".into(), name.clone());
            }
            for field in SENSITIVE_RESIDENT_FIELDS {
                if let Some(v) = r.remove(*field) {
                    any |= !v.is_null();
                    secret.insert(field.to_string(), v);
                }
            }
        }
        private.push(Value::Object(secret));
    }
    (public, any.then_some(private))
}

/// Puts the sensitive fields back into a household's residents, matching by position and name.
pub fn merge_household(fields: &mut Map<String, Value>, private: &[Value]) {
    let Some(Value::Array(residents)) = fields.get_mut("residents") else {
        return;
    };
    for (i, resident) in residents.iter_mut().enumerate() {
        let Value::Object(r) = resident else { continue };
        let name = r.get("name").cloned();
        let same_name = |p: &&Value| p.get("name").cloned() == name;
        let secret = private
            .get(i)
            .filter(same_name)
            .or_else(|| private.iter().find(same_name));
        if let Some(Value::Object(secret)) = secret {
            for field in SENSITIVE_RESIDENT_FIELDS {
                if let Some(v) = secret.get(*field) {
                    r.insert(field.to_string(), v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_split_and_merge_round_trip() {
        let Value::Object(fields) = json!({
            "head_name": "张三",
            "residents": [
                {"name": "张三", "id_number": "420102195001011234", "phone": "1"},
                {"name": "李四", "relation": "配偶"}
            ]
        }) else {
            unreachable!()
        };
        let (public, private) = split_household(&fields);
        assert!(
            !Value::Object(public.clone())
                .to_string()
                .contains("4201021950")
        );
        let private = private.expect("a resident has an ID number");
        let mut merged = public.clone();
        merge_household(&mut merged, &private);
        assert_eq!(merged, fields);
    }

    #[test]
    fn test_household_without_sensitive_data_has_no_private_part() {
        let Value::Object(fields) = json!({"residents": [{"name": "王五", "phone": "2"}]}) else {
            unreachable!()
        };
        assert!(split_household(&fields).1.is_none());
    }
}
