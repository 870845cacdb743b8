//! A record's history from its Automerge changes: for each change, who wrote it (the change
//! message), the device clock's time, which fields it changed from what to what, and whether it
//! was concurrent with another person's change (a parallel edit).

use std::collections::{HashMap, HashSet};

use automerge::{Automerge, ChangeHash};
use gridsync_core::doc;
use gridsync_core::record::TOUCH_FIELDS;
use serde_json::{Map, Value};

/// Changes shown at most; older ones are summarised by the first shown change's "before".
const MAX_CHANGES: usize = 300;

#[derive(Debug, Clone)]
pub struct Entry {
    pub hash: ChangeHash,
    /// The change message: the author's username.
    pub author: Option<String>,
    /// The writing device's clock (seconds since the epoch); shown, never trusted for order.
    pub time: i64,
    pub fields: Vec<FieldChange>,
    /// Written without seeing another author's change, which was written without seeing it.
    pub concurrent: bool,
    /// The record's first change.
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The history of a document, oldest first.
pub fn history(doc: &Automerge) -> Vec<Entry> {
    let changes = doc.get_changes(&[]);
    let skip = changes.len().saturating_sub(MAX_CHANGES);
    let mut states: HashMap<ChangeHash, Map<String, Value>> = HashMap::new();
    let mut ancestors: HashMap<ChangeHash, HashSet<ChangeHash>> = HashMap::new();
    let mut actors: HashMap<ChangeHash, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let hash = change.hash();
        let deps = change.deps().to_vec();
        let mut anc: HashSet<ChangeHash> = HashSet::new();
        for d in &deps {
            anc.insert(*d);
            if let Some(a) = ancestors.get(d) {
                anc.extend(a.iter().copied());
            }
        }
        ancestors.insert(hash, anc);
        actors.insert(hash, change.actor_id().to_hex_string());
        if i < skip {
            continue;
        }
        let before = match deps.as_slice() {
            [] => Map::new(),
            [one] if states.contains_key(one) => states[one].clone(),
            many => state_at(doc, many),
        };
        let after = state_at(doc, &[hash]);
        let mut fields = Vec::new();
        diff(&before, &after, "", &mut fields);
        states.insert(hash, after);
        out.push(Entry {
            hash,
            author: change.message().map(str::to_string),
            time: change.timestamp(),
            fields,
            concurrent: false,
            created: deps.is_empty(),
        });
    }
    for entry in &mut out {
        let mine = &ancestors[&entry.hash];
        let actor = &actors[&entry.hash];
        entry.concurrent = ancestors.iter().any(|(other, theirs)| {
            other != &entry.hash
                && &actors[other] != actor
                && !mine.contains(other)
                && !theirs.contains(&entry.hash)
        });
    }
    out
}

fn state_at(doc: &Automerge, heads: &[ChangeHash]) -> Map<String, Value> {
    doc.fork_at(heads)
        .map(|d| doc::read_root(&d))
        .unwrap_or_default()
}

/// The fields that differ, one level into nested maps; lists that only grew show what was added.
fn diff(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<FieldChange>,
) {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if prefix.is_empty() && TOUCH_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (before.get(key), after.get(key)) {
            (a, b) if a == b => {}
            (Some(Value::Object(a)), Some(Value::Object(b))) if prefix.is_empty() => {
                diff(a, b, &path, out)
            }
            (Some(Value::Array(a)), Some(Value::Array(b)))
                if b.len() > a.len() && b[..a.len()] == a[..] =>
            {
                out.push(FieldChange {
                    path,
                    before: None,
                    after: Some(Value::Array(b[a.len()..].to_vec())),
                });
            }
            (a, b) => out.push(FieldChange {
                path,
                before: a.cloned(),
                after: b.cloned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::{ActorId, ROOT};

    fn write(doc: &mut Automerge, key: &str, value: &str, author: &str) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit_with(CommitOptions::default().with_message(author).with_time(100));
    }

    #[test]
    fn test_history_names_authors_fields_and_parallel_edits() {
        let mut a = Automerge::new().with_actor(ActorId::from(b"aaaaaaaaaaaaaaaa".as_slice()));
        write(&mut a, "status", "open", "wang");
        let mut b = a
            .fork()
            .with_actor(ActorId::from(b"bbbbbbbbbbbbbbbb".as_slice()));
        write(&mut a, "plan", "x", "wang");
        write(&mut b, "status", "assessing", "li");
        a.merge(&mut b).unwrap();
        let h = history(&a);
        assert_eq!(h.len(), 3);
        assert!(h[0].created && !h[0].concurrent);
        let li = h
            .iter()
            .find(|e| e.author.as_deref() == Some("li"))
            .unwrap();
        assert!(li.concurrent);
        assert_eq!(
            li.fields,
            vec![FieldChange {
                path: "status".into(),
                before: Some("open".into()),
                after: Some("assessing".into())
            }]
        );
        assert_eq!(li.time, 100);
    }
}
