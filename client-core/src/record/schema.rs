//! What every record kind is made of, in one place: its fields with their zh-CN and English
//! labels, types, choices and whether they are required or sensitive.
//!
//! Each kind's module (`kinds/<kind>.rs`) declares its [`KindSpec`] next to its typed struct.
//! Validation bounds values by the field types declared here, the device keeps text fields as
//! Automerge text and append-only lists as lists by them, and the dashboard, the CLI and the
//! phone bindings take their labels and choices from here, so a phone shows the same words as
//! the office. The tests in `kinds.rs` hold every spec to its struct: a field missing from
//! either side, a wrong type or a wrong required flag fails them.

mod describe;

use serde::Serialize;
use serde_json::{Map, Value};

pub use describe::{markdown, to_json};

use super::{Kind, ValidationContext, ValidationError};

/// A word in both languages the product speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Label {
    pub zh: &'static str,
    pub en: &'static str,
}

/// One value an enumerated field may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub code: &'static str,
    pub label: Label,
}

/// The values of one enumerated type, under the name its labels are grouped by
/// (`case_status`, `urgency`, ...). Made by [`choices!`](crate::choices) together with the enum.
#[derive(Debug, PartialEq, Eq)]
pub struct ChoiceSet {
    pub group: &'static str,
    pub choices: &'static [Choice],
}

impl ChoiceSet {
    pub fn get(&self, code: &str) -> Option<&'static Choice> {
        self.choices.iter().find(|c| c.code == code)
    }

    pub fn codes(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.choices.iter().map(|c| c.code)
    }
}

/// What a field holds, and so how it is checked, stored and shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldType {
    /// A short string (a name, a phone number, an id): at most
    /// [`MAX_NAME_CHARS`](super::MAX_NAME_CHARS).
    Name,
    /// A place or a part of an address: at most [`MAX_ADDRESS_CHARS`](super::MAX_ADDRESS_CHARS).
    Place,
    /// Free text kept as Automerge text, so concurrent edits merge character by character.
    Text,
    /// When something happened (RFC 3339): not far after the relay's clock.
    Event,
    /// Any other instant, such as a deadline (RFC 3339).
    Instant,
    /// A due date (`2026-11-01`).
    Date,
    /// A birth date: not after today.
    BirthDate,
    Number,
    Bool,
    /// A position with its accuracy.
    Gps,
    /// One of a fixed set of values.
    Choice(&'static ChoiceSet),
    /// The id of a record of this kind.
    Ref(Kind),
    /// A map of named parts.
    Object(&'static [Field]),
    /// A list of values.
    List(&'static FieldType),
    /// A list of entries, each a map of these fields.
    Entries(&'static [Field]),
    /// A list several people append to: entries are only ever added at the end, so concurrent
    /// appends all survive and nobody rewrites history.
    Log(&'static [Field]),
}

impl FieldType {
    /// The name of the type in the schema (`gridsync schema`, docs/records.md).
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Name => "name",
            FieldType::Place => "place",
            FieldType::Text => "text",
            FieldType::Event => "event_time",
            FieldType::Instant => "time",
            FieldType::Date => "date",
            FieldType::BirthDate => "birth_date",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Gps => "gps",
            FieldType::Choice(_) => "choice",
            FieldType::Ref(_) => "ref",
            FieldType::Object(_) => "object",
            FieldType::List(_) => "list",
            FieldType::Entries(_) => "entries",
            FieldType::Log(_) => "append_only",
        }
    }

    /// The fields of a map, or of each entry of a list.
    pub fn parts(&self) -> &'static [Field] {
        match self {
            FieldType::Object(fields) | FieldType::Entries(fields) | FieldType::Log(fields) => {
                fields
            }
            _ => &[],
        }
    }
}

/// One field of a record, or of a map or list entry inside one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub label: Label,
    pub ty: FieldType,
    /// A record (or entry) without it is refused.
    pub required: bool,
    /// Residents' private data: ID numbers, health, disability, benefits. Shown masked in
    /// lists and only to roles that may read it.
    pub sensitive: bool,
}

impl Field {
    pub const fn new(
        name: &'static str,
        zh: &'static str,
        en: &'static str,
        ty: FieldType,
    ) -> Field {
        Field {
            name,
            label: Label { zh, en },
            ty,
            required: false,
            sensitive: false,
        }
    }

    pub const fn required(mut self) -> Field {
        self.required = true;
        self
    }

    pub const fn sensitive(mut self) -> Field {
        self.sensitive = true;
        self
    }
}

