//! Writes the Kotlin, Swift and Python sources of the bindings from the built library:
//! `cargo run -p gridsync-mobile --features cli --bin uniffi-bindgen -- generate --library
//! target/debug/libgridsync_mobile.so --language kotlin --out-dir OUT` (see mobile/README.md).

fn main() {
    uniffi::uniffi_bindgen_main()
}
