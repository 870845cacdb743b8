// Without the feature there is nothing to encrypt with (see the test in crypt.rs).
#![cfg(feature = "encryption")]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::*;
use crate::Replica;
use crate::protocol::LoginResponse;
use crate::record::Kind;

const NAME: &str = "欧阳明珠";
const ID_NUMBER: &str = "420102195003071234";
const NOTE: &str = "低保复核中，需补交收入证明";

fn key(n: u8) -> ReplicaKey {
    ReplicaKey::raw([n; RAW_KEY_BYTES])
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn enrol(r: &mut Replica) {
    let login = LoginResponse {
        device_id: "device-wang".into(),
        token: "token".into(),
        user_id: "wang".into(),
        username: "wang".into(),
        display_name: "王芳".into(),
        role: "grid_worker".into(),
        grids: vec!["g1".into()],
    };
    r.enrol("http://127.0.0.1:1", &login).unwrap();
}

/// A household with a resident's name and ID number, and a case with a note; all unsent.
fn write_sensitive(r: &mut Replica) -> (String, String) {
    let h = r
        .create(
            Kind::Household,
            obj(json!({
                "head_name": NAME, "household_type": "registered",
                "residents": [{"name": NAME, "id_number": ID_NUMBER}],
            })),
        )
        .unwrap()
        .id;
    let c = r
        .create(
            Kind::Case,
            obj(json!({"case_type": "low_income", "household_id": h, "notes": NOTE})),
        )
        .unwrap()
        .id;
    (h, c)
}

/// Every file of the folder, by name, with its bytes.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Every file of the folder, by name, with its length and SHA-256: what "untouched" compares.
fn files(dir: &Path) -> BTreeMap<String, (usize, String)> {
    use sha2::Digest;
    contents(dir)
        .into_iter()
        .map(|(name, bytes)| {
            (
                name,
                (bytes.len(), hex::encode(sha2::Sha256::digest(&bytes))),
            )
        })
        .collect()
}

fn holds(dir: &Path, needle: &str) -> bool {
    contents(dir)
        .values()
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

fn assert_holds_no_plaintext(dir: &Path) {
    for secret in [NAME, ID_NUMBER, NOTE] {
        assert!(
            !holds(dir, secret),
            "{secret} is readable in {:?}",
            files(dir).keys()
        );
    }
}

/// An encrypted replica with sensitive unsent work, closed.
fn encrypted(dir: &Path) -> (String, String) {
    let mut r = Replica::open_with_key(dir, &key(1)).unwrap();
    enrol(&mut r);
    write_sensitive(&mut r)
}

/// What must survive re-encryption: identity and actor, records, the outbox (sequence number and
/// bytes of each change), the unsent count.
type State = (Value, Vec<Value>, Vec<(i64, Vec<u8>)>, u64);

fn state(r: &mut Replica) -> State {
    let identity = serde_json::to_value(r.identity().unwrap()).unwrap();
    let token = r.identity().unwrap().token.clone();
    let mut records = Vec::new();
    for row in r.list(&crate::Query::default()).unwrap() {
        records.push(Value::Object(r.get(&row.id).unwrap().fields));
    }
    let outbox = r
        .outbox_batch(usize::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.bytes))
        .collect();
    let unsent = r.status().unwrap().unsent_changes;
    (
        json!([identity, token, r.actor_hex()]),
        records,
        outbox,
        unsent,
    )
}

#[test]
fn test_encrypted_replica_holds_no_plaintext_and_reopens_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = encrypted(dir.path());
    assert_eq!(
        Replica::inspect(dir.path()).unwrap(),
        ReplicaFile::Encrypted
    );
    assert_holds_no_plaintext(dir.path());

    let mut r = Replica::open_with_key(dir.path(), &key(1)).unwrap();
    let household = r.get(&h).unwrap();
    assert_eq!(household.fields["residents"][0]["id_number"], ID_NUMBER);
    assert_eq!(r.get(&c).unwrap().fields["notes"], NOTE);
    // The household, its private part (the ID number) and the case.
    assert_eq!(r.status().unwrap().unsent_changes, 3);
}

