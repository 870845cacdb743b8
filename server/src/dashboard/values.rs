//! How a record's values read on a page: codes by their labels, instants in the community's
//! time, people, devices and the records a record names by name (and linked to their pages),
//! lists one entry a line, and nothing as 无 / none. The record page, its history and the review
//! page all show values this way.

use std::collections::HashMap;

use gridsync_core::record::Kind;
use gridsync_core::record::attachment::FIELD_NAME;
use gridsync_core::record::schema::{Field, FieldType};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::auth::Staff;
use super::i18n::Lang;
use super::lists::title;
use super::{Dashboard, Fail, choices, gallery, layout, person, status_label};
use crate::AppState;
use crate::storage::RecordQuery;

/// What a page shows people, devices and records by.
#[derive(Debug, Default)]
pub struct Names {
    /// Username → display name, of every account.
    pub people: HashMap<String, String>,
    /// Device id → its name and its owner's display name.
    pub devices: HashMap<String, String>,
    /// Record id → its title (see [`title`]), for the records the page names that lie in the
    /// staff member's grids.
    pub records: HashMap<String, String>,
    /// The attachments the page names whose bytes the relay holds (by hash); the others are
    /// shown as not received yet (see [`Names::arrivals`]).
    pub arrived: std::collections::HashSet<String>,
}

impl Names {
    /// People and devices, and the titles of these records (from the index).
    pub async fn load(state: &AppState, staff: &Staff, ids: Vec<String>) -> Result<Names, Fail> {
        let lang = staff.lang;
        let store = |e| Fail::storage(lang, e);
        let users = state.accounts.users().await.map_err(store)?;
        let owners: HashMap<&str, &str> = users
            .iter()
            .map(|u| (u.id.as_str(), u.display_name.as_str()))
            .collect();
        let devices = state
            .accounts
            .devices(None)
            .await
            .map_err(store)?
            .into_iter()
            .map(|d| {
                let shown = match owners.get(d.user_id.as_str()) {
                    Some(owner) if !owner.trim().is_empty() => {
                        format!(
                            "{}{}{owner}{}",
                            d.name,
                            lang.t("paren.open"),
                            lang.t("paren.close")
                        )
                    }
                    _ => d.name.clone(),
                };
                (d.id, shown)
            })
            .collect();
        let people: HashMap<String, String> = users
            .into_iter()
            .map(|u| (u.username, u.display_name))
            .collect();
        let mut records = HashMap::new();
        if !ids.is_empty() {
            let found = state
                .relay
                .queries()
                .list_records(&RecordQuery {
                    grids: staff.grids.clone(),
                    ids,
                    include_deleted: true,
                    ..RecordQuery::default()
                })
                .await
                .map_err(store)?;
            for r in &found.rows {
                records.insert(r.row.id.clone(), title(lang, &state.dashboard, r, &people));
            }
        }
        Ok(Names {
            people,
            devices,
            records,
            arrived: Default::default(),
        })
    }

    /// Learns which of these attachments (by hash) the relay holds.
    pub async fn arrivals(
        &mut self,
        state: &AppState,
        lang: Lang,
        hashes: impl IntoIterator<Item = String>,
    ) -> Result<(), Fail> {
        for hash in hashes {
            if !self.arrived.contains(&hash)
                && super::attachments::arrived(state, lang, &hash).await?
            {
                self.arrived.insert(hash);
            }
        }
        Ok(())
    }
}

/// The ids of the records a record names: its household, a task's source, an activity's
/// volunteers and units, the cases a visit concerns, a stock movement's household and case.
pub fn ref_ids(kind: Kind, fields: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for field in kind.spec().fields {
        if let Some(v) = fields.get(field.name) {
            refs_in(&field.ty, v, &mut out);
        }
    }
    // A task's source is a record of any kind, so its type names none.
    if let Some(Value::String(s)) = fields.get("source_id") {
        out.push(s.clone());
    }
    out.retain(|s| !s.trim().is_empty());
    out.sort();
    out.dedup();
    out
}

