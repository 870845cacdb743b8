//! The Kotlin bindings compiled with kotlinc and run on the JVM against a real relay: the
//! program is `tests/foreign/BindingTest.kt` with the guide's example (`examples/GridWorker.kt`).
//!
//! Needs kotlinc (npm package `kotlin-compiler`; `GRIDSYNC_KOTLINC`, or installed by `.ci/run`
//! in `target/kotlin/`), Java 17 and JNA (`GRIDSYNC_JNA`, or Debian's `libjna-java`). Skips
//! without them, unless `GRIDSYNC_REQUIRE_KOTLIN=1`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::{PASSWORD, Relay, cdylib, generate, on_path, run, tool, workspace};
use gridsync_mobile::{OpenOptions, RecordQuery, Replica};
use gridsync_server::accounts::Role;

const REQUIRE: &str = "GRIDSYNC_REQUIRE_KOTLIN";

#[test]
fn test_kotlin_bindings_run_on_the_jvm_against_a_real_relay() {
    let kotlin_home = workspace().join("target/kotlin/node_modules/kotlin-compiler");
    let Some(kotlinc) = tool(
        "GRIDSYNC_KOTLINC",
        &[kotlin_home.join("bin/kotlinc")],
        REQUIRE,
        "kotlinc not found: `npm install --prefix target/kotlin kotlin-compiler@2.4`",
    ) else {
        return;
    };
    let Some(jna) = tool(
        "GRIDSYNC_JNA",
        &[PathBuf::from("/usr/share/java/jna.jar")],
        REQUIRE,
        "JNA not found: `apt-get install libjna-java`",
    ) else {
        return;
    };
    let java_home = std::env::var_os("JAVA_HOME").map(|h| PathBuf::from(h).join("bin/java"));
    let Some(java) = tool(
        "GRIDSYNC_JAVA",
        &java_home
            .into_iter()
            .chain(on_path("java"))
            .collect::<Vec<_>>(),
        REQUIRE,
        "java not found",
    ) else {
        return;
    };
    // The compiler distribution carries the runtime jars the program needs.
    let lib = kotlinc
        .parent()
        .and_then(|bin| bin.parent())
        .expect("kotlinc in <home>/bin")
        .join("lib");
    let stdlib = lib.join("kotlin-stdlib.jar");
    let coroutines = lib.join("kotlinx-coroutines-core-jvm.jar");

    let out = tempfile::tempdir().expect("out dir");
    generate("kotlin", &out.path().join("src"));
    let bindings = out.path().join("src/org/gridsync/gridsync.kt");
    assert!(bindings.is_file(), "no {}", bindings.display());

    let crate_dir = workspace().join("mobile");
    let jar = out.path().join("test.jar");
    let classpath = |extra: &[&PathBuf]| {
        std::env::join_paths(extra.iter().copied().chain([&jna, &coroutines, &stdlib]))
            .expect("classpath")
    };
    run(
        "kotlinc",
        Command::new(&kotlinc)
            .arg(&bindings)
            .arg(crate_dir.join("examples/GridWorker.kt"))
            .arg(crate_dir.join("tests/foreign/BindingTest.kt"))
            .args(["-jvm-target", "17", "-nowarn", "-d"])
            .arg(&jar)
            .arg("-cp")
            .arg(classpath(&[])),
    );

    let relay = Relay::start_as(&[
        ("wang", Role::GridWorker, &["g1"]),
        ("li", Role::GridWorker, &["g1"]),
        ("zhou", Role::Volunteer, &["g1"]),
    ]);
    let work = out.path().join("phones");
    let library_dir = cdylib().parent().expect("library folder").to_path_buf();
    let output = run(
        "the Kotlin program",
        Command::new(&java)
            .arg(format!("-Djna.library.path={}", library_dir.display()))
            .arg("-cp")
            .arg(classpath(&[&jar]))
            .arg("BindingTestKt")
            .arg(&relay.url)
            .arg(PASSWORD)
            .arg(&work),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("KOTLIN BINDINGS OK"), "{stdout}");

    // The same list straight from Rust, for the binding's overhead (shown, not asserted).
    let wang = Replica::open(OpenOptions {
        folder: work.join("wang").to_string_lossy().into_owned(),
        key: None,
    })
    .expect("open wang's replica");
    let hundred = RecordQuery {
        kind: Some("household".into()),
        limit: Some(100),
        ..RecordQuery::default()
    };
    for _ in 0..20 {
        wang.list(hundred.clone()).expect("list");
    }
    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(wang.list(hundred.clone()).expect("list").len(), 100);
    }
    eprintln!(
        "list of 100 households from Rust: {} µs a call",
        started.elapsed().as_micros() / 200
    );
}

#[test]
fn test_the_guide_shows_the_example_the_kotlin_test_compiles() {
    let guide = include_str!("../README.md");
    let example = include_str!("../examples/GridWorker.kt");
    assert!(
        guide.contains(&format!("```kotlin\n{example}```")),
        "mobile/README.md must show examples/GridWorker.kt as it is"
    );
}
