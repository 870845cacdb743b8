//! What a receiver checks of changes it did not make: the relay, of every upload and repair
//! step; a device, of every document the relay sends it.
//!
//! **Identity.** A document is its record: the root `id` is the document's id, and the kind and
//! grid its first change sets are never changed by a later one. Ids with `~` are derived: the
//! only one is `<household>~private`, and it is always the `household_private` document of that
//! household. Without this a device could create a record under a household's private id, as a
//! kind its role may read, and the household's sensitive data would then merge into it.
//!
//! **Content.** The relay holds every upload to the rules a device holds its own writes to
//! ([`super::validate`]). The document it checks may be a merge of concurrent writes, each valid
//! where it was made; so what only holds of one writer's view (a status move, a start before an
//! end, who wrote a field) is checked change by change, on the record as that change's author
//! saw it, and what holds of any merge (shape, choices, lengths, ranges) on the result.

use automerge::{Automerge, Change, ChangeHash, ObjId, ROOT, ReadDoc, Value as AmValue};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::validate::{self, ValidationContext};
use super::{Kind, sensitive};
use crate::doc;

/// Checks that a document is the record its id says, and returns its kind (`None` while its
/// first change has not arrived: nothing of it is readable yet). `grid` is the grid it is filed
/// under, when the receiver knows it; `known` its kind as first stored.
pub fn identity(
    doc: &Automerge,
    doc_id: &str,
    grid: Option<&str>,
    known: Option<Kind>,
) -> Result<Option<Kind>, String> {
    let ids = strings(doc, "id")?;
    let kinds = strings(doc, "kind")?;
    let grids = strings(doc, "grid_id")?;
    if ids.is_empty() && kinds.is_empty() && grids.is_empty() && known.is_none() {
        return Ok(None);
    }
    let Some(first) = kinds.first() else {
        return Err(match known {
            Some(k) => format!("a change may not remove the kind of a {k} record"),
            None => format!("record {doc_id} has no kind"),
        });
    };
    for k in &kinds {
        match known {
            Some(known) if k != known.as_str() => {
                return Err(format!("a {known} record cannot become a {k}"));
            }
            None if k != first => {
                return Err(format!("a record cannot be both a {first} and a {k}"));
            }
            _ => {}
        }
    }
    let kind: Kind = first
        .parse()
        .map_err(|_| format!("unknown record kind {first}"))?;
    if ids.is_empty() {
        return Err(format!("record {doc_id} has no id"));
    }
    if let Some(other) = ids.iter().find(|id| *id != doc_id) {
        return Err(format!("record says id {other} but was sent as {doc_id}"));
    }
    let Some(first_grid) = grids.first() else {
        return Err(format!("record {doc_id} has no grid_id"));
    };
    let filed = grid.unwrap_or(first_grid);
    if let Some(other) = grids.iter().find(|g| *g != filed) {
        return Err(format!(
            "record says grid {other} but was sent for grid {filed}"
        ));
    }
    let household = doc_id
        .strip_suffix("~private")
        .filter(|h| !h.is_empty() && !h.contains('~'));
    match (kind, household) {
        (Kind::HouseholdPrivate, Some(household)) => {
            let named = strings(doc, "household_id")?;
            if named.is_empty() || named.iter().any(|h| h != household) {
                return Err(format!(
                    "{doc_id} is the private part of household {household}: its household_id \
                     must be {household}"
                ));
            }
        }
        (Kind::HouseholdPrivate, None) => {
            return Err(format!(
                "a household's private part has the id {}, not {doc_id}",
                sensitive::private_id("<household>")
            ));
        }
        (_, _) if doc_id.contains('~') => {
            return Err(format!(
                "ids with ~ are reserved for households' private parts ({}): {doc_id} cannot \
                 be a {kind} record",
                sensitive::private_id("<household>")
            ));
        }
        _ => {}
    }
    Ok(Some(kind))
}

/// The string values a root field holds (several when writes were concurrent).
fn strings(doc: &Automerge, key: &str) -> Result<Vec<String>, String> {
    let values = doc
        .get_all(ROOT, key)
        .map_err(|e| format!("cannot read `{key}`: {e}"))?;
    values
        .into_iter()
        .map(|(value, _)| match value {
            AmValue::Scalar(s) => s
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("`{key}` must be text")),
            AmValue::Object(_) => Err(format!("`{key}` must be text")),
        })
        .collect()
}

