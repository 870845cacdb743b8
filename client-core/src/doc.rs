//! One record, one Automerge document: JSON fields in, minimal CRDT operations out, and back.
//!
//! The document's root map holds the record's fields. Nested JSON objects become maps, arrays become
//! lists, and the kind's text fields (notes, observations, ...) become Automerge text so concurrent
//! edits merge. A write never rewrites what did not change: [`reconcile_root`] compares the new
//! fields with the current ones and emits operations only for the differences, so concurrent edits
//! of different fields never conflict and append-only lists only ever grow at the end.

use automerge::iter::{ListRange, MapRange};
use automerge::transaction::Transactable;
use automerge::{
    Automerge, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue, ScalarValueRef, Value,
    ValueRef,
};
use serde::Serialize;
use serde_json::{Map, Number, Value as Json};

use crate::record::Kind;

mod depth;

pub use depth::{MAX_DEPTH, Shape, TooDeep, check_depth, check_json_depth, has_conflicts};

/// One string field of the root map, without reading the rest of the document.
pub fn root_str(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(ROOT, key).ok().flatten()? {
        (Value::Scalar(s), _) => s.as_str().map(str::to_string),
        _ => None,
    }
}

/// Reads the document's root map as JSON. Where a field holds concurrent values, the value
/// Automerge picks deterministically (the same on every replica) is shown; see [`conflicts`].
pub fn read_root(doc: &Automerge) -> Map<String, Json> {
    let mut map = match read_object(doc, &ROOT, 0) {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    newest_touch(doc, &mut map);
    map
}

/// Only the named fields of the root map, as [`read_root`] shows them. The query index needs a
/// dozen small fields; reading the whole document (long texts, lists of residents or actions) for
/// them was the largest cost of storing a received change after Automerge's own.
pub fn read_fields<'k>(
    doc: &Automerge,
    keys: impl IntoIterator<Item = &'k str>,
) -> Map<String, Json> {
    let wanted: std::collections::HashSet<&str> = keys.into_iter().collect();
    let mut map = Map::new();
    // One pass over the root map: a lookup by key seeks through the document from its start,
    // which for a dozen keys cost four times reading every root entry once.
    for item in doc.map_range(ROOT, ..) {
        if !wanted.contains(item.key.as_ref()) {
            continue;
        }
        let value = match &item.value {
            ValueRef::Scalar(s) => scalar_ref_to_json(s),
            ValueRef::Object(_) => read_object(doc, &item.id(), 1),
        };
        map.insert(item.key.into_owned(), value);
    }
    newest_touch(doc, &mut map);
    map
}

/// The touch fields (`updated_at`, `updated_by`) as the newest of their concurrent values: two
/// devices that edited a record offline each stamped it, and the record was last updated at the
/// later stamp, whichever value Automerge's own order would show. `updated_by` is the one written
/// with that stamp (by the same actor).
fn newest_touch(doc: &Automerge, map: &mut Map<String, Json>) {
    if !map.contains_key("updated_at") {
        return;
    }
    let stamps = doc.get_all(ROOT, "updated_at").unwrap_or_default();
    if stamps.len() < 2 {
        return;
    }
    let newest = stamps
        .iter()
        .filter_map(|(value, id)| match (value, id) {
            (Value::Scalar(s), ObjId::Id(_, actor, _)) => Some((s.as_str()?, actor)),
            _ => None,
        })
        .max_by_key(|(at, _)| *at);
    let Some((at, actor)) = newest else {
        return;
    };
    map.insert("updated_at".into(), Json::String(at.to_string()));
    if !map.contains_key("updated_by") {
        return;
    }
    let by = doc.get_all(ROOT, "updated_by").unwrap_or_default();
    if let Some((Value::Scalar(s), _)) = by
        .iter()
        .find(|(_, id)| matches!(id, ObjId::Id(_, a, _) if a == actor))
    {
        map.insert("updated_by".into(), scalar_to_json(s));
    }
}

