//! The library as an app calls it, from Rust: the same objects and calls the Kotlin and Swift
//! bindings reach, against a real relay on 127.0.0.1.

mod common;

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PASSWORD, Relay};
use gridsync_mobile::{
    AttachOptions, ErrorCode, FieldRecord, LiveSessionListener, OpenOptions, QueryListener,
    RecordListener, RecordQuery, RecordSummary, Replica, SessionState, SignInOptions,
    SyncOnceOptions, SyncProgress, SyncProgressListener,
};
use gridsync_server::accounts::Role;

const WAIT: Duration = Duration::from_secs(20);

fn open(dir: &std::path::Path) -> Arc<Replica> {
    Replica::open(OpenOptions {
        folder: dir.to_string_lossy().into_owned(),
        key: None,
    })
    .expect("open replica")
}

fn signed_in(relay: &Relay, dir: &std::path::Path, user: &str) -> Arc<Replica> {
    let replica = open(dir);
    replica
        .sign_in(SignInOptions {
            server: relay.url.clone(),
            user: user.into(),
            password: PASSWORD.into(),
            device_name: format!("{user} 的测试手机"),
            ca_cert: None,
        })
        .expect("sign in");
    replica
}

fn households() -> RecordQuery {
    RecordQuery {
        kind: Some("household".into()),
        ..RecordQuery::default()
    }
}

fn household(replica: &Replica, head: &str) -> FieldRecord {
    let json = format!(
        r#"{{"head_name":"{head}","household_type":"registered","visit_class":"priority",
            "address":{{"estate":"幸福小区","building":"3","unit":"2","door":"301"}}}}"#
    );
    replica
        .create("household".into(), json)
        .expect("create household")
}

fn sync(replica: &Replica) {
    let result = replica.sync_once(SyncOnceOptions::default()).expect("sync");
    assert!(result.complete);
}

struct Rows(Mutex<Sender<Vec<RecordSummary>>>);
impl QueryListener for Rows {
    fn on_change(&self, rows: Vec<RecordSummary>) {
        let _ = self.0.lock().expect("sender").send(rows);
    }
}

fn rows_listener() -> (Arc<Rows>, Receiver<Vec<RecordSummary>>) {
    let (tx, rx) = channel();
    (Arc::new(Rows(Mutex::new(tx))), rx)
}

struct One(Mutex<Sender<Option<FieldRecord>>>);
impl RecordListener for One {
    fn on_change(&self, record: Option<FieldRecord>) {
        let _ = self.0.lock().expect("sender").send(record);
    }
}

struct States(Mutex<Sender<SessionState>>);
impl LiveSessionListener for States {
    fn on_state(&self, state: SessionState) {
        let _ = self.0.lock().expect("sender").send(state);
    }
}

/// Receives until `check` holds, failing after [`WAIT`].
fn until<T: std::fmt::Debug>(rx: &Receiver<T>, what: &str, mut check: impl FnMut(&T) -> bool) -> T {
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if check(&v) => return v,
            Ok(_) => {}
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}