/// A document as it was before received changes were applied to it.
pub struct Before {
    /// Its fields, when it was a record already.
    fields: Option<Map<String, Value>>,
    heads: Vec<ChangeHash>,
    /// It held changes waiting for their dependencies, which the received ones may release.
    queued: bool,
}

impl Before {
    /// `existed`: the document is a stored record (not new, not waiting for its first change).
    pub fn capture(doc: &Automerge, existed: bool) -> Before {
        Before {
            fields: existed.then(|| doc::read_root(doc)),
            heads: doc.get_heads(),
            queued: !doc.get_missing_deps(&[]).is_empty(),
        }
    }
}

/// What the checks need of one received change.
#[derive(Debug, Clone)]
pub struct ChangeMeta {
    pub hash: ChangeHash,
    pub deps: Vec<ChangeHash>,
    /// The change's message: its author's username, as devices and the dashboard sign it.
    pub author: Option<String>,
    /// The root fields the change writes (puts or deletes), when it is known; `None` for a
    /// record's first change, which writes them all.
    pub root_keys: Option<Vec<String>>,
}

impl ChangeMeta {
    pub fn of(change: &Change) -> ChangeMeta {
        let root_keys = (!change.deps().is_empty()).then(|| {
            let mut keys: Vec<String> = change
                .decode()
                .operations
                .into_iter()
                .filter(|op| op.obj == automerge::legacy::ObjectId::Root)
                .filter_map(|op| match op.key {
                    automerge::legacy::Key::Map(key) => Some(key.to_string()),
                    automerge::legacy::Key::Seq(_) => None,
                })
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        });
        ChangeMeta {
            hash: change.hash(),
            deps: change.deps().to_vec(),
            author: change.message().map(str::to_string),
            root_keys,
        }
    }

    /// Whether the change may have written the root field `key`. A field it has no operation on
    /// holds at the change what it held at the change's dependencies, so nothing of it was
    /// written there.
    fn may_write(&self, key: &str) -> bool {
        self.root_keys
            .as_ref()
            .is_none_or(|keys| keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok())
    }
}

/// Who sent the changes, as the receiver knows it.
pub struct Sender<'a> {
    /// The uploader's username when the changes are theirs (an upload): author fields must name
    /// the change's author. `None` for a repair, which hands back others' changes too.
    pub username: Option<&'a str>,
    /// The receiver's clock, which event times are held to (see `validate::FUTURE_SLACK`).
    pub now: DateTime<Utc>,
}

/// What [`content`] found in a document it accepted.
pub struct Content {
    /// The households the changes name, which must exist (only the receiver's store can tell).
    pub households: Vec<String>,
    /// The record's root fields as [`doc::read_root`] shows them (before validation filled in
    /// anything the document does not hold): what the receiver's index reads, without reading
    /// the document again.
    pub fields: Map<String, Value>,
}

/// Checks the content of a document after received changes were applied to it.
pub fn content(
    doc: &Automerge,
    kind: Kind,
    before: &Before,
    received: &[ChangeMeta],
    sender: &Sender<'_>,
) -> Result<Content, String> {
    let root = doc::read_root(doc);
    let mut fields = root.clone();
    let ctx = Held {
        now: sender.now,
        author: sender.username,
    };
    validate::validate_merged(kind, &mut fields, before.fields.as_ref(), &ctx)
        .map_err(|e| e.to_string())?;
    // Usually exactly the received changes were applied. When some wait for dependencies, or
    // ones received earlier were waiting and now apply, ask the document which did.
    let applied: Vec<ChangeMeta> = if before.queued || !doc.get_missing_deps(&[]).is_empty() {
        doc.get_changes(&before.heads)
            .iter()
            .map(ChangeMeta::of)
            .collect()
    } else {
        received.to_vec()
    };
    let mut households = Vec::new();
    for change in &applied {
        households.extend(check_change(doc, kind, change, sender)?);
    }
    Ok(Content {
        households,
        fields: root,
    })
}

