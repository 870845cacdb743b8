//! The nesting limit: how deeply a record's maps, lists and texts may lie inside one another, and
//! the check that refuses a document (or a write) past it before anything reads it.

use automerge::{Automerge, ObjId, ObjType, Prop, ROOT, ReadDoc, Value, ValueRef};
use serde_json::{Map, Value as Json};

/// How deeply maps, lists and texts may nest inside one another below a record's root: a field
/// holding a map is one level, a list in that map two. Records use three or four (a patrol's
/// incidents hold maps that hold a GPS map). A document nesting deeper is refused before
/// anything reads it ([`check_depth`]): received, it is not stored; stored before this limit
/// existed, it cannot be opened. The readers below never recurse and never build JSON deeper
/// than this, so neither they nor whatever walks their JSON (comparing, dropping, rendering) can
/// run out of stack, however deep a document an attacker wrote.
pub const MAX_DEPTH: usize = 32;

/// A document or a write whose values nest deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "field `{field}` nests maps, lists or texts more than {MAX_DEPTH} levels deep, \
     the most a record may hold"
)]
pub struct TooDeep {
    /// The root field under which the values nest too deep.
    pub field: String,
}

/// What [`check_depth`] learnt on its way through a document that nests within the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Whether any field holds concurrent values that differ: what [`has_conflicts`] answers,
    /// found in the same pass.
    pub has_conflicts: bool,
}

/// Refuses a document whose maps, lists or texts nest more than [`MAX_DEPTH`] levels below the
/// root, counting every concurrent value of a property and any block inside a text. The relay and
/// the device run it on every document they apply changes, a snapshot or a repair step to, and
/// on every document they load, before anything else reads it. The same pass notes the
/// properties Automerge marks as holding several values, and once the whole document is known to
/// fit, reads those alone to tell whether they differ ([`Shape::has_conflicts`]): walking a
/// record's maps and lists costs as much as applying a received change to it, so it is done once.
///
/// Without recursion: an explicit stack of objects still to look at, none deeper than the limit,
/// so a hostile document costs at most one pass over its maps and lists. Texts are not walked
/// character by character: only one that shows a block (U+FFFC) is scanned for it.
pub fn check_depth(doc: &Automerge) -> Result<Shape, TooDeep> {
    let walked = walk(doc, Limit::Refuse)?;
    Ok(Shape {
        has_conflicts: walked.differ(doc),
    })
}

/// Whether any field holds concurrent values (what the query index's `has_conflicts` keeps).
///
/// One pass over the document's maps and lists (without recursion, down to [`MAX_DEPTH`]), in
/// which Automerge marks each property that holds several values; only those are read, to tell
/// concurrent values that differ (a conflict) from ones that agree (not one). Texts are not
/// walked: their characters never conflict. (Automerge's own `doc.iter()` walked them, and
/// reads a block inside a text recursively.) Where the document was just checked,
/// [`Shape::has_conflicts`] has the answer already.
pub fn has_conflicts(doc: &Automerge) -> bool {
    match walk(doc, Limit::Stop) {
        Ok(walked) => walked.differ(doc),
        Err(_) => false,
    }
}

/// What to do with an object nested past [`MAX_DEPTH`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// Refuse the document ([`check_depth`]); blocks inside texts are looked for and counted.
    Refuse,
    /// Go no deeper ([`has_conflicts`]); texts are not looked into.
    Stop,
}

/// The properties found holding several values: (object, property, the depth of its values).
struct Walked {
    concurrent: Vec<(ObjId, Prop, usize)>,
}

impl Walked {
    /// Whether any of the concurrent properties holds values that differ.
    fn differ(&self, doc: &Automerge) -> bool {
        self.concurrent
            .iter()
            .any(|(obj, prop, depth)| super::values_differ(doc, obj, prop.clone(), *depth))
    }
}