/// The parts of an index row that depend on the kind (see [`IndexRow::from_fields`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexParts {
    pub household_id: Option<String>,
    pub status: Option<String>,
    pub assigned_to: Option<String>,
    pub due_at: Option<String>,
    pub title: String,
}

/// Validation of one kind beyond what its field types say (see [`super::validate`]).
pub type Check = fn(
    fields: &mut Map<String, Value>,
    previous: Option<&Map<String, Value>>,
    ctx: &dyn ValidationContext,
    write: bool,
) -> Result<(), ValidationError>;

/// Whether a status may become `to` for a writer who saw `seen` (see [`super::check_move`]).
pub type Moves = fn(seen: &[Value], to: &Value) -> Result<(), ValidationError>;

/// A field computed from a record's stored fields when it is read.
pub struct Computed {
    pub field: Field,
    pub value: fn(&Map<String, Value>) -> Value,
}

/// Everything the product knows about one kind of record.
pub struct KindSpec {
    pub kind: Kind,
    pub label: Label,
    /// What the kind is for, in one sentence (zh-CN, English).
    pub about: Label,
    pub fields: &'static [Field],
    /// The field lists show as the record's status (`None`: the kind has none).
    pub status: Option<&'static str>,
    /// The field lists and reports group the kind by (its type or category).
    pub subtype: Option<&'static str>,
    /// Root fields a receiver checks change by change, against the record as each change's
    /// author saw it (`record::received`), besides `created_by` and `updated_by`.
    pub watched: &'static [&'static str],
    /// The kind-specific part of its index row; reads only fields in [`IndexRow::FIELDS`](super::IndexRow::FIELDS).
    pub index: fn(id: &str, fields: &Map<String, Value>) -> IndexParts,
    /// Fields computed from the others when a record is read (never stored, never written):
    /// what a stock item has on hand.
    pub computed: &'static [Computed],
    /// The kind's own rules: required text, named households, computed fields.
    pub check: Check,
    /// The rules between its times: an end after its start (see [`super::check_order`]).
    pub order: fn(&Map<String, Value>) -> Result<(), ValidationError>,
    /// Its status lifecycle: whether the status may become `to` for a writer who saw `seen`
    /// (see [`super::check_move`]). `None`: the kind has no lifecycle.
    pub moves: Option<Moves>,
    /// A record that passes validation, for the tests that hold this spec to its struct.
    #[cfg(test)]
    pub typed: fn(&Map<String, Value>) -> Result<Value, ValidationError>,
}

impl KindSpec {
    /// A top-level field by name.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A field at any depth by its path in a record (`residents[0].name`, `address.door`).
    pub fn field_at(&self, path: &str) -> Option<&'static Field> {
        let wanted = normalise_path(path);
        let mut found = None;
        walk(self.fields, |p, f| {
            if found.is_none() && p == wanted {
                found = Some(f);
            }
        });
        found
    }

    /// The choices of an enumerated top-level field.
    pub fn choices(&self, name: &str) -> Option<&'static ChoiceSet> {
        match self.field(name)?.ty {
            FieldType::Choice(set) => Some(set),
            _ => None,
        }
    }
}

/// The fields every record carries, set by the replica (see [`super::SYSTEM_FIELDS`],
/// [`super::TOUCH_FIELDS`]) or by a deletion or merge.
pub const SYSTEM: &[Field] = &[
    Field::new("id", "编号", "ID", FieldType::Name),
    Field::new("kind", "记录类别", "Record kind", FieldType::Name),
    Field::new("grid_id", "网格", "Grid", FieldType::Name),
    Field::new("created_by", "创建人", "Created by", FieldType::Name),
    Field::new(
        "device_id",
        "创建设备",
        "Created on device",
        FieldType::Name,
    ),
    Field::new("created_at", "创建时间", "Created at", FieldType::Instant),
    Field::new(
        "schema_version",
        "数据版本",
        "Schema version",
        FieldType::Number,
    ),
    Field::new("updated_at", "更新时间", "Updated at", FieldType::Instant),
    Field::new("updated_by", "更新人", "Updated by", FieldType::Name),
    Field::new("deleted", "已删除", "Deleted", FieldType::Bool),
    Field::new("merged_into", "已合并到", "Merged into", FieldType::Name),
];

impl KindSpec {
    /// Refuses a field name this kind does not have, at any level of a local write (the
    /// fields of a create, or a patch), naming the nearest known one. Fields a newer client
    /// wrote arrive as received changes, which this never sees, and are kept.
    pub fn check_known(&self, fields: &Map<String, Value>) -> Result<(), ValidationError> {
        if let Some(key) = fields
            .keys()
            .find(|k| self.computed.iter().any(|c| c.field.name == k.as_str()))
        {
            return Err(ValidationError::ReadOnlyField(key.clone()));
        }
        check_known(self.kind, self.fields, fields, "")
    }
}

