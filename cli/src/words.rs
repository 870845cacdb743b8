//! What the CLI shows of a record in people's words: field labels, choices by their labels,
//! times in the community's zone, list entries one a line in time order — all from the kind's
//! spec in client-core, the words the dashboard and the phone app use. `--json` keeps the codes.

use chrono::FixedOffset;
use gridsync_core::record::schema::{self, Field, FieldType};
use gridsync_core::record::{Kind, Record};
use serde_json::{Map, Value};

use crate::{clock, table};

/// The system fields, shown after the record's own, in this order.
const SYSTEM_ORDER: &[&str] = &[
    "grid_id",
    "created_by",
    "created_at",
    "updated_by",
    "updated_at",
    "device_id",
    "deleted",
    "merged_into",
    "schema_version",
];

/// A field's label with its name: `户主 head_name`.
pub fn field(kind: Kind, path: &str) -> String {
    match schema::field_label_in(kind, path) {
        Some(label) => format!("{} {path}", label.zh),
        None => path.to_string(),
    }
}

/// A status by its label (`open` → 已立案); a value this build does not know, as it is.
pub fn status(kind: Kind, code: &str) -> String {
    kind.spec()
        .status
        .and_then(|f| kind.spec().choices(f))
        .and_then(|set| set.get(code))
        .map_or_else(|| code.to_string(), |c| c.label.zh.to_string())
}

/// A list title with its leading type code in words (`low_income 张三` → `低保 张三`).
pub fn title(kind: Kind, title: &str) -> String {
    let Some(set) = kind.spec().subtype.and_then(|f| kind.spec().choices(f)) else {
        return title.to_string();
    };
    let (first, rest) = title.split_once(' ').unwrap_or((title, ""));
    match set.get(first) {
        Some(c) if rest.is_empty() => c.label.zh.to_string(),
        Some(c) => format!("{} {rest}", c.label.zh),
        None => title.to_string(),
    }
}

/// Every field of a record as (label, value) lines: the kind's fields in the order its spec
/// declares them, computed ones, fields this build does not know (kept as they came), then the
/// system fields. A list of entries takes one line an entry after its label.
pub fn fields(record: &Record, offset: FixedOffset) -> Vec<(String, String)> {
    let spec = record.kind.spec();
    let f = &record.fields;
    let mut out = Vec::new();
    for field in spec.fields {
        if let Some(value) = f.get(field.name) {
            push(&mut out, field, value, offset);
        }
    }
    for computed in spec.computed {
        if let Some(value) = f.get(computed.field.name) {
            push(&mut out, &computed.field, value, offset);
        }
    }
    let known = |k: &str| {
        spec.fields.iter().any(|x| x.name == k)
            || spec.computed.iter().any(|c| c.field.name == k)
            || SYSTEM_ORDER.contains(&k)
            || matches!(k, "id" | "kind")
    };
    for (key, value) in f.iter().filter(|(k, _)| !known(k)) {
        out.push((key.clone(), compact(value)));
    }
    for name in SYSTEM_ORDER {
        if let (Some(value), Some(system)) = (
            f.get(*name),
            schema::SYSTEM.iter().find(|s| s.name == *name),
        ) {
            push(&mut out, system, value, offset);
        }
    }
    out
}