/// Reads an object that lies `depth` levels below the root as JSON. Without recursion: a stack
/// of the maps and lists being read, one pass over each (map_range / list_range) instead of a
/// lookup per key or index. An object deeper than [`MAX_DEPTH`] reads as null: a checked
/// document has none, but a past state of one (the dashboard's history) is not checked.
fn read_object(doc: &Automerge, obj: &ObjId, depth: usize) -> Json {
    let mut stack = match open(doc, obj, depth, String::new()) {
        Ok(reading) => vec![reading],
        Err((_, value)) => return value,
    };
    loop {
        let below = depth + stack.len();
        let Some(top) = stack.last_mut() else {
            return Json::Null;
        };
        match top.next() {
            Some((key, Ok(value))) => top.put(key, value),
            Some((key, Err(child))) => match open(doc, &child, below, key) {
                Ok(reading) => stack.push(reading),
                Err((key, value)) => top.put(key, value),
            },
            None => {
                let (key, value) = stack.pop().map(Reading::finish).unwrap_or_default();
                match stack.last_mut() {
                    Some(parent) => parent.put(key, value),
                    None => return value,
                }
            }
        }
    }
}

/// Starts reading an object found under `key` (in a list: ""), or reads it at once when it is a
/// text, too deep, or not there.
fn open<'a>(
    doc: &'a Automerge,
    obj: &ObjId,
    depth: usize,
    key: String,
) -> Result<Reading<'a>, (String, Json)> {
    if depth > MAX_DEPTH {
        return Err((key, Json::Null));
    }
    match doc.object_type(obj) {
        Ok(ObjType::Map) | Ok(ObjType::Table) => Ok(Reading::Map {
            items: doc.map_range(obj, ..),
            out: Map::new(),
            key,
        }),
        Ok(ObjType::List) => Ok(Reading::List {
            items: doc.list_range(obj, ..),
            out: Vec::new(),
            key,
        }),
        Ok(ObjType::Text) => Err((key, Json::String(doc.text(obj).unwrap_or_default()))),
        Err(_) => Err((key, Json::Null)),
    }
}

/// A map or list [`read_object`] is reading: what is left of it, what was read so far, and the
/// key it goes under in the map holding it.
enum Reading<'a> {
    Map {
        items: MapRange<'a>,
        out: Map<String, Json>,
        key: String,
    },
    List {
        items: ListRange<'a>,
        out: Vec<Json>,
        key: String,
    },
}

impl Reading<'_> {
    /// The next entry: its key ("" in a list) and its value, or the object to read for it.
    fn next(&mut self) -> Option<(String, Result<Json, ObjId>)> {
        fn value(v: &ValueRef<'_>, id: impl FnOnce() -> ObjId) -> Result<Json, ObjId> {
            match v {
                ValueRef::Scalar(s) => Ok(scalar_ref_to_json(s)),
                ValueRef::Object(_) => Err(id()),
            }
        }
        match self {
            Reading::Map { items, .. } => items.next().map(|item| {
                let v = value(&item.value, || item.id());
                (item.key.into_owned(), v)
            }),
            Reading::List { items, .. } => items
                .next()
                .map(|item| (String::new(), value(&item.value, || item.id()))),
        }
    }

    fn put(&mut self, key: String, value: Json) {
        match self {
            Reading::Map { out, .. } => {
                out.insert(key, value);
            }
            Reading::List { out, .. } => out.push(value),
        }
    }

    fn finish(self) -> (String, Json) {
        match self {
            Reading::Map { out, key, .. } => (key, Json::Object(out)),
            Reading::List { out, key, .. } => (key, Json::Array(out)),
        }
    }
}

/// A value found `depth` levels below the root, as JSON (see [`read_object`]).
fn read_value(doc: &Automerge, value: Value<'_>, id: &ObjId, depth: usize) -> Json {
    match value {
        Value::Object(_) => read_object(doc, id, depth),
        Value::Scalar(s) => scalar_to_json(&s),
    }
}

fn scalar_to_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Counter(c) => Json::from(i64::from(c)),
        ScalarValue::Timestamp(t) => Json::from(*t),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Bytes(b) => Json::String(hex::encode(b)),
        ScalarValue::Unknown { .. } | ScalarValue::Null => Json::Null,
    }
}

/// [`scalar_to_json`] for a value borrowed from the document (no copy of the value first).
fn scalar_ref_to_json(s: &ScalarValueRef<'_>) -> Json {
    match s {
        ScalarValueRef::Str(s) => Json::String(s.to_string()),
        ScalarValueRef::Int(i) => Json::from(*i),
        ScalarValueRef::Uint(u) => Json::from(*u),
        ScalarValueRef::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValueRef::Counter(c) => Json::from(*c),
        ScalarValueRef::Timestamp(t) => Json::from(*t),
        ScalarValueRef::Boolean(b) => Json::Bool(*b),
        ScalarValueRef::Bytes(b) => Json::String(hex::encode(b)),
        ScalarValueRef::Unknown { .. } | ScalarValueRef::Null => Json::Null,
    }
}

