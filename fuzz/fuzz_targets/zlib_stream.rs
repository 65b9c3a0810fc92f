//! The zlib-stream decoder: the input is cut into WebSocket messages at
//! every 0xff byte (so the fuzzer controls the splits), each fed in order
//! to one context; an error starts a fresh context, as a reset would.
#![no_main]

use discord_bridge::codec::{Compression, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(Compression::ZlibStream, 64 * 1024).expect("decoder");
    for message in data.split_inclusive(|b| *b == 0xff) {
        if decoder.binary(message).is_err() {
            decoder = Decoder::new(Compression::ZlibStream, 64 * 1024).expect("decoder");
        }
    }
});