#[test]
fn test_a_plain_replica_holds_the_plaintext_the_encrypted_one_hides() {
    // The control of the test above: the search does find the secrets when they are there.
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    enrol(&mut r);
    write_sensitive(&mut r);
    drop(r);
    assert_eq!(Replica::inspect(dir.path()).unwrap(), ReplicaFile::Plain);
    assert!(holds(dir.path(), ID_NUMBER));
}

#[test]
fn test_wrong_key_is_refused_and_leaves_the_files_untouched() {
    let dir = tempfile::tempdir().unwrap();
    encrypted(dir.path());
    let before = files(dir.path());
    let err = Replica::open_with_key(dir.path(), &key(2)).err().unwrap();
    assert!(matches!(err, Error::ReplicaKey(KeyProblem::Wrong)), "{err}");
    assert!(err.to_string().contains("副本密钥不正确"), "{err}");
    assert!(
        err.to_string().contains("does not open this replica"),
        "{err}"
    );
    assert_eq!(files(dir.path()), before, "a wrong key changed the folder");
    // A passphrase is a different key too.
    let err = Replica::open_with_key(dir.path(), &ReplicaKey::passphrase("secret").unwrap())
        .err()
        .unwrap();
    assert!(matches!(err, Error::ReplicaKey(KeyProblem::Wrong)), "{err}");
    assert_eq!(files(dir.path()), before);
}

#[test]
fn test_missing_key_on_an_encrypted_replica_is_refused_and_leaves_the_files_untouched() {
    let dir = tempfile::tempdir().unwrap();
    encrypted(dir.path());
    let before = files(dir.path());
    let err = Replica::open(dir.path()).err().unwrap();
    assert!(
        matches!(err, Error::ReplicaKey(KeyProblem::Missing)),
        "{err}"
    );
    assert!(err.to_string().contains("needs its key"), "{err}");
    assert_eq!(files(dir.path()), before);
}

#[test]
fn test_a_key_for_a_plain_replica_is_refused_and_leaves_it_plain() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    enrol(&mut r);
    drop(r);
    let before = files(dir.path());
    let err = Replica::open_with_key(dir.path(), &key(1)).err().unwrap();
    assert!(
        matches!(err, Error::ReplicaKey(KeyProblem::NotEncrypted)),
        "{err}"
    );
    assert_eq!(files(dir.path()), before);
}

#[test]
fn test_rekey_changes_the_key_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    encrypted(dir.path());
    let before = state(&mut Replica::open_with_key(dir.path(), &key(1)).unwrap());
    let new = ReplicaKey::passphrase("新的口令 new passphrase").unwrap();
    Replica::rekey(dir.path(), Some(&key(1)), &new).unwrap();

    let err = Replica::open_with_key(dir.path(), &key(1)).err().unwrap();
    assert!(matches!(err, Error::ReplicaKey(KeyProblem::Wrong)), "{err}");
    let mut r = Replica::open_with_key(dir.path(), &new).unwrap();
    assert_eq!(state(&mut r), before);
    // Still a working replica: writes go on, with the new key.
    r.create(
        Kind::Patrol,
        obj(json!({"started_at": "2026-11-01T20:00:00Z"})),
    )
    .unwrap();
    drop(r);
    assert_holds_no_plaintext(dir.path());
    assert_eq!(
        Replica::open_with_key(dir.path(), &new)
            .unwrap()
            .status()
            .unwrap()
            .unsent_changes,
        4
    );
}

#[test]
fn test_rekey_with_a_wrong_old_key_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    encrypted(dir.path());
    let before = files(dir.path());
    let err = Replica::rekey(dir.path(), Some(&key(9)), &key(2))
        .err()
        .unwrap();
    assert!(matches!(err, Error::ReplicaKey(KeyProblem::Wrong)), "{err}");
    assert_eq!(files(dir.path()), before);
}