fn json_to_scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int(i),
            (None, Some(f)) => ScalarValue::F64(f),
            (None, None) => ScalarValue::Null,
        },
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Array(_) | Json::Object(_) => ScalarValue::Null,
    }
}

/// Makes the root map equal to `new`, given that it currently reads as `current`.
///
/// Keys absent from `new` are deleted. Text fields of `kind` are kept as Automerge text.
pub fn reconcile_root<T: Transactable>(
    tx: &mut T,
    kind: Kind,
    current: &Map<String, Json>,
    new: &Map<String, Json>,
) -> Result<(), automerge::AutomergeError> {
    for (key, value) in new {
        let is_text = kind.is_text(key);
        match current.get(key) {
            Some(old) if old == value => {}
            Some(old) => update_prop(tx, &ROOT, key.as_str().into(), old, value, is_text)?,
            None => put_new(tx, &ROOT, key.as_str().into(), value, is_text, false)?,
        }
    }
    for key in current.keys() {
        if !new.contains_key(key) {
            tx.delete(ROOT, key.as_str())?;
        }
    }
    Ok(())
}

/// Puts a value that did not exist at `prop` (or replaces one of another shape).
fn put_new<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    value: &Json,
    is_text: bool,
    insert: bool,
) -> Result<(), automerge::AutomergeError> {
    let object = |tx: &mut T, ty: ObjType| -> Result<ObjId, automerge::AutomergeError> {
        match (&prop, insert) {
            (Prop::Seq(i), true) => tx.insert_object(obj, *i, ty),
            _ => tx.put_object(obj, prop.clone(), ty),
        }
    };
    match value {
        Json::String(s) if is_text => {
            let text = object(tx, ObjType::Text)?;
            tx.splice_text(&text, 0, 0, s)?;
        }
        Json::Object(map) => {
            let child = object(tx, ObjType::Map)?;
            for (k, v) in map {
                put_new(tx, &child, k.as_str().into(), v, false, false)?;
            }
        }
        Json::Array(items) => {
            let child = object(tx, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                put_new(tx, &child, Prop::Seq(i), item, false, true)?;
            }
        }
        scalar => match (&prop, insert) {
            (Prop::Seq(i), true) => tx.insert(obj, *i, json_to_scalar(scalar))?,
            _ => tx.put(obj, prop.clone(), json_to_scalar(scalar))?,
        },
    }
    Ok(())
}

/// Changes an existing value at `prop` from `old` to `new` with the fewest operations.
fn update_prop<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    prop: Prop,
    old: &Json,
    new: &Json,
    is_text: bool,
) -> Result<(), automerge::AutomergeError> {
    let existing = tx.get(obj, prop.clone())?;
    let child = match existing {
        Some((Value::Object(ty), id)) => Some((ty, id)),
        _ => None,
    };
    match (old, new, child) {
        (_, Json::String(s), Some((ObjType::Text, id))) if is_text => tx.update_text(&id, s),
        (Json::Object(old_map), Json::Object(new_map), Some((ObjType::Map, id))) => {
            for (k, v) in new_map {
                match old_map.get(k) {
                    Some(o) if o == v => {}
                    Some(o) => update_prop(tx, &id, k.as_str().into(), o, v, false)?,
                    None => put_new(tx, &id, k.as_str().into(), v, false, false)?,
                }
            }
            for k in old_map.keys() {
                if !new_map.contains_key(k) {
                    tx.delete(&id, k.as_str())?;
                }
            }
            Ok(())
        }
        (Json::Array(old_items), Json::Array(new_items), Some((ObjType::List, id))) => {
            // Element by element: entries that did not change are left alone, so a concurrent
            // append or an edit of another entry survives.
            let common = old_items.len().min(new_items.len());
            for i in 0..common {
                if old_items[i] != new_items[i] {
                    update_prop(tx, &id, Prop::Seq(i), &old_items[i], &new_items[i], false)?;
                }
            }
            for (i, item) in new_items.iter().enumerate().skip(common) {
                put_new(tx, &id, Prop::Seq(i), item, false, true)?;
            }
            for i in (common..old_items.len()).rev() {
                tx.delete(&id, i)?;
            }
            Ok(())
        }
        _ => put_new(tx, obj, prop, new, is_text, false),
    }
}