fn refs_in(ty: &FieldType, v: &Value, out: &mut Vec<String>) {
    let parts = |parts: &[Field], map: &Map<String, Value>, out: &mut Vec<String>| {
        for p in parts {
            match (&p.ty, map.get(p.name)) {
                (FieldType::Ref(_), Some(Value::String(s))) => out.push(s.clone()),
                (FieldType::List(inner), Some(Value::Array(items))) if is_ref(inner) => {
                    out.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
                }
                _ => {}
            }
        }
    };
    match (ty, v) {
        (FieldType::Ref(_), Value::String(s)) => out.push(s.clone()),
        (FieldType::List(inner), Value::Array(items)) if is_ref(inner) => {
            out.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
        }
        (FieldType::Object(p), Value::Object(map)) => parts(p, map, out),
        (FieldType::Entries(p) | FieldType::Log(p), Value::Array(items)) => {
            for map in items.iter().filter_map(Value::as_object) {
                parts(p, map, out);
            }
        }
        _ => {}
    }
}

fn is_ref(ty: &FieldType) -> bool {
    matches!(ty, FieldType::Ref(_))
}

/// Whether a value says nothing: absent, blank, an empty list, or a map of nothing (an address
/// with no part filled in).
pub fn is_empty(v: &Value) -> bool {
    let blank = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    match v {
        Value::Object(m) => m.values().all(blank),
        other => blank(other),
    }
}

/// 无 / none.
pub fn nothing(lang: Lang) -> Markup {
    html! { span class="empty" { (lang.t("empty")) } }
}

/// A field's value for people: enum codes translated, the rest compact JSON.
pub fn value_label(lang: Lang, kind: Kind, field: &str, v: &Value) -> String {
    let group = choices(kind, field).map(|(group, _)| group);
    match (group, v) {
        (Some(g), Value::String(s)) => lang.label(g, s),
        (_, Value::Bool(b)) => lang.t(if *b { "yes" } else { "no" }).to_string(),
        (_, Value::Number(n)) => number(n),
        _ => layout::show_json(v, 400),
    }
}

/// A number as people write it: quantities are stored as floating point, 2 reads 2, not 2.0.
fn number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// A field of the record as it is now, for people: its status as the office sees it (see
/// [`super::shown_status`]), ID numbers masked, the rest [`readable`].
pub fn shown_value(
    lang: Lang,
    dash: &Dashboard,
    names: &Names,
    kind: Kind,
    field: &str,
    v: &Value,
) -> Markup {
    if field == "status" {
        return html! { (status_label(lang, kind, v.as_str())) };
    }
    let mut v = v.clone();
    layout::mask_sensitive(&mut v);
    readable(lang, dash, names, kind, field, &v)
}

/// The top-level fields that hold a username (or a list of them), shown by name (see
/// [`person`]).
pub const PEOPLE_FIELDS: [&str; 7] = [
    "created_by",
    "updated_by",
    "responsible",
    "assigned_worker",
    "assignee",
    "team",
    "visitors",
];

/// A person by name, linked to the records they are responsible for or wrote.
pub fn person_link(names: &Names, username: &str) -> Markup {
    let href = format!("/records?worker={}", layout::encode(username));
    html! { a class="person" href=(href) title=(username) { (person(&names.people, username)) } }
}

/// A record another names, by its title and linked to its page; one this office does not hold
/// (not synced yet, or outside its grids) says so rather than showing an id.
pub fn record_link(lang: Lang, names: &Names, id: &str) -> Markup {
    match names.records.get(id) {
        Some(t) => html! { a class="ref" href={ "/records/" (layout::encode(id)) } { (t) } },
        None => html! { span class="muted" title=(id) { (lang.t("rec.unknown_ref")) } },
    }
}

