//! The Python bindings (ctypes, no build step) against a real relay: the program is
//! `tests/foreign/test_bindings.py`. Skips without python3, unless `GRIDSYNC_REQUIRE_PYTHON=1`.

mod common;

use std::process::Command;

use common::{PASSWORD, Relay, cdylib, generate, on_path, run, tool, workspace};
use gridsync_server::accounts::Role;

const REQUIRE: &str = "GRIDSYNC_REQUIRE_PYTHON";

#[test]
fn test_python_bindings_against_a_real_relay() {
    let candidates: Vec<_> = on_path("python3").into_iter().collect();
    let Some(python) = tool("GRIDSYNC_PYTHON", &candidates, REQUIRE, "python3 not found") else {
        return;
    };
    let out = tempfile::tempdir().expect("out dir");
    generate("python", out.path());
    // The generated module loads the library from its own folder.
    let lib = cdylib();
    let name = lib.file_name().expect("library file name");
    std::os::unix::fs::symlink(&lib, out.path().join(name)).expect("link the library");

    let relay = Relay::start_as(&[
        ("wang", Role::GridWorker, &["g1"]),
        ("li", Role::GridWorker, &["g1"]),
        ("zhou", Role::Volunteer, &["g1"]),
    ]);
    let output = run(
        "the Python program",
        Command::new(python)
            .arg(workspace().join("mobile/tests/foreign/test_bindings.py"))
            .arg(&relay.url)
            .arg(PASSWORD)
            .arg(out.path().join("phones"))
            .env("PYTHONPATH", out.path())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PYTHON BINDINGS OK"), "{stdout}");
}
