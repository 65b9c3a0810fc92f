//! Property tests of the transport decoders against the simulator's
//! encoders (an independent implementation of Discord's compression):
//! arbitrary bytes never panic, valid streams decode byte for byte at any
//! message split, and memory stays bounded by the payload cap whatever a
//! message inflates to.

use discord_gateway_sim::compress::{ZlibEncoder, ZstdEncoder};
use proptest::prelude::*;

use super::zlib::ZlibStream;
use super::zstd_stream::ZstdStream;
use super::*;
use crate::prop_support::{config, json};

/// A small cap, so that oversized payloads are cheap to make.
const CAP: usize = 4096;

/// The most the decoders may hold for a cap: the output buffer grows to
/// the cap plus one byte (amortized growth may double that), a split
/// message's compressed bytes are bounded by the cap plus slack, and a
/// buffer past [`RETAIN_BYTES`] is given back before the next message.
fn memory_bound(cap: usize) -> usize {
    2 * (cap + 1) + 2 * (cap + cap / 8 + 1024) + 2 * zlib_min_grow()
}

const fn zlib_min_grow() -> usize {
    16 * 1024
}

/// One payload of the stream: JSON, sometimes padded past the cap.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    (
        json(),
        prop_oneof![4 => Just(0usize), 1 => CAP / 2..CAP * 3],
    )
        .prop_map(|(v, pad)| {
            let mut text = serde_json::json!({"op": 0, "d": v}).to_string();
            if pad > 0 {
                text = serde_json::json!({"op": 0, "d": "y".repeat(pad), "x": v}).to_string();
            }
            text.into_bytes()
        })
}

fn expect_frame(frame: Frame<'_>, payload: &[u8]) -> Result<(), TestCaseError> {
    match frame {
        Frame::Payload(p) => {
            prop_assert!(payload.len() <= CAP);
            prop_assert_eq!(p, payload);
        }
        Frame::Oversized { size } => {
            prop_assert!(payload.len() > CAP);
            prop_assert_eq!(size, payload.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes, cut into any messages, through every decoder: errors are
    /// fine (the connection would be reset with a fresh context), panics and
    /// unbounded buffers are not.
    #[test]
    fn prop_arbitrary_messages_never_panic(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..10),
        marker_every in 0usize..4,
    ) {
        for compression in [Compression::ZlibStream, Compression::ZstdStream, Compression::None] {
            let mut decoder = Decoder::new(compression, CAP).expect("decoder");
            for (i, message) in messages.iter().enumerate() {
                let mut message = message.clone();
                if marker_every > 0 && i % marker_every == 0 {
                    // End some messages like a zlib payload, so inflate runs.
                    message.extend_from_slice(&SYNC_FLUSH);
                }
                if decoder.binary(&message).is_err() {
                    decoder = Decoder::new(compression, CAP).expect("decoder");
                }
                let _ = decoder.text(&message);
                prop_assert!(decoder.buffered() <= memory_bound(CAP));
            }
        }
    }

    /// Valid zlib-stream traffic: many payloads on one context, each
    /// compressed message cut at arbitrary points into several WebSocket
    /// messages, decode to exactly the original bytes (or, above the cap,
    /// to their exact size), in order.
    #[test]
    fn prop_zlib_stream_relays_byte_exact_at_any_split(
        payloads in prop::collection::vec(payload(), 1..10),
        cuts in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..4), 10),
    ) {
        let mut encoder = ZlibEncoder::new();
        let mut decoder = Decoder::new(Compression::ZlibStream, CAP).expect("decoder");
        for (payload, cuts) in payloads.iter().zip(&cuts) {
            let wire = encoder.encode(payload);
            // A cut whose prefix already ends with the sync-flush marker is
            // indistinguishable from a complete message (the protocol's own
            // rule), so it is not a valid split.
            let mut at: Vec<usize> = cuts
                .iter()
                .map(|c| c.index(wire.len()))
                .filter(|&c| c > 0 && !wire[..c].ends_with(&SYNC_FLUSH))
                .collect();
            at.sort_unstable();
            at.dedup();
            let mut start = 0;
            for cut in at {
                prop_assert_eq!(decoder.binary(&wire[start..cut]), Ok(None));
                start = cut;
            }
            let frame = decoder.binary(&wire[start..]).expect("valid stream");
            expect_frame(frame.expect("a complete payload"), payload)?;
            prop_assert!(decoder.buffered() <= memory_bound(CAP));
        }
    }

    /// Valid zstd-stream traffic: every WebSocket message is one flushed
    /// block of the connection's single frame, and decodes to exactly its
    /// payload, across many messages and past oversized ones.
    #[test]
    fn prop_zstd_stream_relays_byte_exact(payloads in prop::collection::vec(payload(), 1..10)) {
        let mut encoder = ZstdEncoder::new().expect("encoder");
        let mut decoder = Decoder::new(Compression::ZstdStream, CAP).expect("decoder");
        for payload in &payloads {
            let wire = encoder.encode(payload).expect("encode");
            let frame = decoder.binary(&wire).expect("valid stream");
            expect_frame(frame.expect("a complete payload"), payload)?;
            prop_assert!(decoder.buffered() <= memory_bound(CAP));
        }
    }

    /// A valid stream with one message corrupted: an error or a payload,
    /// never a panic; and a fresh context decodes a fresh stream again.
    #[test]
    fn prop_corrupted_streams_fail_cleanly(
        payloads in prop::collection::vec(payload(), 2..6),
        victim in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        zstd in any::<bool>(),
    ) {
        let compression = if zstd { Compression::ZstdStream } else { Compression::ZlibStream };
        let mut zlib = ZlibEncoder::new();
        let mut zstd_enc = ZstdEncoder::new().expect("encoder");
        let mut encode = |p: &[u8]| if zstd { zstd_enc.encode(p).expect("encode") } else { zlib.encode(p) };
        let mut decoder = Decoder::new(compression, CAP).expect("decoder");
        let victim = victim.index(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let mut wire = encode(payload);
            if i == victim {
                for (at, byte) in &flips {
                    let at = at.index(wire.len());
                    wire[at] ^= byte | 1;
                }
            }
            if decoder.binary(&wire).is_err() {
                break;
            }
            prop_assert!(decoder.buffered() <= memory_bound(CAP));
        }
        let mut fresh = Decoder::new(compression, CAP).expect("decoder");
        let mut zlib = ZlibEncoder::new();
        let mut zstd_enc = ZstdEncoder::new().expect("encoder");
        let wire = if zstd { zstd_enc.encode(b"{}").expect("encode") } else { zlib.encode(b"{}") };
        prop_assert_eq!(fresh.binary(&wire), Ok(Some(Frame::Payload(&b"{}"[..]))));
    }
}