/// Root fields whose writes are checked change by change: the authors, and what the kind
/// watches (its status, the household it names, its times).
fn watched(kind: Kind) -> impl Iterator<Item = &'static str> {
    ["created_by", "updated_by"]
        .into_iter()
        .chain(kind.spec().watched.iter().copied())
}

/// Checks what one change wrote to the watched fields, against the record as its author saw it
/// (the document at the change's dependencies) and made it (at the change itself).
fn check_change(
    doc: &Automerge,
    kind: Kind,
    change: &ChangeMeta,
    sender: &Sender<'_>,
) -> Result<Vec<String>, String> {
    let read = |key: &str, heads: &[ChangeHash]| -> Result<Vec<(Value, ObjId)>, String> {
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let values = doc
            .get_all_at(ROOT, key, heads)
            .map_err(|e| format!("cannot read `{key}`: {e}"))?;
        Ok(values.into_iter().map(|(v, id)| (scalar(&v), id)).collect())
    };
    let author = sender
        .username
        .map(|uploader| change.author.as_deref().unwrap_or(uploader));
    let mut households = Vec::new();
    let mut order = false;
    for key in watched(kind) {
        if !change.may_write(key) {
            continue;
        }
        let made = read(key, &[change.hash])?;
        let seen = read(key, &change.deps)?;
        let written: Vec<&Value> = made
            .iter()
            .filter(|(_, id)| !seen.iter().any(|(_, s)| s == id))
            .map(|(v, _)| v)
            .collect();
        if written.is_empty() {
            continue;
        }
        match key {
            "created_by" | "updated_by" => {
                if key == "created_by" && !change.deps.is_empty() {
                    return Err("created_by is set when the record is created, not later".into());
                }
                let Some(author) = author else { continue };
                if let Some(other) = written.iter().find(|v| v.as_str() != Some(author)) {
                    return Err(format!(
                        "{key} says {other}, but the change is {author}'s: author fields name \
                         who wrote the change"
                    ));
                }
            }
            "status" => {
                let mut seen: Vec<Value> = seen.into_iter().map(|(v, _)| v).collect();
                // The relay holds the report, so it has been received whatever the device last
                // called it (the office moves reports on from there too).
                if kind == Kind::Report
                    && seen
                        .iter()
                        .any(|s| matches!(s.as_str(), Some("draft" | "queued")))
                {
                    seen.push("received".into());
                }
                for to in written {
                    validate::check_move(kind, &seen, to).map_err(|e| e.to_string())?;
                }
            }
            "household_id" => {
                households.extend(written.iter().filter_map(|v| v.as_str()).map(String::from));
            }
            _ => order = true,
        }
    }
    if order {
        // The record's times as this change left them: what its author's device checked.
        let mut times = Map::new();
        for key in [
            "started_at",
            "ended_at",
            "occurred_at",
            "discovered_at",
            "deadline",
        ] {
            if let Some((value, _)) = read(key, &[change.hash])?.pop() {
                times.insert(key.to_string(), value);
            }
        }
        validate::check_order(kind, &times).map_err(|e| e.to_string())?;
    }
    Ok(households)
}

/// A root value as JSON, objects as null (the watched fields are all scalars; the shape check
/// refuses anything else).
fn scalar(value: &AmValue<'_>) -> Value {
    match value {
        AmValue::Scalar(s) => match s.as_ref() {
            automerge::ScalarValue::Str(s) => Value::String(s.to_string()),
            automerge::ScalarValue::Int(i) => Value::from(*i),
            automerge::ScalarValue::Uint(u) => Value::from(*u),
            automerge::ScalarValue::F64(f) => Value::from(*f),
            automerge::ScalarValue::Boolean(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        AmValue::Object(_) => Value::Null,
    }
}

/// What validation knows at the relay: its clock and the uploader. Households are looked up by
/// the relay itself, in its store (see [`content`]).
struct Held<'a> {
    now: DateTime<Utc>,
    author: Option<&'a str>,
}

impl ValidationContext for Held<'_> {
    fn household_exists(&self, _id: &str) -> bool {
        true
    }

    fn now(&self) -> Option<DateTime<Utc>> {
        Some(self.now)
    }

    fn author(&self) -> Option<&str> {
        self.author
    }
}