#[test]
fn test_a_change_from_another_device_reaches_an_observer_through_the_live_session() {
    let relay = Relay::start(&[("wang", &["g1"]), ("li", &["g1"])]);
    let dirs = tempfile::tempdir().expect("dirs");
    let a = signed_in(&relay, &dirs.path().join("a"), "wang");
    let b = signed_in(&relay, &dirs.path().join("b"), "li");
    let me = a.who_am_i().expect("signed in");
    assert_eq!(
        (me.user.as_str(), me.grids.as_slice()),
        ("wang", &["g1".to_string()][..])
    );

    let (rows, seen) = rows_listener();
    let _watching = a.observe_query(households(), rows).expect("observe");
    assert!(until(&seen, "first answer", |_| true).is_empty());

    let (states_tx, states) = channel();
    let session = a.live_session(Some(Arc::new(States(Mutex::new(states_tx)))));
    session.start().expect("start");
    until(&states, "live state", |s| *s == SessionState::Live);

    let h = household(&b, "张三");
    sync(&b);
    let got = until(&seen, "the pushed household", |r| r.len() == 1);
    assert_eq!(got[0].id, h.id);
    assert_eq!(got[0].title, "张三 幸福小区-3-2-301");

    // A local write goes up at once: the other device receives it with a plain sync.
    let mine = household(&a, "李四");
    until(&seen, "the local household", |r| r.len() == 2);
    let end = Instant::now() + WAIT;
    while b.get(mine.id.clone()).expect("get").is_none() {
        assert!(
            Instant::now() < end,
            "the live session never uploaded the write"
        );
        std::thread::sleep(Duration::from_millis(100));
        sync(&b);
    }
    session.stop();
    assert_eq!(session.state(), SessionState::Stopped);
    assert_eq!(a.status().expect("status").unsent_changes, 0);
}