fn push(out: &mut Vec<(String, String)>, field: &Field, value: &Value, offset: FixedOffset) {
    let label = format!("{} {}", field.label.zh, field.name);
    match (&field.ty, value) {
        (FieldType::Entries(parts) | FieldType::Log(parts), Value::Array(items)) => {
            out.push((label, format!("{} 条 entries", items.len())));
            let mut lines: Vec<(String, String)> = items
                .iter()
                .map(|item| (time_of(parts, item), entry(parts, item, offset)))
                .collect();
            if matches!(field.ty, FieldType::Log(_)) {
                lines.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.extend(lines.into_iter().map(|(_, line)| (String::new(), line)));
        }
        _ => out.push((label, show(&field.ty, value, offset))),
    }
}

/// One value in people's words.
fn show(ty: &FieldType, value: &Value, offset: FixedOffset) -> String {
    match (ty, value) {
        (FieldType::Choice(set), Value::String(code)) => match set.get(code) {
            Some(c) => format!("{} ({code})", c.label.zh),
            None => code.clone(),
        },
        (FieldType::Event | FieldType::Instant, Value::String(t)) => clock::show(t, offset),
        (FieldType::Bool, Value::Bool(b)) => if *b { "是 yes" } else { "否 no" }.into(),
        (FieldType::Gps, Value::Object(p)) => {
            let n = |k: &str| p.get(k).and_then(Value::as_f64);
            match (n("lat"), n("lon")) {
                (Some(lat), Some(lon)) => match n("accuracy_m") {
                    Some(acc) => format!("{lat}, {lon} (±{acc} m)"),
                    None => format!("{lat}, {lon}"),
                },
                _ => compact(value),
            }
        }
        (FieldType::Object(parts), Value::Object(map)) => parts
            .iter()
            .filter_map(|p| {
                let v = map.get(p.name)?;
                (!v.is_null()).then(|| format!("{} {}", p.label.zh, show(&p.ty, v, offset)))
            })
            .collect::<Vec<_>>()
            .join(" · "),
        (FieldType::List(inner), Value::Array(items)) => items
            .iter()
            .map(|v| show(inner, v, offset))
            .collect::<Vec<_>>()
            .join("、"),
        (_, Value::String(s)) if s.trim().is_empty() => "无 none".into(),
        (_, Value::String(s)) => table::clean(s),
        (_, Value::Null) => "无 none".into(),
        _ => compact(value),
    }
}

/// An entry on one line: its time, its choices, its other details by label, its author.
fn entry(parts: &[Field], item: &Value, offset: FixedOffset) -> String {
    let Some(map) = item.as_object() else {
        return compact(item);
    };
    let mut words = Vec::new();
    let time = parts
        .iter()
        .find(|p| matches!(p.ty, FieldType::Event | FieldType::Instant));
    if let Some(t) = time.and_then(|p| map.get(p.name)) {
        words.push(show(&FieldType::Instant, t, offset));
    }
    for part in parts {
        if Some(part.name) == time.map(|t| t.name) || part.name == "by" {
            continue;
        }
        let Some(value) = map.get(part.name).filter(|v| !v.is_null() && *v != "") else {
            continue;
        };
        match (&part.ty, value) {
            (FieldType::Choice(set), Value::String(code)) => words.push(
                set.get(code)
                    .map_or_else(|| code.clone(), |c| c.label.zh.to_string()),
            ),
            (FieldType::Text, _) => words.push(show(&part.ty, value, offset)),
            _ => words.push(format!(
                "{} {}",
                part.label.zh,
                show(&part.ty, value, offset)
            )),
        }
    }
    unknown_keys(parts, map, &mut words);
    if let Some(by) = map.get("by").and_then(Value::as_str) {
        words.push(format!("({by})"));
    }
    format!("- {}", words.join(" · "))
}

fn unknown_keys(parts: &[Field], map: &Map<String, Value>, words: &mut Vec<String>) {
    for (key, value) in map {
        if !parts.iter().any(|p| p.name == key) {
            words.push(format!("{key} {}", compact(value)));
        }
    }
}

/// The sort key of an entry: its time as written (RFC 3339 sorts by text within one zone;
/// entries without one first).
fn time_of(parts: &[Field], item: &Value) -> String {
    parts
        .iter()
        .find(|p| matches!(p.ty, FieldType::Event | FieldType::Instant))
        .and_then(|p| item.get(p.name))
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339())
        .unwrap_or_default()
}

fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => table::clean(s),
        other => other.to_string(),
    }
}
