//! Records of any nesting of maps, lists and texts (blocks included), written concurrently by
//! two actors: the depth check must agree with an independent count, every reader must answer
//! without recursing (on a small stack) and with bounded JSON, and a replica must store a record
//! exactly when it is within the limit. See fuzz/common/nesting.rs for the input's format.
#![no_main]

use std::sync::{Mutex, OnceLock};

use gridsync_core::Replica;
use gridsync_core::protocol::LoginResponse;
use libfuzzer_sys::fuzz_target;

#[path = "../common/nesting.rs"]
mod nesting;

struct Target {
    replica: Replica,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Mutex<Target> {
    static TARGET: OnceLock<Mutex<Target>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut replica = Replica::open(dir.path()).expect("open replica");
        let login = LoginResponse {
            device_id: "fuzz".into(),
            token: "fuzz".into(),
            user_id: "fuzz".into(),
            username: "fuzz".into(),
            display_name: "fuzz".into(),
            role: "grid_worker".into(),
            grids: vec!["g1".into()],
        };
        replica.enrol("http://127.0.0.1:9", &login).expect("enrol");
        Mutex::new(Target { replica, _dir: dir })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut t = target().lock().unwrap_or_else(|p| p.into_inner());
    nesting::exercise(&mut t.replica, data);
});