/// One field that holds concurrent values nobody has settled yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldConflict {
    /// Path of the field, e.g. `status`, `address.door`, `residents[2].phone`.
    pub field: String,
    /// Every value, the one shown by default first.
    pub values: Vec<ConflictValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictValue {
    pub value: Json,
    /// Who wrote it, from the change's message (the worker id), if known.
    pub author: Option<String>,
    /// The writing device's clock (seconds since the epoch); advisory only. Serialised as
    /// RFC 3339, as every other time.
    #[serde(serialize_with = "epoch_as_rfc3339")]
    pub written_at: Option<i64>,
    pub change: String,
}

fn epoch_as_rfc3339<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    let text = t
        .and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    match text {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_none(),
    }
}

/// Every field of the document, at any depth (down to [`MAX_DEPTH`]), that holds more than one
/// value. Without recursion: a stack of the objects being looked at, each with the properties
/// still to look at, so fields come out in the order of the document.
pub fn conflicts(doc: &Automerge) -> Vec<FieldConflict> {
    let mut out = Vec::new();
    let mut stack = vec![(ROOT, props(doc, &ROOT, ""), 0)];
    while let Some((obj, left, depth)) = stack.last_mut() {
        let Some((prop, field)) = left.next() else {
            stack.pop();
            continue;
        };
        let Ok(all) = doc.get_all(&*obj, prop) else {
            continue;
        };
        // The field's values lie one level below the object holding them.
        let depth = *depth + 1;
        let first = all
            .first()
            .map(|(v, id)| read_value(doc, v.clone(), id, depth));
        let distinct = all.len() > 1
            && all
                .iter()
                .skip(1)
                .any(|(v, id)| Some(read_value(doc, v.clone(), id, depth)) != first);
        if distinct {
            let mut values: Vec<ConflictValue> = all
                .iter()
                .map(|(value, id)| conflict_value(doc, value.clone(), id, depth))
                .collect();
            // get_all lists values in op order; the winner `get` shows is the last one.
            values.reverse();
            out.push(FieldConflict { field, values });
        } else if let Some((Value::Object(_), id)) = all.into_iter().last()
            && depth <= MAX_DEPTH
        {
            let inside = props(doc, &id, &field);
            stack.push((id, inside, depth));
        }
    }
    out
}

/// The properties of a map or list with their paths (`path.key`, `path[i]`); none of a text.
fn props(doc: &Automerge, obj: &ObjId, path: &str) -> std::vec::IntoIter<(Prop, String)> {
    let props: Vec<(Prop, String)> = match doc.object_type(obj) {
        Ok(ObjType::Map) | Ok(ObjType::Table) => doc
            .keys(obj)
            // Bookkeeping every write sets: concurrent writes always differ there, and nobody
            // needs to review which "last updated" stamp won.
            .filter(|k| !(path.is_empty() && crate::record::TOUCH_FIELDS.contains(&k.as_str())))
            .map(|k| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                (Prop::Map(k), p)
            })
            .collect(),
        Ok(ObjType::List) => (0..doc.length(obj))
            .map(|i| (Prop::Seq(i), format!("{path}[{i}]")))
            .collect(),
        _ => Vec::new(),
    };
    props.into_iter()
}

/// Whether the concurrent values of `prop` differ (read as JSON, `depth` levels below the root).
fn values_differ(doc: &Automerge, obj: &ObjId, prop: Prop, depth: usize) -> bool {
    let Ok(all) = doc.get_all(obj, prop) else {
        return false;
    };
    let Some((first, first_id)) = all.first() else {
        return false;
    };
    let first = read_value(doc, first.clone(), first_id, depth);
    all.iter()
        .skip(1)
        .any(|(v, id)| read_value(doc, v.clone(), id, depth) != first)
}

fn conflict_value(doc: &Automerge, value: Value<'_>, id: &ObjId, depth: usize) -> ConflictValue {
    let meta = doc
        .hash_for_opid(id)
        .and_then(|hash| doc.get_change_meta_by_hash(&hash));
    ConflictValue {
        value: read_value(doc, value, id, depth),
        author: meta
            .as_ref()
            .and_then(|m| m.message.as_ref().map(|s| s.to_string())),
        written_at: meta.as_ref().map(|m| m.timestamp),
        change: meta.map(|m| m.hash.to_string()).unwrap_or_default(),
    }
}