impl KindSpec {
    /// Stamps the entries a local write appends to the kind's append-only lists with who wrote
    /// them and when, where the entry has such fields and the writer left them out: a case
    /// action, a follow-up or a stock movement always names its author.
    pub fn stamp_entries(&self, fields: &mut Map<String, Value>, author: &str, now: &str) {
        for field in self.fields {
            let FieldType::Log(parts) = field.ty else {
                continue;
            };
            let has = |name: &str| parts.iter().any(|p| p.name == name);
            let Some(Value::Array(entries)) = fields.get_mut(field.name) else {
                continue;
            };
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                if has("by") && !entry.contains_key("by") {
                    entry.insert("by".into(), author.into());
                }
                if has("at") && !entry.contains_key("at") {
                    entry.insert("at".into(), now.into());
                }
            }
        }
    }
}

impl KindSpec {
    /// Rewrites the times of a local write that people typed as local time — `2026-11-30
    /// 09:00`, `2026-11-30 09:00:00`, or a bare date `2026-11-30` for a time field — as RFC 3339
    /// at `offset` (the community's time zone), at any depth. RFC 3339 and anything else is left
    /// as it is for validation to accept or name.
    pub fn normalise_times(&self, fields: &mut Map<String, Value>, offset: chrono::FixedOffset) {
        normalise(self.fields, fields, offset);
    }
}

fn normalise(spec: &'static [Field], fields: &mut Map<String, Value>, offset: chrono::FixedOffset) {
    for field in spec {
        let Some(value) = fields.get_mut(field.name) else {
            continue;
        };
        match (&field.ty, value) {
            (FieldType::Event | FieldType::Instant, Value::String(text)) => {
                if let Some(t) = local_time(text, offset) {
                    *text = t;
                }
            }
            (FieldType::Object(parts), Value::Object(map)) => normalise(parts, map, offset),
            (FieldType::Entries(parts) | FieldType::Log(parts), Value::Array(items)) => {
                for map in items.iter_mut().filter_map(Value::as_object_mut) {
                    normalise(parts, map, offset);
                }
            }
            _ => {}
        }
    }
}

/// A local time as people write it, as RFC 3339 at `offset`.
fn local_time(text: &str, offset: chrono::FixedOffset) -> Option<String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let text = text.trim();
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return None;
    }
    let naive = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    let at = offset.from_local_datetime(&naive).single()?;
    Some(at.to_rfc3339())
}

