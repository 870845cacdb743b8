//! A record's history from its Automerge changes: for each change, who wrote it (the change
//! message), the device clock's time, which fields it changed from what to what, and whether it
//! was concurrent with another person's change (a parallel edit); and the texts two people
//! edited at once, which Automerge merged into one.

use std::collections::{HashMap, HashSet};

use automerge::{Automerge, ChangeHash};
use gridsync_core::doc;
use gridsync_core::record::schema::FieldType;
use gridsync_core::record::{Kind, TOUCH_FIELDS};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::auth::Staff;
use super::i18n::Lang;
use super::values::{self, Names};
use super::{Dashboard, layout};
use crate::storage::ChangeSource;

/// Every change's ancestors.
type Ancestors = HashMap<ChangeHash, HashSet<ChangeHash>>;

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
    read(doc).entries
}

/// A document's history, with what each change knew of the others.
pub struct History {
    /// Oldest first.
    pub entries: Vec<Entry>,
    ancestors: Ancestors,
}

/// Reads a document's history once, for its entries and its text conflicts.
pub fn read(doc: &Automerge) -> History {
    let (entries, ancestors) = walk(doc);
    History { entries, ancestors }
}

/// A text field two people edited without seeing each other's edit, so that Automerge merged
/// both into one text (two notes run together), and nobody has rewritten or reviewed since.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConflict {
    pub field: String,
    /// The text as each of them left it, oldest first.
    pub versions: Vec<TextVersion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TextVersion {
    pub author: Option<String>,
    /// The writing device's clock, seconds since the epoch.
    pub time: i64,
    pub text: String,
}