/// Whether `bytes` are Automerge chunks a received snapshot may hold: one after another, each a
/// document (what `save` writes), a change or a compressed change, with a length that fits.
/// Anything else — a bundle of changes, whose declared sizes Automerge allocates before it
/// checks them (the fuzzer found 35 bytes that asked for gigabytes) — never reaches
/// `Automerge::load`: an allocation that fails aborts the process, which `guarded` cannot catch.
pub fn snapshot_chunks_ok(bytes: &[u8]) -> bool {
    chunks_ok(bytes, &[0, 1, 2], usize::MAX)
}

/// Whether `bytes` are one Automerge change chunk (plain or compressed) and nothing else: what a
/// received or uploaded change must be before `Change::from_bytes` sees it (see
/// [`snapshot_chunks_ok`]).
pub fn change_chunk_ok(bytes: &[u8]) -> bool {
    chunks_ok(bytes, &[1, 2], 1)
}

/// Whether the changes an Automerge sync message carries (the repair path) are only document and
/// change chunks (see [`snapshot_chunks_ok`]); checked before the message is received.
pub fn sync_message_chunks_ok(message: &automerge::sync::Message) -> bool {
    message.changes.iter().all(snapshot_chunks_ok)
}

fn chunks_ok(mut bytes: &[u8], types: &[u8], most: usize) -> bool {
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    if bytes.is_empty() {
        return false;
    }
    let mut seen = 0;
    while !bytes.is_empty() {
        seen += 1;
        // magic (4), checksum (4), type (1), length (LEB128), then the chunk itself.
        if seen > most || bytes.len() < 10 || bytes[..4] != MAGIC || !types.contains(&bytes[8]) {
            return false;
        }
        let mut len: u64 = 0;
        let mut at = 9;
        loop {
            let Some(&b) = bytes.get(at) else {
                return false;
            };
            if at - 9 >= 9 {
                return false;
            }
            len |= u64::from(b & 0x7f) << (7 * (at - 9));
            at += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(at)) else {
            return false;
        };
        let Some(rest) = bytes.get(end..) else {
            return false;
        };
        bytes = rest;
    }
    true
}

/// Runs an Automerge operation on bytes from elsewhere, turning a panic inside Automerge into an
/// error. Automerge 0.12 can panic on some malformed changes (found by fuzzing, see
/// fuzz/regressions/apply_changes); one bad change from the network must never take down a
/// session or an app. The caller must discard the document after an error.
///
/// A stack overflow is no panic and cannot be caught here: it aborts the process. What runs in
/// here must not recurse on what the bytes say. Applying changes, loading, forking, saving and the
/// sync protocol are iterative in Automerge 0.12 (tested with 100,000 nested maps on a 256 KiB
/// stack); its hydrating readers (`iter`, `spans`, `hydrate`) are not, and are not called on
/// received documents. The result is then [`check_depth`]-ed before anything reads it.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, automerge::AutomergeError>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!(
            "malformed change rejected (automerge panicked: {})",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into())
        )),
    }
}

/// A document from its stored form: a snapshot (if any) and the changes stored after it.
pub fn from_stored(
    snapshot: Option<&[u8]>,
    changes: &[Vec<u8>],
) -> Result<Automerge, automerge::AutomergeError> {
    let mut doc = match snapshot {
        Some(bytes) => Automerge::load(bytes)?,
        None => Automerge::new(),
    };
    let joined = changes.concat();
    if !joined.is_empty() {
        doc.load_incremental(&joined)?;
    }
    Ok(doc)
}

/// A document's snapshot as the replica and the relay store it (and the relay sends it), with
/// changes still waiting for their dependencies kept. Not compressed: Automerge deflates each
/// large column with a fresh compressor, and setting those up cost as much as applying the
/// record's changes (a third of receiving a new record); the columnar snapshot is already
/// smaller than the changes it replaces, and frames on the wire are deflated whole.
pub fn save_snapshot(doc: &Automerge) -> Vec<u8> {
    doc.save_with_options(automerge::SaveOptions {
        deflate: false,
        retain_orphans: true,
    })
}