/// A value for people: a list of entries (a case's actions, a patrol's incidents, a visit's
/// issues, a report's follow-ups, ...) one entry a line, a nested record (an address) as one
/// entry, a list of words as running text, a person, a device or a record by name, an instant
/// in the community's time, nothing as 无, anything else as [`value_label`].
pub fn readable(
    lang: Lang,
    dash: &Dashboard,
    names: &Names,
    kind: Kind,
    field: &str,
    v: &Value,
) -> Markup {
    if is_empty(v) {
        return nothing(lang);
    }
    let ty = kind.spec().field(field).map(|f| f.ty);
    let is_people = PEOPLE_FIELDS.contains(&field);
    let refs = matches!(ty, Some(FieldType::Ref(_))) || field == "source_id";
    let ref_list = matches!(ty, Some(FieldType::List(inner)) if is_ref(inner));
    if field == FIELD_NAME {
        let items = gallery::entries(v);
        if !items.is_empty() {
            return gallery::strip(lang, names, &items);
        }
    }
    match v {
        Value::String(s) if is_people => person_link(names, s),
        Value::String(s) if field == "device_id" => {
            html! { span title=(s) { (names.devices.get(s).cloned().unwrap_or_else(|| s.clone())) } }
        }
        Value::String(s) if refs => record_link(lang, names, s),
        // Instants are stored as RFC 3339 in UTC; dates (`next_visit_due`) are not and stay.
        Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
            html! { (dash.show_time(s)) }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => html! {
            ul class="entries" {
                @for item in items { li { (entry(lang, dash, names, field, item)) } }
            }
        },
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let words: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            html! {
                @for (i, w) in words.iter().enumerate() {
                    @if i > 0 { (lang.list_sep()) }
                    @if is_people { (person_link(names, w)) }
                    @else if ref_list { (record_link(lang, names, w)) }
                    @else { (w) }
                }
            }
        }
        Value::Object(_) => html! { (entry(lang, dash, names, field, v)) },
        _ => html! { (value_label(lang, kind, field, v)) },
    }
}

/// The keys an entry's time and text are read from, the first one present.
pub const TIME_KEYS: [&str; 3] = ["at", "occurred_at", "passed_at"];
pub const TEXT_KEYS: [&str; 3] = ["description", "text", "name"];

/// The parts of the entries of a list (or of a nested map) by the list's name, from the first
/// kind that declares it with parts.
fn entry_parts(field: &str) -> &'static [Field] {
    Kind::ALL_STORED
        .into_iter()
        .filter_map(|kind| kind.spec().field(field))
        .map(|f| f.ty.parts())
        .find(|parts| !parts.is_empty())
        .unwrap_or_default()
}

/// A part of an entry of a list (or of a nested map), by the list it is in and its key, from
/// the kinds' specs.
fn entry_part(field: &str, key: &str) -> Option<&'static Field> {
    Kind::ALL_STORED.into_iter().find_map(|kind| {
        kind.spec()
            .field(field)?
            .ty
            .parts()
            .iter()
            .find(|p| p.name == key)
    })
}

/// The label group of an entry's coded value, by the list it is in and its key (from the
/// kinds' specs).
pub fn entry_group(field: &str, key: &str) -> Option<&'static str> {
    match entry_part(field, key)?.ty {
        FieldType::Choice(set) => Some(set.group),
        _ => None,
    }
}