/// A decompression bomb below the ceiling — 100 MB of zeros, compressed by
/// the simulator's encoder into one message — is dropped as oversized
/// without being buffered: the decoder never holds more than a few caps,
/// and the stream stays in sync for the next payload.
#[test]
fn a_decompression_bomb_is_dropped_without_being_buffered() {
    const SIZE: usize = 100 << 20;
    let cap = 64 * 1024;
    let zeros = vec![0u8; SIZE];
    let next = &b"{\"op\":11}"[..];
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let (bomb, after) = if compression == Compression::ZlibStream {
            let mut zlib = ZlibEncoder::new();
            (zlib.encode(&zeros), zlib.encode(next))
        } else {
            let mut zstd = ZstdEncoder::new().expect("encoder");
            let bomb = zstd.encode(&zeros).expect("encode");
            (bomb, zstd.encode(next).expect("encode"))
        };
        assert!(
            bomb.len() < SIZE / 100,
            "{compression}: a bomb compresses well"
        );
        let mut decoder = Decoder::new(compression, cap).expect("decoder");
        assert_eq!(
            decoder.binary(&bomb),
            Ok(Some(Frame::Oversized { size: SIZE })),
            "{compression}"
        );
        assert!(
            decoder.buffered() <= 4 * cap,
            "{compression}: {} bytes buffered for a cap of {cap}",
            decoder.buffered()
        );
        assert_eq!(
            decoder.binary(&after),
            Ok(Some(Frame::Payload(next))),
            "{compression}: the stream is still in sync"
        );
    }
}

/// Past the ceiling a message is not inflated to its end: the stream is
/// given up as a bomb (the connection is then reset).
#[test]
fn a_message_inflating_past_the_ceiling_is_refused() {
    let (cap, ceiling) = (64 * 1024, 1 << 20);
    let zeros = vec![0u8; 8 << 20];
    let mut z = ZlibStream::new(cap, ceiling);
    let wire = ZlibEncoder::new().encode(&zeros);
    assert_eq!(z.push(&wire), Err(CodecError::Bomb { ceiling }));
    let mut z = ZstdStream::new(cap, ceiling).expect("decoder");
    let wire = ZstdEncoder::new()
        .expect("encoder")
        .encode(&zeros)
        .expect("encode");
    assert_eq!(z.push(&wire), Err(CodecError::Bomb { ceiling }));
    // Just below it, the same message is an oversized payload.
    let mut z = ZlibStream::new(cap, 9 << 20);
    let wire = ZlibEncoder::new().encode(&zeros);
    assert_eq!(z.push(&wire), Ok(Some(Frame::Oversized { size: 8 << 20 })));
}

#[test]
fn the_ceiling_is_eight_caps_and_at_least_256_mib() {
    assert_eq!(ceiling(64 * 1024), MIN_CEILING);
    assert_eq!(ceiling(32 << 20), 256 << 20);
    assert_eq!(ceiling(64 << 20), 512 << 20);
    assert_eq!(ceiling(usize::MAX), usize::MAX);
}
