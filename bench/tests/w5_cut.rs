//! The bench's W5 on a small grid, end to end: the real relay binary, a writing device, then new
//! devices in fresh processes, one of them cut off part-way through its first sync and resumed.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn test_w5_cuts_a_small_grid_part_way_and_the_resumed_device_holds_all_of_it() {
    let bench = Path::new(env!("CARGO_BIN_EXE_gridsync-bench"));
    let server = bench.with_file_name("gridsync-server");
    assert!(
        server.exists(),
        "{} not found: `cargo test --workspace` builds it (or `cargo build -p gridsync-server`)",
        server.display()
    );
    let records = 200;
    let out = Command::new(bench)
        .args(["--records", &records.to_string(), "w5"])
        // The relay next to the bench is used as it is: run under cargo, the bench would build
        // it first (`setup::ensure_server_built`), a second cargo inside this test run.
        .env_remove("CARGO")
        .output()
        .expect("run gridsync-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no JSON line ({e}): {line:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // Verified: both new devices hold every record, field by field, as the writer has it.
    assert_eq!(result["verified"], true, "{result}");
    let m = &result["metrics"];
    let fraction = m["cutTrippedAtFraction"].as_f64().unwrap_or(0.0);
    assert!(
        (0.5..1.0).contains(&fraction),
        "the cut lands at or past half of the catch-up, before its end: {m}"
    );
    let held = m["cutRecordsHeld"].as_u64().unwrap_or(0);
    assert!(
        held > 0 && held < records + 1,
        "the cut device holds part of the grid: {m}"
    );
    assert!(
        m["resumeBytesDown"].as_u64().unwrap_or(0) > 0,
        "the resumed sync downloads the rest: {m}"
    );
}