/// The text fields of a record whose last edits were concurrent: each edit's text is a version.
/// A text is settled once a change made after all of them edits it again (someone rewrote it
/// having seen both), or once office staff (`is_staff`, by username) reviewed the record after
/// them.
pub fn text_conflicts(
    history: &History,
    kind: Kind,
    is_staff: impl Fn(&str) -> bool,
) -> Vec<TextConflict> {
    let (entries, ancestors) = (&history.entries, &history.ancestors);
    let mut out = Vec::new();
    for field in kind.text_fields() {
        let edits: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.fields.iter().any(|f| f.path == field))
            .collect();
        // The edits no later edit of the text knew of.
        let tips: Vec<&Entry> = edits
            .iter()
            .copied()
            .filter(|e| !edits.iter().any(|o| ancestors[&o.hash].contains(&e.hash)))
            .collect();
        if tips.len() < 2 {
            continue;
        }
        let reviewed = entries.iter().any(|c| {
            c.author.as_deref().is_some_and(&is_staff)
                && tips.iter().all(|t| ancestors[&c.hash].contains(&t.hash))
        });
        if reviewed {
            continue;
        }
        let versions = tips
            .iter()
            .map(|t| TextVersion {
                author: t.author.clone(),
                time: t.time,
                text: t
                    .fields
                    .iter()
                    .find(|f| f.path == field)
                    .and_then(|f| f.after.as_ref())
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        out.push(TextConflict {
            field: field.to_string(),
            versions,
        });
    }
    out
}

fn walk(doc: &Automerge) -> (Vec<Entry>, Ancestors) {
    let changes = doc.get_changes(&[]);
    let skip = changes.len().saturating_sub(MAX_CHANGES);
    let mut states: HashMap<ChangeHash, Map<String, Value>> = HashMap::new();
    let mut ancestors: Ancestors = HashMap::new();
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
    (out, ancestors)
}

/// The history as a table, newest first: when (the device's clock, and when the relay received
/// it), who, on which device, and what changed from what to what, each field by its label.
pub fn table(
    staff: &Staff,
    dash: &Dashboard,
    kind: Kind,
    entries: &[Entry],
    sources: &HashMap<String, ChangeSource>,
    names: &Names,
) -> Markup {
    let lang = staff.lang;
    html! {
        table class="history" id="history" {
            thead { tr {
                th { (lang.t("rec.device_time")) } th { (lang.t("received")) } th { (lang.t("rec.author")) }
                th { (lang.t("rec.device")) } th { (lang.t("rec.changed")) }
            } }
            tbody {
                @for e in entries.iter().rev() {
                    @let source = sources.get(&e.hash.to_string());
                    @let author = e.author.clone().unwrap_or_default();
                    tr class={ @if e.concurrent { "concurrent" } } data-author=(author) {
                        td { (dash.show_epoch(e.time)) @if e.concurrent { " " span class="tag warn" title=(lang.t("rec.concurrent_hint")) { (lang.t("rec.concurrent")) } } }
                        td { (source.map(|s| dash.show_time(&s.received_at)).unwrap_or_default()) }
                        td { @if author.is_empty() { (values::nothing(lang)) } @else { (values::person_link(names, &author)) } }
                        td { @match source {
                            Some(s) => span title=(s.device_id) { (names.devices.get(&s.device_id).cloned().unwrap_or_else(|| s.device_id.clone())) },
                            None => (values::nothing(lang)),
                        } }
                        td {
                            @if e.created { strong { (lang.t("rec.created")) } }
                            @else if e.fields.is_empty() { span class="muted" { (lang.t("rec.no_change")) } }
                            @else {
                                ul class="changes" {
                                    @for f in &e.fields {
                                        li {
                                            strong title=(f.path) { (values::path_label(lang, kind, &f.path)) } (lang.colon())
                                            @let shown = |v: &Value| masked(lang, dash, names, kind, &f.path, v);
                                            @let before = f.before.as_ref().filter(|b| !values::is_empty(b));
                                            @let after = f.after.as_ref().filter(|a| !values::is_empty(a));
                                            @match (before, after) {
                                                (Some(b), Some(a)) => { del { (shown(b)) } " → " ins { (shown(a)) } }
                                                (None, Some(a)) if a.is_array() => { (lang.t("rec.added")) " " ins { (shown(a)) } }
                                                (None, Some(a)) => ins { (shown(a)) },
                                                (Some(b), None) => { del { (shown(b)) } " → " (lang.t("rec.removed")) }
                                                (None, None) => (values::nothing(lang)),
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A value in the history: as it was written (a report's "draft" stays a draft), but readable.
fn masked(
    lang: Lang,
    dash: &Dashboard,
    names: &Names,
    kind: Kind,
    path: &str,
    v: &Value,
) -> Markup {
    let mut v = v.clone();
    layout::mask_sensitive(&mut v);
    let top = path.split(['.', '[']).next().unwrap_or_default();
    if top != path && !v.is_object() && !v.is_array() {
        // One part of an address or of a resident: its own words, not its parent's.
        if values::is_empty(&v) {
            return values::nothing(lang);
        }
        let part = kind.spec().field_at(path).map(|f| f.ty);
        return match (part, &v) {
            (Some(FieldType::Choice(set)), Value::String(s)) => {
                html! { (lang.label(set.group, s)) }
            }
            (_, Value::String(s)) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
                html! { (dash.show_time(s)) }
            }
            _ => html! { (values::value_label(lang, kind, path, &v)) },
        };
    }
    values::readable(lang, dash, names, kind, top, &v)
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
    use automerge::{ActorId, ROOT, ReadDoc};

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

    fn note(doc: &mut Automerge, text: &str, author: &str) {
        let notes = match doc.get(ROOT, "notes").unwrap() {
            Some((_, id)) => id,
            None => {
                let mut tx = doc.transaction();
                let id = tx
                    .put_object(ROOT, "notes", automerge::ObjType::Text)
                    .unwrap();
                tx.commit_with(CommitOptions::default().with_message(author).with_time(100));
                id
            }
        };
        let at = doc.text(&notes).unwrap().chars().count();
        let mut tx = doc.transaction();
        tx.splice_text(&notes, at, 0, text).unwrap();
        tx.commit_with(CommitOptions::default().with_message(author).with_time(200));
    }

    #[test]
    fn test_a_note_two_people_added_to_at_once_is_a_text_conflict_until_rewritten() {
        let mut a = Automerge::new().with_actor(ActorId::from(b"aaaaaaaaaaaaaaaa".as_slice()));
        write(&mut a, "status", "open", "wang");
        note(&mut a, "", "wang");
        let mut b = a
            .fork()
            .with_actor(ActorId::from(b"bbbbbbbbbbbbbbbb".as_slice()));
        note(&mut a, "申请人外出务工", "wang");
        note(&mut b, "已联系低保专干", "li");
        a.merge(&mut b).unwrap();
        let found = text_conflicts(&read(&a), Kind::Case, |_| false);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "notes");
        let mut texts: Vec<&str> = found[0].versions.iter().map(|v| v.text.as_str()).collect();
        texts.sort();
        assert_eq!(texts, ["已联系低保专干", "申请人外出务工"]);
        // Another field written after both does not settle the text ...
        write(&mut a, "plan", "x", "wang");
        assert_eq!(text_conflicts(&read(&a), Kind::Case, |_| false).len(), 1);
        // ... office staff reviewing it after both does ...
        assert!(text_conflicts(&read(&a), Kind::Case, |u| u == "wang").is_empty());
        // ... and so does a rewrite of the text by anyone who saw both.
        note(&mut a, "。", "wang");
        assert!(text_conflicts(&read(&a), Kind::Case, |_| false).is_empty());
    }
}