/// One pass over the document's objects, noting the concurrent properties of the maps and lists a
/// reader is shown (as [`super::conflicts`] lists them: not inside a value that lost to a
/// concurrent one, not inside a text, and not the root's touch fields, which every write sets).
fn walk(doc: &Automerge, limit: Limit) -> Result<Walked, TooDeep> {
    let mut fields: Vec<String> = Vec::new();
    let mut concurrent = Vec::new();
    // (object, its type, its depth, the root field it lies under as an index into `fields`,
    // whether it is hidden from readers: inside a text or a value that lost)
    let mut stack: Vec<(ObjId, ObjType, usize, usize, bool)> =
        vec![(ROOT, ObjType::Map, 0, 0, false)];
    let mut too_deep = None;
    while let Some((obj, ty, depth, field, hidden)) = stack.pop() {
        if ty == ObjType::Text && limit == Limit::Stop {
            continue;
        }
        let mut noted = |prop: Prop| {
            let touch = matches!(&prop, Prop::Map(key) if depth == 0
                && crate::record::TOUCH_FIELDS.contains(&key.as_str()));
            if !hidden && !touch {
                concurrent.push((obj.clone(), prop, depth + 1));
            }
        };
        let in_text = ty == ObjType::Text;
        each_child_object(doc, &obj, ty, &mut noted, |child, child_ty, key, shown| {
            let field = if depth == 0 {
                fields.push(key.to_string());
                fields.len() - 1
            } else {
                field
            };
            if depth >= MAX_DEPTH {
                if limit == Limit::Refuse {
                    too_deep.get_or_insert(field);
                    return false;
                }
                return true;
            }
            stack.push((
                child,
                child_ty,
                depth + 1,
                field,
                hidden || in_text || !shown,
            ));
            true
        });
        if let Some(field) = too_deep {
            let field = fields.get(field).cloned().unwrap_or_default();
            return Err(TooDeep { field });
        }
    }
    Ok(Walked { concurrent })
}

/// [`check_depth`] for fields about to be written, counted the same way (a field holding an
/// object or an array is one level).
pub fn check_json_depth(fields: &Map<String, Json>) -> Result<(), TooDeep> {
    for (field, value) in fields {
        let mut stack = vec![(value, 1)];
        while let Some((value, depth)) = stack.pop() {
            let inside: Vec<&Json> = match value {
                Json::Object(map) => map.values().collect(),
                Json::Array(items) => items.iter().collect(),
                _ => continue,
            };
            if depth > MAX_DEPTH {
                return Err(TooDeep {
                    field: field.clone(),
                });
            }
            stack.extend(inside.into_iter().map(|v| (v, depth + 1)));
        }
    }
    Ok(())
}

