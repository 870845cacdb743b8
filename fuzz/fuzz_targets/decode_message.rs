//! Any bytes a peer can send, fed to the frame decoder: errors are fine, panics and unbounded
//! allocations are not.
#![no_main]

use gridsync_core::protocol::{self, ClientMsg, Decoder, ServerMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = protocol::peek_hello(data);
    let _ = Decoder::default().push::<ClientMsg>(data);
    let _ = Decoder::default().push::<ServerMsg>(data);
    // The same bytes as a stream of frames split at every 0xFF, as fragments arrive.
    let mut decoder = Decoder::with_limit(1 << 20);
    for frame in data.split(|b| *b == 0xff) {
        if decoder.push::<ClientMsg>(frame).is_err() {
            decoder = Decoder::with_limit(1 << 20);
        }
    }
});