fn check_known(
    kind: Kind,
    spec: &'static [Field],
    fields: &Map<String, Value>,
    prefix: &str,
) -> Result<(), ValidationError> {
    for (key, value) in fields {
        if prefix.is_empty() && SYSTEM.iter().any(|f| f.name == key) {
            // Set by the replica; a write that names one is refused as read-only elsewhere.
            continue;
        }
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(field) = spec.iter().find(|f| f.name == key) else {
            return Err(ValidationError::UnknownField {
                kind,
                field: path,
                nearest: nearest(key, spec),
            });
        };
        match (&field.ty, value) {
            (FieldType::Gps, Value::Object(map)) => check_known(kind, super::GPS, map, &path)?,
            (FieldType::Object(parts), Value::Object(map)) => check_known(kind, parts, map, &path)?,
            (FieldType::Entries(parts) | FieldType::Log(parts), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(map) = item {
                        check_known(kind, parts, map, &format!("{path}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The known name closest to a misspelt one (edit distance, at most a third of its length),
/// or one that contains it or is contained in it (`head` → `head_name`).
fn nearest(name: &str, spec: &'static [Field]) -> Option<&'static str> {
    let name = name.to_lowercase();
    let mut best: Option<(usize, &'static str)> = None;
    for field in spec {
        let distance = edit_distance(&name, field.name);
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, field.name));
        }
    }
    let close = (name.chars().count() / 3).max(2);
    best.filter(|(d, _)| *d <= close)
        .map(|(_, n)| n)
        .or_else(|| {
            spec.iter()
                .map(|f| f.name)
                .find(|n| name.len() >= 3 && (n.contains(name.as_str()) || name.contains(n)))
        })
}

/// Levenshtein distance between two names, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Every field of every kind and of the records' system part, with the path it has in a record
/// (`residents[].name`, `address.door`), depth first in declaration order.
pub fn walk(fields: &'static [Field], mut visit: impl FnMut(&str, &'static Field)) {
    fn go(prefix: &str, fields: &'static [Field], visit: &mut dyn FnMut(&str, &'static Field)) {
        for field in fields {
            let path = if prefix.is_empty() {
                field.name.to_string()
            } else {
                format!("{prefix}.{}", field.name)
            };
            visit(&path, field);
            let inner = match field.ty {
                FieldType::Object(_) => path,
                FieldType::Entries(_) | FieldType::Log(_) => format!("{path}[]"),
                _ => continue,
            };
            go(&inner, field.ty.parts(), visit);
        }
    }
    go("", fields, &mut visit);
}

/// The label of a field by its path in a record (`head_name`, `residents[0].name`,
/// `residents[].name`) or by its bare name. A path is looked up in every kind; a bare name is
/// taken from the first kind that has it at the top level, else from the first entry or map
/// that has it. Where the kind is known, [`field_label_in`] gives its own word.
pub fn field_label(path: &str) -> Option<Label> {
    let wanted = normalise_path(path);
    let every = || {
        Kind::ALL_STORED
            .into_iter()
            .map(|k| k.spec().fields)
            .chain([SYSTEM, super::GPS])
    };
    let mut exact = None;
    let mut nested = None;
    for fields in every() {
        walk(fields, |p, f| {
            if exact.is_none() && p == wanted {
                exact = Some(f.label);
            }
            if nested.is_none() && f.name == wanted {
                nested = Some(f.label);
            }
        });
        if exact.is_some() {
            break;
        }
    }
    exact.or(nested)
}

/// The label of a field of one kind by its path or bare name (see [`field_label`]): the kind's
/// own word first (a unit's `name` is 单位名称, a volunteer's 姓名), then any kind's.
pub fn field_label_in(kind: Kind, path: &str) -> Option<Label> {
    let wanted = normalise_path(path);
    let mut exact = None;
    let mut named = None;
    for fields in [kind.spec().fields, SYSTEM, super::GPS] {
        walk(fields, |p, f| {
            if exact.is_none() && p == wanted {
                exact = Some(f.label);
            }
            if named.is_none() && f.name == wanted {
                named = Some(f.label);
            }
        });
    }
    exact.or(named).or_else(|| field_label(path))
}

/// `residents[3].name` → `residents[].name`.
fn normalise_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every choice set any kind uses, each once, in the order the kinds declare them.
pub fn choice_sets() -> Vec<&'static ChoiceSet> {
    let mut sets: Vec<&'static ChoiceSet> = Vec::new();
    for kind in Kind::ALL_STORED {
        walk(kind.spec().fields, |_, f| {
            let mut ty = &f.ty;
            while let FieldType::List(inner) = ty {
                ty = inner;
            }
            if let FieldType::Choice(set) = ty
                && !sets
                    .iter()
                    .any(|s| std::ptr::eq(*s, *set) || s.group == set.group)
            {
                sets.push(set);
            }
        });
    }
    sets
}

/// The label of a stored value of a choice group (`choice_label("case_status", "open")`).
pub fn choice_label(group: &str, code: &str) -> Option<Label> {
    choice_sets()
        .into_iter()
        .find(|s| s.group == group)?
        .get(code)
        .map(|c| c.label)
}

/// Declares an enumerated type with the stored code and the zh-CN and English label of each
/// value, and its [`ChoiceSet`] (`CHOICES`) under a label group name:
///
/// ```ignore
/// choices! {
///     /// 紧急程度.
///     pub enum Urgency in "urgency" {
///         Critical = "critical" ("特急", "Critical"),
///         Normal = "normal" ("一般", "Normal"),
///     }
/// }
/// ```
#[macro_export]
macro_rules! choices {
    (
        $(#[$meta:meta])*
        pub enum $name:ident in $group:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal ($zh:literal, $en:literal) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $code)] $variant, )+
        }

        impl $name {
            /// Every value, in the order users are offered them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The values with their labels.
            pub const CHOICES: $crate::record::schema::ChoiceSet = $crate::record::schema::ChoiceSet {
                group: $group,
                choices: &[$($crate::record::schema::Choice {
                    code: $code,
                    label: $crate::record::schema::Label { zh: $zh, en: $en },
                }),+],
            };

            /// The value as it is stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            pub fn label(self) -> $crate::record::schema::Label {
                match self {
                    $($name::$variant => $crate::record::schema::Label { zh: $zh, en: $en },)+
                }
            }
        }
    };
}
