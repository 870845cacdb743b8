//! Documents of any nesting, built from fuzz input, and what every one must survive: shared by
//! the `deep_nesting` fuzz target and the replay of its saved inputs
//! (client-core/tests/fuzz_regressions.rs).
//!
//! The input is a little program, one operation a byte (some take the next byte as argument),
//! run by two actors on one case record: the first builds, `6` hands over to a second actor on a
//! copy, a second `6` goes back to the first one, which goes on without seeing the second's
//! work. Their concurrent values of the same key are conflicts. Keys come from the operation
//! byte's high bits, so the same key is written again and concurrently.
//!
//! | byte % 8 | operation |
//! |---|---|
//! | 0 / 1 / 2 | open a map / list / text inside the innermost open object (in a text: a block) |
//! | 3 | close the innermost open object |
//! | 4 arg | write a scalar (in a text: a character) |
//! | 5 arg | open `arg + 1` maps, one inside the other |
//! | 6 | next actor |
//! | 7 arg | open `arg + 1` lists, one inside the other |

use std::sync::atomic::{AtomicU64, Ordering};

use automerge::transaction::{Transactable, Transaction};
use automerge::{ActorId, Automerge, ObjId, ObjType, ROOT, ReadDoc, ValueRef};
use gridsync_core::doc::{self, MAX_DEPTH};
use gridsync_core::protocol::{Cursor, DocChanges};
use gridsync_core::{Error, Replica};
use serde_json::Value as Json;

/// More objects than this make a run slow without finding more.
const MAX_OBJECTS: usize = 20_000;
const KEYS: [&str; 4] = ["x", "notes", "status", "a"];

/// The program's document (both actors' work merged) and its changes, in causal order.
pub fn build(doc_id: &str, data: &[u8]) -> (Automerge, Vec<Vec<u8>>) {
    let mut first = Automerge::new().with_actor(ActorId::from(b"nesting-fuzz-one".as_slice()));
    let mut second = None;
    let mut ops = data.iter().copied();
    let mut objects = 0;
    for phase in 0..3 {
        let doc = match phase {
            1 => second.insert(
                first
                    .fork()
                    .with_actor(ActorId::from(b"nesting-fuzz-two".as_slice())),
            ),
            _ => &mut first,
        };
        let mut tx = doc.transaction();
        if phase == 0 {
            for (k, v) in [("id", doc_id), ("kind", "case"), ("grid_id", "g1")] {
                let _ = tx.put(ROOT, k, v);
            }
        }
        run(&mut tx, &mut ops, &mut objects);
        tx.commit();
    }
    if let Some(mut second) = second {
        let _ = first.merge(&mut second);
    }
    let changes = first
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    (first, changes)
}

/// Runs operations until the next `6` or the end of the input.
fn run(tx: &mut Transaction<'_>, ops: &mut impl Iterator<Item = u8>, objects: &mut usize) {
    let mut open: Vec<(ObjId, ObjType)> = vec![(ROOT, ObjType::Map)];
    while let Some(op) = ops.next() {
        let key = KEYS[usize::from(op >> 3) % KEYS.len()];
        let front = op & 0x80 != 0;
        let (times, ty) = match op % 8 {
            0 => (1, ObjType::Map),
            1 => (1, ObjType::List),
            2 => (1, ObjType::Text),
            3 => {
                if open.len() > 1 {
                    open.pop();
                }
                continue;
            }
            4 => {
                let arg = ops.next().unwrap_or(0);
                if let Some((obj, parent)) = open.last() {
                    let _ = match parent {
                        ObjType::Map | ObjType::Table => tx.put(obj, key, i64::from(arg)),
                        ObjType::List => tx.insert(obj, position(tx, obj, front), i64::from(arg)),
                        ObjType::Text => {
                            let at = position(tx, obj, front);
                            let c = char::from(b'a' + arg % 26).to_string();
                            tx.splice_text(obj, at, 0, &c).map(|_| ())
                        }
                    };
                }
                continue;
            }
            5 => (usize::from(ops.next().unwrap_or(0)) + 1, ObjType::Map),
            6 => return,
            _ => (usize::from(ops.next().unwrap_or(0)) + 1, ObjType::List),
        };
        for _ in 0..times {
            if *objects >= MAX_OBJECTS {
                return;
            }
            let Some((obj, parent)) = open.last().cloned() else {
                return;
            };
            let made = match parent {
                ObjType::Map | ObjType::Table => tx.put_object(&obj, key, ty),
                ObjType::List => tx.insert_object(&obj, position(tx, &obj, front), ty),
                // In a text only a block (a map) can be opened.
                ObjType::Text => tx.split_block(&obj, position(tx, &obj, front)),
            };
            let Ok(made) = made else { return };
            *objects += 1;
            let made_ty = if parent == ObjType::Text {
                ObjType::Map
            } else {
                ty
            };
            open.push((made, made_ty));
        }
    }
}