/// Calls `f` with every object directly inside `obj` (each concurrent value of a property, each
/// block of a text), its type, the map key it is under ("" in a list or text) and whether it is
/// the value a reader is shown (false for one that lost to a concurrent value), until `f` says
/// stop; and `concurrent` with each property of a map or list that holds several values.
fn each_child_object(
    doc: &Automerge,
    obj: &ObjId,
    ty: ObjType,
    concurrent: &mut dyn FnMut(Prop),
    mut f: impl FnMut(ObjId, ObjType, &str, bool) -> bool,
) {
    let all_of = |f: &mut dyn FnMut(ObjId, ObjType, &str, bool) -> bool, prop: Prop, key: &str| {
        let all = doc.get_all(obj, prop).unwrap_or_default();
        // In op order: the value `get` shows is the last one.
        let shown = all.len().saturating_sub(1);
        for (i, (value, id)) in all.into_iter().enumerate() {
            if let Value::Object(t) = value
                && !f(id, t, key, i == shown)
            {
                return false;
            }
        }
        true
    };
    match ty {
        ObjType::Map | ObjType::Table => {
            for item in doc.map_range(obj, ..) {
                let go_on = match item.value {
                    _ if item.conflict => {
                        concurrent(Prop::Map(item.key.to_string()));
                        all_of(&mut f, Prop::Map(item.key.to_string()), &item.key)
                    }
                    ValueRef::Object(t) => f(item.id(), t, &item.key, true),
                    ValueRef::Scalar(_) => true,
                };
                if !go_on {
                    return;
                }
            }
        }
        ObjType::List => {
            for item in doc.list_range(obj, ..) {
                let go_on = match item.value {
                    _ if item.conflict => {
                        concurrent(Prop::Seq(item.index));
                        all_of(&mut f, Prop::Seq(item.index), "")
                    }
                    ValueRef::Object(t) => f(item.id(), t, "", true),
                    ValueRef::Scalar(_) => true,
                };
                if !go_on {
                    return;
                }
            }
        }
        ObjType::Text => {
            // Records keep only characters in a text, but Automerge can hold blocks (maps) there
            // too, shown as U+FFFC, and its own iterators (`iter`, `spans`) read them
            // recursively. Reading the text is cheap; only one that shows a block is scanned.
            if !doc.text(obj).is_ok_and(|t| t.contains('\u{fffc}')) {
                return;
            }
            for item in doc.list_range(obj, ..) {
                if let ValueRef::Object(t) = item.value
                    && !f(item.id(), t, "", true)
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{conflicts, guarded, has_conflicts, read_fields, read_root, save_snapshot};
    use automerge::ActorId;
    use automerge::transaction::{Transactable, Transaction};
    use serde_json::json;

    fn obj(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    /// A record whose field `x` holds `levels` objects nested inside one another: maps, every
    /// third a list, the innermost a text.
    fn deep(levels: usize) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", "case").unwrap();
        tx.put(ROOT, "status", "open").unwrap();
        let mut obj = ROOT;
        for level in 1..=levels {
            let ty = match level {
                l if l == levels => ObjType::Text,
                l if l % 3 == 0 => ObjType::List,
                _ => ObjType::Map,
            };
            let parent_is_list = level > 1 && (level - 1) % 3 == 0;
            obj = match (level, parent_is_list) {
                (1, _) => tx.put_object(&obj, "x", ty).unwrap(),
                (_, true) => tx.insert_object(&obj, 0, ty).unwrap(),
                _ => tx.put_object(&obj, "a", ty).unwrap(),
            };
        }
        tx.splice_text(&obj, 0, 0, "底").unwrap();
        tx.commit();
        doc
    }

    /// How deeply arrays and objects nest in a JSON value (a scalar: 0), without recursion.
    fn json_depth(value: &Json) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(value, 0)];
        while let Some((v, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            match v {
                Json::Object(m) => stack.extend(m.values().map(|v| (v, depth + 1))),
                Json::Array(a) => stack.extend(a.iter().map(|v| (v, depth + 1))),
                _ => {}
            }
        }
        deepest
    }

    /// Runs `f` on a thread with a 256 KiB stack: code that recursed once per level of a deep
    /// document would overflow it (and abort the test binary) long before 2,000 levels.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn test_depth_limit_allows_32_levels_and_refuses_33() {
        assert_eq!(
            check_depth(&deep(MAX_DEPTH)),
            Ok(Shape {
                has_conflicts: false
            })
        );
        assert_eq!(
            check_depth(&deep(MAX_DEPTH + 1)),
            Err(TooDeep { field: "x".into() })
        );
        let err = check_depth(&deep(300)).unwrap_err().to_string();
        assert!(err.contains("`x`") && err.contains("32"), "{err}");
        // The same count for fields about to be written.
        // The innermost text reads as a string.
        let json = Json::Object(read_root(&deep(MAX_DEPTH)));
        assert_eq!(json_depth(&json), MAX_DEPTH);
        assert_eq!(check_json_depth(json.as_object().unwrap()), Ok(()));
        let mut deeper = json!("leaf");
        for _ in 0..=MAX_DEPTH {
            deeper = json!([deeper]);
        }
        let fields = obj(json!({ "ok": { "a": 1 }, "y": deeper }));
        assert_eq!(
            check_json_depth(&fields),
            Err(TooDeep { field: "y".into() })
        );
        // Real records nest a few levels.
        let household = obj(json!({"residents": [{"name": "张三", "tags": ["独居"]}]}));
        assert_eq!(check_json_depth(&household), Ok(()));
    }

    #[test]
    fn test_depth_limit_counts_concurrent_values_and_blocks_in_texts() {
        // A shallow value wins at `x`; the deep one written concurrently is still there (and
        // shown by the conflict listing), so it counts.
        let mut a = Automerge::new().with_actor(ActorId::from(b"aaaaaaaaaaaaaaaa".as_slice()));
        let mut tx = a.transaction();
        tx.put(ROOT, "kind", "case").unwrap();
        tx.commit();
        let mut b = a
            .fork()
            .with_actor(ActorId::from(b"zzzzzzzzzzzzzzzz".as_slice()));
        let mut tx = a.transaction();
        let mut inner = tx.put_object(ROOT, "x", ObjType::Map).unwrap();
        for _ in 0..40 {
            inner = tx.put_object(&inner, "a", ObjType::Map).unwrap();
        }
        tx.commit();
        let mut tx = b.transaction();
        tx.put_object(ROOT, "x", ObjType::Map).unwrap();
        tx.commit();
        a.merge(&mut b).unwrap();
        assert_eq!(a.get_all(ROOT, "x").unwrap().len(), 2);
        assert_eq!(check_depth(&a), Err(TooDeep { field: "x".into() }));

        // Maps nested inside a block of a text (Automerge's own iterators read those
        // recursively).
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
        tx.splice_text(&text, 0, 0, "独居老人").unwrap();
        let mut inner = tx.split_block(&text, 2).unwrap();
        for _ in 0..40 {
            inner = tx.put_object(&inner, "a", ObjType::Map).unwrap();
        }
        tx.commit();
        assert_eq!(
            check_depth(&doc),
            Err(TooDeep {
                field: "notes".into()
            })
        );
        // A plain text, and a character that only looks like a block, are fine.
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
        tx.splice_text(&text, 0, 0, "\u{fffc} 独居").unwrap();
        tx.commit();
        assert!(check_depth(&doc).is_ok());
    }

    fn actor(c: u8) -> ActorId {
        ActorId::from([c; 16].as_slice())
    }

    /// A document in which two actors wrote "甲" and "乙" concurrently at `who` of the object
    /// `object` made, whichever that is.
    fn concurrent_who(object: impl Fn(&mut Transaction<'_>) -> ObjId) -> Automerge {
        let mut a = Automerge::new().with_actor(actor(b'a'));
        let mut tx = a.transaction();
        let obj = object(&mut tx);
        tx.commit();
        let mut b = a.fork().with_actor(actor(b'z'));
        for (d, value) in [(&mut a, "甲"), (&mut b, "乙")] {
            let mut tx = d.transaction();
            tx.put(&obj, "who", value).unwrap();
            tx.commit();
        }
        a.merge(&mut b).unwrap();
        assert_eq!(a.get_all(&obj, "who").unwrap().len(), 2);
        a
    }

    #[test]
    fn test_the_depth_checks_walk_finds_conflicts_where_has_conflicts_does() {
        // Concurrent values in a map inside a block of a text: not a record's conflict (a
        // record's texts hold characters only), for either.
        let a = concurrent_who(|tx| {
            let text = tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
            tx.splice_text(&text, 0, 0, "独居").unwrap();
            tx.split_block(&text, 1).unwrap()
        });
        assert!(!has_conflicts(&a));
        assert_eq!(check_depth(&a).map(|s| s.has_conflicts), Ok(false));
        // The same concurrent values in a map of a list: a conflict, for both.
        let a = concurrent_who(|tx| {
            let list = tx.put_object(ROOT, "residents", ObjType::List).unwrap();
            tx.insert_object(&list, 0, ObjType::Map).unwrap()
        });
        assert!(has_conflicts(&a));
        assert_eq!(check_depth(&a).map(|s| s.has_conflicts), Ok(true));

        // Two maps written concurrently at `x` that read the same: no conflict, even when the
        // one that lost holds concurrent values of its own (nobody is shown them, and the
        // review page's listing, `conflicts`, has nothing to show).
        let mut a = Automerge::new().with_actor(actor(b'a'));
        let mut b = a.fork().with_actor(actor(b'b'));
        for d in [&mut a, &mut b] {
            let mut tx = d.transaction();
            let x = tx.put_object(ROOT, "x", ObjType::Map).unwrap();
            tx.put(&x, "n", 1).unwrap();
            tx.commit();
        }
        a.merge(&mut b).unwrap();
        let lost = a.get_all(ROOT, "x").unwrap()[0].1.clone();
        let shown = a.get(ROOT, "x").unwrap().unwrap().1;
        assert_ne!(shown, lost);
        // `c`'s writes win (the greater actor): both maps read {"n": 7}.
        let mut c = a.fork().with_actor(actor(b'z'));
        let mut d = a.fork().with_actor(actor(b'c'));
        let mut tx = c.transaction();
        tx.put(&lost, "n", 7).unwrap();
        tx.put(&shown, "n", 7).unwrap();
        tx.commit();
        let mut tx = d.transaction();
        tx.put(&lost, "n", 5).unwrap();
        tx.commit();
        c.merge(&mut d).unwrap();
        assert_eq!(c.get_all(&lost, "n").unwrap().len(), 2);
        assert!(conflicts(&c).is_empty());
        assert!(!has_conflicts(&c));
        assert_eq!(check_depth(&c).map(|s| s.has_conflicts), Ok(false));
    }

    #[test]
    fn test_readers_of_300_and_2000_levels_do_not_recurse() {
        on_small_stack(|| {
            for levels in [300, 2_000] {
                let mut doc = deep(levels);
                assert!(check_depth(&doc).is_err());
                // Every reader answers, and never with JSON deeper than the limit.
                let root = read_root(&doc);
                assert_eq!(root["status"], "open");
                assert_eq!(json_depth(&Json::Object(root)), MAX_DEPTH + 1);
                let fields = read_fields(&doc, ["x", "kind"]);
                assert_eq!(json_depth(&Json::Object(fields)), MAX_DEPTH + 1);
                assert!(!has_conflicts(&doc));
                assert!(conflicts(&doc).is_empty());
                // Concurrent values deep down: the conflict is found where the readers reach.
                let mut other = doc.fork();
                for (d, value) in [(&mut doc, "甲"), (&mut other, "乙")] {
                    let mut obj = d.get(ROOT, "x").unwrap().unwrap().1;
                    for _ in 0..10 {
                        obj = match d.object_type(&obj).unwrap() {
                            ObjType::List => d.get(&obj, 0).unwrap().unwrap().1,
                            _ => d.get(&obj, "a").unwrap().unwrap().1,
                        };
                    }
                    let mut tx = d.transaction();
                    tx.put(&obj, "who", value).unwrap();
                    tx.commit();
                }
                doc.merge(&mut other).unwrap();
                assert!(has_conflicts(&doc));
                let found = conflicts(&doc);
                assert_eq!(found.len(), 1, "{levels}");
                assert!(found[0].field.ends_with(".who"), "{}", found[0].field);
            }
            // A deep value inside a block of a text: no reader follows it.
            let mut doc = Automerge::new();
            let mut tx = doc.transaction();
            let text = tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
            tx.splice_text(&text, 0, 0, "独居").unwrap();
            let mut inner = tx.split_block(&text, 1).unwrap();
            for _ in 0..2_000 {
                inner = tx.put_object(&inner, "a", ObjType::Map).unwrap();
            }
            tx.commit();
            assert!(check_depth(&doc).is_err());
            assert!(!has_conflicts(&doc));
            assert!(conflicts(&doc).is_empty());
            assert!(read_root(&doc)["notes"].is_string());
        });
    }

    #[test]
    fn test_what_guarded_runs_on_deep_documents_does_not_recurse() {
        // Applying, loading, forking, saving and the sync protocol, as the relay and devices run
        // them on received bytes (inside `guarded`), on a document far past the limit.
        let doc = deep(20_000);
        on_small_stack(move || {
            use automerge::sync::{State, SyncDoc};
            let change = doc.get_changes(&[]).pop().unwrap().clone();
            let mut applied = Automerge::new();
            guarded(|| applied.apply_changes([change])).unwrap();
            let saved = save_snapshot(&applied);
            let loaded = guarded(|| Automerge::load(&saved)).unwrap();
            let heads = loaded.get_heads();
            let forked = guarded(|| loaded.fork_at(&heads)).unwrap();
            let (mut ours, mut theirs) = (State::new(), State::new());
            let mut synced = Automerge::new();
            for _ in 0..8 {
                if let Some(m) = forked.generate_sync_message(&mut ours) {
                    guarded(|| synced.receive_sync_message(&mut theirs, m)).unwrap();
                }
                if let Some(m) = synced.generate_sync_message(&mut theirs) {
                    let mut f = forked.clone();
                    guarded(|| f.receive_sync_message(&mut ours, m)).unwrap();
                }
            }
            assert_eq!(synced.get_heads(), heads);
            assert!(check_depth(&synced).is_err());
        });
    }
}