#[test]
fn test_an_observer_is_called_only_when_its_answer_changes() {
    let relay = Relay::start(&[("wang", &["g1"])]);
    let dir = tempfile::tempdir().expect("dir");
    let a = signed_in(&relay, dir.path(), "wang");
    let h = household(&a, "张三");

    let (tx, record_calls) = channel();
    let watching = a.observe_record(h.id.clone(), Arc::new(One(Mutex::new(tx))));
    let first = until(&record_calls, "first answer", |_| true).expect("the household");
    assert_eq!(first.id, h.id);

    // Registered after the record observer: once it has its answer for a write, the record
    // observer's re-run for that write is done too.
    let (rows, patrols) = rows_listener();
    let patrol_query = RecordQuery {
        kind: Some("patrol".into()),
        ..RecordQuery::default()
    };
    let _patrols = a.observe_query(patrol_query, rows).expect("observe");
    until(&patrols, "first patrol answer", |_| true);
    a.create(
        "patrol".into(),
        r#"{"started_at":"2026-11-02T09:00:00Z","team":["wang"]}"#.into(),
    )
    .expect("create patrol");
    until(&patrols, "the new patrol", |r| r.len() == 1);
    assert!(
        record_calls.try_recv().is_err(),
        "a write to another record changed nothing this observer shows"
    );

    a.update(h.id.clone(), r#"{"notes":"独居老人"}"#.into())
        .expect("update");
    let changed = until(&record_calls, "the changed household", |_| true).expect("household");
    assert!(changed.json.contains("独居老人"), "{}", changed.json);

    watching.cancel();
    a.update(h.id.clone(), r#"{"notes":"独居老人，每周探访"}"#.into())
        .expect("update");
    a.create(
        "patrol".into(),
        r#"{"started_at":"2026-11-02T15:00:00Z","team":["wang"]}"#.into(),
    )
    .expect("create patrol");
    until(&patrols, "a re-run after the cancel", |r| r.len() == 2);
    assert!(record_calls.try_recv().is_err(), "called after cancel()");
}

#[test]
fn test_wrong_password_is_bad_credentials_and_leaves_the_replica_signed_out() {
    let relay = Relay::start(&[("wang", &["g1"])]);
    let dir = tempfile::tempdir().expect("dir");
    let replica = open(dir.path());
    let err = replica
        .sign_in(SignInOptions {
            server: relay.url.clone(),
            user: "wang".into(),
            password: "not the password".into(),
            device_name: String::new(),
            ca_cert: None,
        })
        .expect_err("wrong password");
    assert_eq!(err.code(), ErrorCode::BadCredentials, "{err}");
    assert_eq!(err.message_en(), "wrong username or password");
    assert_eq!(err.message_zh(), "用户名或密码错误");
    assert!(replica.who_am_i().is_none());
    let err = replica
        .create("household".into(), "{}".into())
        .expect_err("not signed in");
    assert_eq!(err.code(), ErrorCode::NotSignedIn);
    let err = replica
        .create("households".into(), "{}".into())
        .expect_err("unknown kind");
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

/// Sleeps through the deadline at the first stored batch, so the sync must stop right after it.
struct SlowFirstBatch {
    until: Instant,
    calls: Mutex<Vec<SyncProgress>>,
}
impl SyncProgressListener for SlowFirstBatch {
    fn on_progress(&self, progress: SyncProgress) {
        let mut calls = self.calls.lock().expect("calls");
        if calls.is_empty() {
            std::thread::sleep(self.until.saturating_duration_since(Instant::now()));
        }
        calls.push(progress);
    }
}

#[test]
fn test_a_deadline_stops_between_batches_and_the_next_sync_resumes() {
    let relay = Relay::start(&[("wang", &["g1"]), ("li", &["g1"])]);
    let dirs = tempfile::tempdir().expect("dirs");
    let a = signed_in(&relay, &dirs.path().join("a"), "wang");
    // About 1 KB of notes each: several catch-up batches' worth (a batch is at most 256 KiB).
    let notes = "走访记录备注".repeat(60);
    let total = 400;
    for i in 0..total {
        let json =
            format!(r#"{{"head_name":"户主{i}","household_type":"registered","notes":"{notes}"}}"#);
        a.create("household".into(), json).expect("create");
    }
    sync(&a);

    let b = signed_in(&relay, &dirs.path().join("b"), "li");
    let budget = Duration::from_secs(8);
    let listener = Arc::new(SlowFirstBatch {
        until: Instant::now() + budget + Duration::from_millis(100),
        calls: Mutex::new(Vec::new()),
    });
    let first = b
        .sync_once(SyncOnceOptions {
            deadline: Some(budget),
            progress: Some(listener.clone()),
        })
        .expect("sync with a deadline");
    assert!(!first.complete, "{first:?}");
    let calls = listener.calls.lock().expect("calls").clone();
    assert_eq!(
        calls.len(),
        1,
        "stopped right after the first batch: {calls:?}"
    );
    assert!(
        calls[0].received > 0 && calls[0].received < calls[0].total,
        "{calls:?}"
    );
    let stored = b.count(households()).expect("count");
    assert!(
        stored > 0 && stored < total,
        "one batch stored, not all: {stored}"
    );
    let cursor = b.status().expect("status").cursors[0].seq;
    assert!(cursor > 0);

    let second = b.sync_once(SyncOnceOptions::default()).expect("resume");
    assert!(second.complete);
    assert_eq!(b.count(households()).expect("count"), total);
    assert!(
        second.changes_received < total,
        "resumed, not started over: {second:?}"
    );
    assert!(b.status().expect("status").cursors[0].seq > cursor);
}

#[test]
fn test_a_live_session_backs_off_on_a_dead_network_and_stops_when_asked() {
    let mut relay = Relay::start(&[("wang", &["g1"])]);
    let dir = tempfile::tempdir().expect("dir");
    let a = signed_in(&relay, dir.path(), "wang");
    relay.stop();

    let (tx, states) = channel();
    let session = a.live_session(Some(Arc::new(States(Mutex::new(tx)))));
    session.start().expect("start");
    let watched = Instant::now();
    let mut attempts = Vec::new();
    while watched.elapsed() < Duration::from_secs(4) {
        if let Ok(SessionState::Retrying {
            attempt,
            retry_in,
            code,
            ..
        }) = states.recv_timeout(Duration::from_millis(200))
        {
            assert_eq!(code, ErrorCode::Unreachable);
            attempts.push((attempt, retry_in));
        }
    }
    // 1 s, 2 s, 4 s (each half to all of it): four seconds see two to four attempts.
    assert!(
        (2..=4).contains(&attempts.len()),
        "attempts in 4 s: {attempts:?}"
    );
    for pair in attempts.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "{attempts:?}");
    }
    assert!(
        session.start().is_ok(),
        "starting a running session does nothing"
    );
    let other = a.live_session(None);
    assert_eq!(
        other.start().expect_err("one at a time").code(),
        ErrorCode::Busy
    );
    session.stop();
    assert_eq!(session.state(), SessionState::Stopped);
}

#[test]
fn test_list_filters_by_text_and_counts_agree() {
    let relay = Relay::start(&[("wang", &["g1"])]);
    let dir = tempfile::tempdir().expect("dir");
    let a = signed_in(&relay, dir.path(), "wang");
    for head in ["张三", "张三丰", "李四"] {
        household(&a, head);
    }
    let q = RecordQuery {
        text: Some("张三".into()),
        ..households()
    };
    assert_eq!(a.list(q.clone()).expect("list").len(), 2);
    assert_eq!(a.count(q.clone()).expect("count"), 2);
    let limited = RecordQuery {
        limit: Some(1),
        ..q
    };
    assert_eq!(a.list(limited).expect("list").len(), 1);
    assert_eq!(a.count(households()).expect("count"), 3);
}

#[test]
fn test_opening_an_open_folder_shares_the_replica_and_its_observers() {
    let relay = Relay::start(&[("wang", &["g1"])]);
    let dir = tempfile::tempdir().expect("dir");
    let screen = signed_in(&relay, dir.path(), "wang");
    // A background job of the same app opens the folder again (by another spelling of it).
    let job = open(&dir.path().join("."));
    assert_eq!(job.who_am_i(), screen.who_am_i());
    let (rows, seen) = rows_listener();
    let _watching = screen.observe_query(households(), rows).expect("observe");
    until(&seen, "first answer", |_| true);
    let h = household(&job, "张三");
    let got = until(&seen, "the job's write", |r| r.len() == 1);
    assert_eq!(got[0].id, h.id);
}

#[test]
fn test_an_encrypted_replica_needs_its_key_and_a_wrong_one_is_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("r").to_string_lossy().into_owned();
    let key = vec![7u8; 32];
    let replica = Replica::open(OpenOptions {
        folder: folder.clone(),
        key: Some(key.clone()),
    })
    .expect("a new encrypted replica");
    // While it is open (a screen holds it), then once it is closed, the same way.
    let mut held = Some(replica);
    for _ in 0..2 {
        for wrong in [None, Some(vec![8u8; 32])] {
            let err = Replica::open(OpenOptions {
                folder: folder.clone(),
                key: wrong.clone(),
            })
            .err()
            .expect("refused");
            let open_now = held.is_some();
            assert_eq!(
                err.code(),
                ErrorCode::WrongKey,
                "open: {open_now}, {wrong:?}: {err}"
            );
        }
        if let Some(replica) = held.take() {
            let again = Replica::open(OpenOptions {
                folder: folder.clone(),
                key: Some(key.clone()),
            })
            .expect("the right key, while it is open");
            assert_eq!(again.folder(), replica.folder());
        }
    }
    Replica::open(OpenOptions {
        folder,
        key: Some(key),
    })
    .expect("the right key opens it");
}

#[test]
fn test_a_volunteers_case_is_not_allowed_and_the_account_says_what_it_may_write() {
    let relay = Relay::start_as(&[
        ("wang", Role::GridWorker, &["g1"]),
        ("zhou", Role::Volunteer, &["g1"]),
    ]);
    let dirs = tempfile::tempdir().expect("dirs");
    let worker = signed_in(&relay, &dirs.path().join("wang"), "wang");
    let volunteer = signed_in(&relay, &dirs.path().join("zhou"), "zhou");
    let me = volunteer.who_am_i().expect("signed in");
    assert_eq!(me.role, "volunteer");
    assert_eq!(me.writable_kinds, ["patrol"]);
    assert_eq!(
        worker.who_am_i().expect("signed in").writable_kinds,
        gridsync_core::record::Kind::ALL.map(|k| k.as_str().to_string())
    );

    let case = r#"{"case_type":"low_income","subject_name":"张三"}"#;
    let err = volunteer
        .create("case".into(), case.into())
        .expect_err("refused on the phone");
    assert_eq!(err.code(), ErrorCode::NotAllowed, "{err}");
    assert_eq!(err.message_zh(), "巡逻志愿者无权写入帮扶个案");
    assert_eq!(err.message_en(), "a volunteer may not write case records");
    assert_eq!(volunteer.status().expect("status").unsent_changes, 0);
    volunteer
        .create(
            "patrol".into(),
            r#"{"started_at":"2026-11-02T20:00:00Z"}"#.into(),
        )
        .expect("a patrol log is the volunteer's to write");
    worker
        .create("case".into(), case.into())
        .expect("a grid worker writes cases");
}

#[test]
fn test_a_damaged_replica_opens_salvaged_and_says_what_it_kept() {
    let relay = Relay::start(&[("wang", &["g1"])]);
    let dir = tempfile::tempdir().expect("dir");
    let replica = signed_in(&relay, dir.path(), "wang");
    assert_eq!(replica.recovery(), None);
    for n in 0..80 {
        household(&replica, &format!("户{n}"));
    }
    drop(replica);
    // Half the file gone, as a failing flash or a full disk can leave it.
    let path = dir.path().join(gridsync_core::store::DB_FILE);
    let len = std::fs::metadata(&path).expect("file").len();
    assert!(len >= 8 * 4096, "{len} bytes");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len / 2 / 4096 * 4096).expect("truncate");
    drop(file);

    let replica = open(dir.path());
    let recovery = replica.recovery().expect("the damage is reported");
    assert_eq!(recovery.kind, "salvaged");
    assert!(recovery.signed_in, "{recovery:?}");
    assert!(
        recovery.message.starts_with("本机数据文件已损坏"),
        "{}",
        recovery.message
    );
    assert!(replica.who_am_i().is_some());
    assert_eq!(
        replica.status().expect("status").unsent_changes,
        recovery.kept_changes
    );
}