fn position(tx: &Transaction<'_>, obj: &ObjId, front: bool) -> usize {
    if front { 0 } else { tx.length(obj) }
}

/// How deep the document nests, counted one past the limit at most: every value of every
/// property (and every element of a text), by other means than `doc::check_depth` (keys and
/// `get_all` per property), to check it.
fn deepest(doc: &Automerge) -> usize {
    let mut most = 0;
    let mut stack = vec![(ROOT, 0)];
    while let Some((obj, depth)) = stack.pop() {
        most = most.max(depth);
        if depth > MAX_DEPTH {
            break;
        }
        let inside: Vec<ObjId> = match doc.object_type(&obj) {
            Ok(ObjType::Map) | Ok(ObjType::Table) => doc
                .keys(&obj)
                .flat_map(|k| doc.get_all(&obj, k).unwrap_or_default())
                .filter(|(v, _)| v.is_object())
                .map(|(_, id)| id)
                .collect(),
            Ok(ObjType::List) => (0..doc.length(&obj))
                .flat_map(|i| doc.get_all(&obj, i).unwrap_or_default())
                .filter(|(v, _)| v.is_object())
                .map(|(_, id)| id)
                .collect(),
            Ok(ObjType::Text) => doc
                .list_range(&obj, ..)
                .filter(|item| matches!(item.value, ValueRef::Object(_)))
                .map(|item| item.id())
                .collect(),
            Err(_) => Vec::new(),
        };
        stack.extend(inside.into_iter().map(|child| (child, depth + 1)));
    }
    most
}

/// How deeply arrays and objects nest in JSON, without recursion.
fn json_depth(value: &Json) -> usize {
    let mut most = 0;
    let mut stack = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        most = most.max(depth);
        match v {
            Json::Object(m) => stack.extend(m.values().map(|v| (v, depth + 1))),
            Json::Array(a) => stack.extend(a.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    most
}

/// Builds the program's record and runs everything that reads documents on it, then receives it
/// in `replica`: on a thread with a small stack, which code recursing once per level of a deep
/// document would overflow (and abort the process). The depth check must agree with an
/// independent count; readers must answer with JSON no deeper than the limit; the replica must
/// store the record exactly when the check passes.
pub fn exercise(replica: &mut Replica, data: &[u8]) {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let doc_id = format!("case-{}", RUN.fetch_add(1, Ordering::Relaxed));
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn_scoped(scope, || check(replica, &doc_id, data))
            .expect("spawn a thread");
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

fn check(replica: &mut Replica, doc_id: &str, data: &[u8]) {
    let (doc, changes) = build(doc_id, data);
    let fits = deepest(&doc) <= MAX_DEPTH;
    let checked = doc::check_depth(&doc);
    assert_eq!(checked.is_ok(), fits, "{checked:?}");
    let root = doc::read_root(&doc);
    assert!(json_depth(&Json::Object(root)) <= MAX_DEPTH + 1);
    let fields = doc::read_fields(&doc, KEYS);
    assert!(json_depth(&Json::Object(fields)) <= MAX_DEPTH + 1);
    let _ = doc::has_conflicts(&doc);
    for conflict in doc::conflicts(&doc) {
        for value in &conflict.values {
            assert!(json_depth(&value.value) <= MAX_DEPTH + 1);
        }
    }

    let docs = vec![DocChanges::changes(
        doc_id,
        changes
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect(),
    )];
    let cursor = Cursor {
        grid: "g1".into(),
        seq: 1,
        hash: None,
    };
    let received = replica.apply_remote("g1", &docs, &cursor);
    assert!(received.is_ok(), "{received:?}");
    match replica.get(doc_id) {
        Ok(record) => {
            assert!(fits, "a record nested too deep was stored");
            assert!(json_depth(&Json::Object(record.fields)) <= MAX_DEPTH + 1);
        }
        Err(Error::NotFound(_)) => assert!(!fits, "a record within the limit was refused"),
        Err(e) => panic!("{e}"),
    }
}