#[test]
fn test_encrypting_a_plain_replica_in_place_keeps_unsent_and_refused_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    enrol(&mut r);
    write_sensitive(&mut r);
    let first = r.outbox_batch(1, usize::MAX).unwrap();
    r.acknowledge(&[], &[(first[0].seq, "outside scope".into())], &[])
        .unwrap();
    let before = state(&mut r);
    let rejected = r.status().unwrap().rejected;
    drop(r);
    assert!(holds(dir.path(), ID_NUMBER));

    Replica::rekey(dir.path(), None, &key(3)).unwrap();
    assert_eq!(
        Replica::inspect(dir.path()).unwrap(),
        ReplicaFile::Encrypted
    );
    assert_holds_no_plaintext(dir.path());
    assert_eq!(
        files(dir.path()).keys().cloned().collect::<Vec<_>>(),
        vec![DB_FILE.to_string()],
        "only the replica is left in the folder"
    );
    assert!(matches!(
        Replica::open(dir.path()).err().unwrap(),
        Error::ReplicaKey(KeyProblem::Missing)
    ));
    let mut r = Replica::open_with_key(dir.path(), &key(3)).unwrap();
    assert_eq!(state(&mut r), before);
    let after = r.status().unwrap().rejected;
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].doc_id.as_str(), after[0].reason.as_str()),
        (rejected[0].doc_id.as_str(), "outside scope")
    );
}

#[test]
fn test_an_interrupted_encryption_leaves_the_plain_replica_or_the_encrypted_one() {
    for interrupt in [Interrupt::BeforeRename, Interrupt::AfterRename] {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Replica::open(dir.path()).unwrap();
        enrol(&mut r);
        write_sensitive(&mut r);
        let before = state(&mut r);
        drop(r);
        rekey(dir.path(), None, &key(4), interrupt).unwrap();
        let mut r = match interrupt {
            // The copy was never put in place: the plain replica is whole, and its next open
            // removes the copy.
            Interrupt::BeforeRename => {
                assert!(dir.path().join(REKEY_FILE).exists());
                Replica::open(dir.path()).unwrap()
            }
            _ => Replica::open_with_key(dir.path(), &key(4)).unwrap(),
        };
        assert_eq!(state(&mut r), before, "{interrupt:?}");
        drop(r);
        assert!(!dir.path().join(REKEY_FILE).exists(), "{interrupt:?}");
    }
}

#[test]
fn test_a_copy_cut_off_while_it_was_written_is_discarded_and_the_replica_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    enrol(&mut r);
    write_sensitive(&mut r);
    let before = state(&mut r);
    drop(r);
    // What a process killed inside sqlcipher_export leaves: half a copy and its hot journal.
    std::fs::write(dir.path().join(REKEY_FILE), [7u8; 3000]).unwrap();
    std::fs::write(dir.path().join(format!("{REKEY_FILE}-journal")), [8u8; 500]).unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    assert_eq!(state(&mut r), before);
    drop(r);
    assert_eq!(
        files(dir.path()).keys().cloned().collect::<Vec<_>>(),
        vec![DB_FILE.to_string()]
    );
    // And encrypting then works as if nothing had happened.
    Replica::rekey(dir.path(), None, &key(5)).unwrap();
    assert_eq!(
        state(&mut Replica::open_with_key(dir.path(), &key(5)).unwrap()),
        before
    );
}

#[test]
fn test_rekey_of_a_replica_open_elsewhere_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    enrol(&mut r);
    write_sensitive(&mut r);
    let err = Replica::rekey(dir.path(), None, &key(6)).err().unwrap();
    assert!(err.to_string().contains("open elsewhere"), "{err}");
    assert_eq!(r.status().unwrap().unsent_changes, 3);
    drop(r);
    assert_eq!(Replica::inspect(dir.path()).unwrap(), ReplicaFile::Plain);
    assert!(!dir.path().join(REKEY_FILE).exists());
}