#[test]
fn test_a_photo_attached_on_one_phone_is_saved_on_another_after_it_asks_for_it() {
    let relay = Relay::start(&[("wang", &["g1"]), ("li", &["g1"])]);
    let (da, db) = (
        tempfile::tempdir().expect("ok"),
        tempfile::tempdir().expect("ok"),
    );
    let a = signed_in(&relay, da.path(), "wang");
    let id = household(&a, "张三").id;
    let bytes: Vec<u8> = (0..150_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let options = AttachOptions {
        caption: "门口".into(),
        media_type: Some("image/jpeg".into()),
        original: true,
        ..AttachOptions::default()
    };
    let hash = a
        .attach_bytes(id.clone(), bytes.clone(), options)
        .expect("ok");
    let state = a.attachment(hash.clone()).expect("ok").expect("ok");
    assert_eq!(state.upload.as_deref(), Some("waiting"));
    sync(&a);
    let state = a.attachment(hash.clone()).expect("ok").expect("ok");
    assert_eq!(state.upload.as_deref(), Some("uploaded"));

    let b = signed_in(&relay, db.path(), "li");
    sync(&b);
    let out = db.path().join("photo.jpg");
    let path = out.to_string_lossy().into_owned();
    let err = b
        .save_attachment(hash.clone(), path.clone())
        .expect_err("refused");
    assert_eq!(err.code(), ErrorCode::Attachment, "{err}");
    assert!(b.want_attachment(hash.clone()).expect("ok").wanted);
    sync(&b);
    assert!(b.attachment(hash.clone()).expect("ok").expect("ok").here);
    assert_eq!(
        b.save_attachment(hash, path).expect("ok"),
        bytes.len() as u64
    );
    assert_eq!(std::fs::read(&out).expect("ok"), bytes);
}
