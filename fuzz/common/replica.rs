//! The replica a fuzz target feeds: one per process, signed in to grid g1, in a temp dir that
//! lives as long as the process.

use std::sync::{Mutex, OnceLock};

use gridsync_core::Replica;
use gridsync_core::protocol::LoginResponse;

pub struct Target {
    pub replica: Replica,
    _dir: tempfile::TempDir,
}

pub fn target() -> &'static Mutex<Target> {
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