#[test]
fn test_wipe_erases_an_encrypted_replica() {
    let dir = tempfile::tempdir().unwrap();
    encrypted(dir.path());
    let mut r = Replica::open_with_key(dir.path(), &key(1)).unwrap();
    r.wipe().unwrap();
    drop(r);
    let r = Replica::open_with_key(dir.path(), &key(1)).unwrap();
    assert!(r.identity().is_err());
    assert_eq!(r.count(&crate::Query::default()).unwrap(), 0);
    assert!(matches!(
        r.outbox_batch(usize::MAX, usize::MAX).unwrap().as_slice(),
        []
    ));
}

#[test]
fn test_key_text_is_a_raw_key_in_sqlciphers_notation_or_a_passphrase() {
    let raw = ReplicaKey::parse(&format!("x'{}'", "ab".repeat(32))).unwrap();
    assert_eq!(raw.text(), format!("x'{}'", "AB".repeat(32)));
    assert_eq!(
        ReplicaKey::from_bytes(&[0xab; 32]).unwrap().text(),
        raw.text()
    );
    assert_eq!(ReplicaKey::parse("口令 pass").unwrap().text(), "口令 pass");
    for bad in [
        "",
        "x'abcd'",
        &format!("x'{}", "ab".repeat(32)),
        &format!("x'{}'", "zz".repeat(32)),
    ] {
        assert!(
            matches!(
                ReplicaKey::parse(bad),
                Err(Error::ReplicaKey(KeyProblem::Malformed))
            ),
            "{bad:?}"
        );
    }
    assert!(ReplicaKey::from_bytes(&[1; 16]).is_err());
    assert_eq!(format!("{raw:?}"), "ReplicaKey(..)");
}

#[test]
fn test_wrong_key_leaves_a_crashed_replicas_wal_untouched() {
    // A phone that died mid-work leaves the WAL with changes not yet in the main file.
    let live = tempfile::tempdir().unwrap();
    let mut r = Replica::open_with_key(live.path(), &key(1)).unwrap();
    enrol(&mut r);
    let (h, _) = write_sensitive(&mut r);
    let crashed = tempfile::tempdir().unwrap();
    for (name, bytes) in contents(live.path()) {
        std::fs::write(crashed.path().join(name), bytes).unwrap();
    }
    drop(r);
    let before = files(crashed.path());
    assert!(
        before.keys().any(|n| n.ends_with("-wal")),
        "{:?}",
        before.keys()
    );
    for wrong in [Some(key(2)), None] {
        let err = match &wrong {
            Some(k) => Replica::open_with_key(crashed.path(), k),
            None => Replica::open(crashed.path()),
        }
        .err()
        .unwrap();
        assert!(matches!(err, Error::ReplicaKey(_)), "{err}");
        assert_eq!(
            files(crashed.path()),
            before,
            "{wrong:?} changed the crashed replica"
        );
    }
    // The right key still finds every change the WAL held.
    let mut r = Replica::open_with_key(crashed.path(), &key(1)).unwrap();
    assert_eq!(
        r.get(&h).unwrap().fields["residents"][0]["id_number"],
        ID_NUMBER
    );
}

#[test]
fn test_encrypting_in_place_overwrites_the_old_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    enrol(&mut r);
    write_sensitive(&mut r);
    drop(r);
    // A second name for the old file's bytes, as freed blocks would still hold them.
    let elsewhere = tempfile::tempdir_in(dir.path().parent().unwrap()).unwrap();
    let old = elsewhere.path().join("old-replica");
    std::fs::hard_link(dir.path().join(DB_FILE), &old).unwrap();
    assert!(holds(elsewhere.path(), ID_NUMBER));

    Replica::rekey(dir.path(), None, &key(7)).unwrap();
    let bytes = std::fs::read(&old).unwrap();
    assert!(!bytes.is_empty());
    assert!(
        bytes.iter().all(|b| *b == 0),
        "the old plain file was not overwritten"
    );
}