/// One entry as running text: when (the community's time), what kind (by label), its text,
/// its other details by label (a record it names by title), and who wrote it (by name), e.g.
/// `2026-11-28 10:00 · 申请待遇 · 提交补贴申请 · 王芳`.
fn entry(lang: Lang, dash: &Dashboard, names: &Names, field: &str, item: &Value) -> String {
    let Some(map) = item.as_object() else {
        return layout::show_json(item, 400);
    };
    let text = |key: &str| -> Option<String> {
        let v = map.get(key)?;
        let part = entry_part(field, key).map(|p| p.ty);
        let s = match v {
            Value::String(s) if s.trim().is_empty() => return None,
            Value::String(s) if matches!(part, Some(FieldType::Ref(_))) => names
                .records
                .get(s)
                .cloned()
                .unwrap_or_else(|| lang.t("rec.unknown_ref").to_string()),
            Value::String(s) => match entry_group(field, key) {
                Some(group) => lang.label(group, s),
                None if chrono::DateTime::parse_from_rfc3339(s).is_ok() => dash.show_time(s),
                None => s.clone(),
            },
            Value::Number(n) => number(n),
            Value::Bool(b) => lang.t(if *b { "yes" } else { "no" }).to_string(),
            Value::Array(a) if a.is_empty() => return None,
            Value::Array(a) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(lang.list_sep()),
            Value::Null => return None,
            other => layout::show_json(other, 200),
        };
        Some(s)
    };
    let time = TIME_KEYS.into_iter().find(|k| map.contains_key(*k));
    let main = TEXT_KEYS.into_iter().find(|k| text(k).is_some());
    let mut parts: Vec<String> = Vec::new();
    if let Some(s) = time.and_then(|k| map.get(k)).and_then(Value::as_str) {
        parts.push(dash.show_time(s));
    }
    parts.extend(text("kind"));
    parts.extend(main.and_then(&text));
    // The other details in the order the spec declares them, then any it does not know.
    let declared = entry_parts(field);
    let mut keys: Vec<&str> = declared
        .iter()
        .map(|p| p.name)
        .filter(|k| map.contains_key(*k))
        .collect();
    keys.extend(
        map.keys()
            .map(String::as_str)
            .filter(|k| !declared.iter().any(|p| p.name == *k)),
    );
    let nested = Kind::ALL_STORED.into_iter().any(|kind| {
        kind.spec()
            .field(field)
            .is_some_and(|f| matches!(f.ty, FieldType::Object(_)))
    });
    for key in keys {
        if Some(key) == time || Some(key) == main || matches!(key, "kind" | "by") {
            continue;
        }
        if let Some(value) = text(key) {
            let path = if nested {
                format!("{field}.{key}")
            } else {
                format!("{field}[].{key}")
            };
            parts.push(format!(
                "{}{}{value}",
                lang.label("field", &path),
                lang.colon()
            ));
        }
    }
    if let Some(by) = map.get("by").and_then(Value::as_str) {
        parts.push(person(&names.people, by));
    }
    if parts.is_empty() {
        return lang.t("empty").to_string();
    }
    parts.join(" · ")
}

/// A field's path in people's words: `address.door` → 地址 · 门牌号, `residents[1].phone` →
/// 成员第 2 条 · 联系电话.
pub fn path_label(lang: Lang, kind: Kind, path: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut so_far = String::new();
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !so_far.is_empty() {
            so_far.push('.');
        }
        so_far.push_str(name);
        let label = lang.field(kind, &so_far);
        out.push(match (index, lang) {
            (Some(i), Lang::Zh) => format!("{label}第 {} 条", i + 1),
            (Some(i), Lang::En) => format!("{label} #{}", i + 1),
            (None, _) => label,
        });
        if index.is_some() {
            so_far.push_str("[]");
        }
    }
    out.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_paths_read_in_peoples_words() {
        assert_eq!(
            path_label(Lang::Zh, Kind::Household, "address.door"),
            "地址 · 门牌号"
        );
        assert_eq!(
            path_label(Lang::Zh, Kind::Household, "residents[1].phone"),
            "成员第 2 条 · 联系电话"
        );
        assert_eq!(
            path_label(Lang::En, Kind::Household, "residents[1].phone"),
            "Residents #2 · Phone"
        );
        assert_eq!(path_label(Lang::Zh, Kind::Case, "notes"), "备注");
    }

    #[test]
    fn test_nothing_is_empty_whatever_its_shape() {
        for v in [
            serde_json::json!(null),
            serde_json::json!(""),
            serde_json::json!("  "),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!({"door": "", "building": null}),
        ] {
            assert!(is_empty(&v), "{v}");
        }
        for v in [
            serde_json::json!(0),
            serde_json::json!(false),
            serde_json::json!(["x"]),
            serde_json::json!({"door": "301"}),
        ] {
            assert!(!is_empty(&v), "{v}");
        }
    }
}
