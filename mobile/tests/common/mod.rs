//! What the binding tests share: a real relay on 127.0.0.1, the built library, the generated
//! bindings, and finding the foreign toolchains (skipping without them unless required).

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gridsync_e2e::TestServer;
use gridsync_server::accounts::Role;

/// The password of every test user.
pub const PASSWORD: &str = gridsync_e2e::PASSWORD;

/// A relay serving on 127.0.0.1 on a runtime of the test's own (the library under test has
/// its own and refuses to block inside another one).
pub struct Relay {
    pub server: Option<TestServer>,
    pub runtime: tokio::runtime::Runtime,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Starts a relay whose grid workers are `users`, each in the grids given.
    pub fn start(users: &[(&str, &[&str])]) -> Relay {
        let users: Vec<_> = users
            .iter()
            .map(|&(user, grids)| (user, Role::GridWorker, grids))
            .collect();
        Relay::start_as(&users)
    }

    /// Starts a relay with `users`, each of its role and in the grids given.
    pub fn start_as(users: &[(&str, Role, &[&str])]) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime");
        let dir = tempfile::tempdir().expect("relay dir");
        let server = runtime.block_on(async {
            let server = TestServer::start(dir.path()).await;
            for &(user, role, grids) in users {
                server.user(user, role, grids).await;
            }
            server
        });
        let url = server.url();
        Relay {
            server: Some(server),
            runtime,
            url,
            _dir: dir,
        }
    }

    /// Stops the relay: the port stays closed, as on a dead network.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

/// The workspace's root folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The cdylib cargo built with this test binary: `cargo test` writes it beside the test in
/// `target/<profile>/deps/` (only `cargo build` copies it up to `target/<profile>/`).
pub fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let name = format!(
        "{}gridsync_mobile{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let lib = deps.join(&name);
    assert!(
        lib.is_file(),
        "{} is missing: cargo builds it with the tests (crate-type cdylib)",
        lib.display()
    );
    lib
}

/// Writes the bindings for `language` (`kotlin`, `python`, `swift`) of the built library into
/// `out`, as `uniffi-bindgen generate --library` does (same code, same `uniffi.toml`).
pub fn generate(language: &str, out: &Path) {
    use uniffi::{GenerateOptions, TargetLanguage};
    let language = match language {
        "kotlin" => TargetLanguage::Kotlin,
        "python" => TargetLanguage::Python,
        "swift" => TargetLanguage::Swift,
        other => panic!("no bindings for {other}"),
    };
    let lib = cdylib();
    // `cargo metadata` finds mobile/uniffi.toml; cargo runs tests in the package's folder.
    let result = uniffi::generate(GenerateOptions {
        languages: vec![language],
        source: lib.to_string_lossy().into_owned().into(),
        out_dir: out.to_string_lossy().into_owned().into(),
        config_override: None,
        format: false,
        crate_filter: None,
        metadata_no_deps: true,
    });
    result.expect("generate bindings");
}

/// A tool the test needs, from `env` or the first of `candidates` that exists. `None` means
/// skip, with `why` printed; when `require` is set in the environment, a missing tool fails
/// the test instead.
pub fn tool(env: &str, candidates: &[PathBuf], require: &str, why: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().cloned())
        .find(|p| p.is_file());
    if found.is_none() {
        let message = format!("{why} (set {env}, or see mobile/README.md)");
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "{require}=1 but {message}"
        );
        eprintln!("SKIPPED: {message}");
    }
    found
}

/// `program` on PATH, if it is there.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Runs a command, failing the test with its output if it fails.
pub fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{text}",
        output.status
    );
    eprintln!("{what}:\n{text}");
    output
}
