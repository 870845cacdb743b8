//! No Swift toolchain runs here: this checks that the Swift sources generate from the current
//! library without errors and declare what an iOS app calls. (`swiftc` would compile them
//! against the XCFramework; see mobile/README.md.)

mod common;

use common::generate;

#[test]
fn test_swift_sources_are_generated_from_the_current_library() {
    let out = tempfile::tempdir().expect("out dir");
    generate("swift", out.path());
    let read = |name: &str| {
        std::fs::read_to_string(out.path().join(name))
            .unwrap_or_else(|e| panic!("{name} was not generated: {e}"))
    };
    let swift = read("Gridsync.swift");
    let header = read("GridsyncFFI.h");
    let modulemap = read("GridsyncFFI.modulemap");
    assert!(modulemap.contains("module GridsyncFFI"), "{modulemap}");
    assert!(
        header.contains("uniffi_gridsync_mobile_fn_"),
        "the C header declares the calls"
    );
    for declared in [
        "open class Replica",
        "public static func `open`(options: OpenOptions)",
        "func syncOnce(options: SyncOnceOptions)",
        "func observeQuery(query: RecordQuery, listener: QueryListener)",
        "public struct RecordQuery",
        "public struct FieldRecord",
        "public enum ErrorCode",
        "case badCredentials",
        "case notAllowed",
        "public var writableKinds: [String]",
        "open class GridsyncError",
        "public enum SessionState",
        "public protocol LiveSessionListener",
        // Doc comments reach the Swift sources.
        "Stop cleanly once this much time has passed",
    ] {
        assert!(
            swift.contains(declared),
            "Gridsync.swift lacks `{declared}`"
        );
    }
}
