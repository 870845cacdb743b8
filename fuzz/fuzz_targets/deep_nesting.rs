//! Records of any nesting of maps, lists and texts (blocks included), written concurrently by
//! two actors: the depth check must agree with an independent count, every reader must answer
//! without recursing (on a small stack) and with bounded JSON, and a replica must store a record
//! exactly when it is within the limit. See fuzz/common/nesting.rs for the input's format.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/nesting.rs"]
mod nesting;
#[path = "../common/replica.rs"]
mod replica;

fuzz_target!(|data: &[u8]| {
    let mut t = replica::target().lock().unwrap_or_else(|p| p.into_inner());
    nesting::exercise(&mut t.replica, data);
});