/// Heads as bytes for storage and the wire.
pub fn heads_to_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub fn heads_from_bytes(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| ChangeHash::try_from(c).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::CommitOptions;
    use serde_json::json;

    fn obj(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    /// Whether the document holds a conflict, as `has_conflicts` and the nesting check's one
    /// walk (`check_depth`) each tell: they must agree.
    fn conflicted(doc: &Automerge) -> bool {
        let found = has_conflicts(doc);
        assert_eq!(check_depth(doc).map(|s| s.has_conflicts), Ok(found));
        found
    }

    fn write(doc: &mut Automerge, kind: Kind, new: &Map<String, Json>, author: &str) {
        let current = read_root(doc);
        let mut tx = doc.transaction();
        reconcile_root(&mut tx, kind, &current, new).unwrap();
        tx.commit_with(CommitOptions::default().with_message(author));
    }

    #[test]
    fn test_concurrent_touches_read_as_the_newest() {
        let base = obj(
            json!({"status": "open", "updated_at": "2026-11-29T02:00:00Z", "updated_by": "wang"}),
        );
        let mut a = Automerge::new();
        write(&mut a, Kind::Case, &base, "wang");
        let mut b = a.fork();
        // Each device edits offline and stamps the record; li's stamp is the later one.
        for (doc, by, at) in [
            (&mut a, "wang", "2026-11-29T02:08:00Z"),
            (&mut b, "li", "2026-11-29T02:09:00Z"),
        ] {
            let mut next = read_root(doc);
            next.insert("notes".into(), json!(format!("{by} 的备注")));
            next.insert("updated_at".into(), json!(at));
            next.insert("updated_by".into(), json!(by));
            write(doc, Kind::Case, &next, by);
        }
        for (one, other) in [(a.clone(), b.clone()), (b, a)] {
            let mut merged = one;
            merged.merge(&mut other.clone()).unwrap();
            assert_eq!(
                doc_str(&read_root(&merged), "updated_at"),
                "2026-11-29T02:09:00Z"
            );
            assert_eq!(doc_str(&read_root(&merged), "updated_by"), "li");
            let fields = read_fields(&merged, ["updated_at", "updated_by", "status"]);
            assert_eq!(doc_str(&fields, "updated_at"), "2026-11-29T02:09:00Z");
            assert_eq!(doc_str(&fields, "updated_by"), "li");
        }
    }

    fn doc_str<'a>(map: &'a Map<String, Json>, key: &str) -> &'a str {
        map.get(key).and_then(Json::as_str).unwrap_or_default()
    }

    #[test]
    fn test_round_trip_keeps_shape() {
        let fields = obj(json!({
            "head_name": "张三", "residents": [{"name": "张三", "age": 70}],
            "address": {"building": "3"}, "notes": "独居", "gps": {"lat": 30.5, "lon": 114.3}
        }));
        let mut doc = Automerge::new();
        write(&mut doc, Kind::Household, &fields, "w1");
        assert_eq!(read_root(&doc), fields);
        assert_eq!(
            doc.object_type(doc.get(ROOT, "notes").unwrap().unwrap().1)
                .unwrap(),
            ObjType::Text
        );
    }

    #[test]
    fn test_concurrent_edits_of_different_fields_merge_without_conflict() {
        let base = obj(json!({"status": "open", "plan": "x", "actions": []}));
        let mut a = Automerge::new();
        write(&mut a, Kind::Case, &base, "a");
        let mut b = a.fork();
        let mut fa = base.clone();
        fa.insert("plan".into(), json!("x and y"));
        fa.insert("actions".into(), json!([{"kind": "visit"}]));
        write(&mut a, Kind::Case, &fa, "a");
        let mut fb = base.clone();
        fb.insert("status".into(), json!("assessing"));
        fb.insert("actions".into(), json!([{"kind": "goods"}]));
        write(&mut b, Kind::Case, &fb, "b");
        a.merge(&mut b).unwrap();
        let merged = read_root(&a);
        assert_eq!(merged["status"], "assessing");
        assert_eq!(merged["plan"], "x and y");
        assert_eq!(merged["actions"].as_array().unwrap().len(), 2);
        assert!(conflicts(&a).is_empty());
        assert!(!conflicted(&a));
    }

    #[test]
    fn test_concurrent_status_edits_are_flagged_with_authors() {
        let mut a = Automerge::new();
        write(&mut a, Kind::Case, &obj(json!({"status": "open"})), "a");
        let mut b = a.fork();
        write(
            &mut a,
            Kind::Case,
            &obj(json!({"status": "assessing"})),
            "worker-a",
        );
        write(
            &mut b,
            Kind::Case,
            &obj(json!({"status": "suspended"})),
            "worker-b",
        );
        a.merge(&mut b).unwrap();
        let found = conflicts(&a);
        assert!(conflicted(&a));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "status");
        let mut authors: Vec<_> = found[0]
            .values
            .iter()
            .map(|v| v.author.clone().unwrap())
            .collect();
        authors.sort();
        assert_eq!(authors, ["worker-a", "worker-b"]);
        assert_eq!(found[0].values[0].value, read_root(&a)["status"]);
    }

    #[test]
    fn test_last_updated_stamps_are_not_conflicts() {
        let mut a = Automerge::new();
        write(
            &mut a,
            Kind::Case,
            &obj(json!({"plan": "x", "updated_at": "1"})),
            "a",
        );
        let mut b = a.fork();
        write(
            &mut a,
            Kind::Case,
            &obj(json!({"plan": "x", "updated_at": "2"})),
            "a",
        );
        write(
            &mut b,
            Kind::Case,
            &obj(json!({"plan": "x", "updated_at": "3"})),
            "b",
        );
        a.merge(&mut b).unwrap();
        assert!(conflicts(&a).is_empty());
        assert!(!conflicted(&a));
    }

    #[test]
    fn test_nested_conflict_has_a_path() {
        let mut a = Automerge::new();
        let base = obj(json!({"residents": [{"name": "李四", "phone": "1"}]}));
        write(&mut a, Kind::Household, &base, "a");
        let mut b = a.fork();
        write(
            &mut a,
            Kind::Household,
            &obj(json!({"residents": [{"name": "李四", "phone": "2"}]})),
            "a",
        );
        write(
            &mut b,
            Kind::Household,
            &obj(json!({"residents": [{"name": "李四", "phone": "3"}]})),
            "b",
        );
        a.merge(&mut b).unwrap();
        let found = conflicts(&a);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "residents[0].phone");
        assert!(conflicted(&a));
    }

    #[test]
    fn test_concurrent_equal_values_are_not_a_conflict() {
        let mut a = Automerge::new();
        write(&mut a, Kind::Case, &obj(json!({"status": "open"})), "a");
        let mut b = a.fork();
        write(&mut a, Kind::Case, &obj(json!({"status": "closed"})), "a");
        write(&mut b, Kind::Case, &obj(json!({"status": "closed"})), "b");
        a.merge(&mut b).unwrap();
        assert_eq!(a.get_all(ROOT, "status").unwrap().len(), 2);
        assert!(!conflicted(&a));
        assert!(conflicts(&a).is_empty());
    }

    #[test]
    fn test_a_conflicting_values_time_is_rfc_3339_in_json() {
        let v = ConflictValue {
            value: serde_json::json!("open"),
            author: Some("wang".into()),
            written_at: Some(1_764_547_200),
            change: String::new(),
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["written_at"], "2025-12-01T00:00:00Z");
    }

    #[test]
    fn test_a_snapshot_is_document_or_change_chunks_and_nothing_else() {
        let mut doc = Automerge::new();
        write(&mut doc, Kind::Case, &obj(json!({"status": "open"})), "a");
        let saved = doc.save_nocompress();
        assert!(snapshot_chunks_ok(&saved));
        let mut with_change = saved.clone();
        let mut other = doc.fork();
        write(
            &mut other,
            Kind::Case,
            &obj(json!({"status": "closed"})),
            "b",
        );
        with_change.extend(other.get_last_local_change().unwrap().raw_bytes());
        assert!(snapshot_chunks_ok(&with_change));
        // The fuzzer's 35 bytes: a bundle chunk that declares gigabytes.
        let bundle = [
            0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 3, 14, 0, 0, 1, 1, 0, 1, 35, 6, 255, 255, 255, 249,
            26, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 79, 0,
        ];
        assert!(!snapshot_chunks_ok(&bundle));
        assert!(!snapshot_chunks_ok(&saved[..saved.len() - 1]), "cut short");
        assert!(!snapshot_chunks_ok(b""));
        assert!(!snapshot_chunks_ok(b"not automerge at all"));
        let change = other.get_last_local_change().unwrap().raw_bytes().to_vec();
        assert!(change_chunk_ok(&change));
        assert!(!change_chunk_ok(&bundle));
        assert!(!change_chunk_ok(&saved), "a document is no change");
        assert!(
            !change_chunk_ok(&[change.clone(), change].concat()),
            "two changes in one"
        );
    }
}
