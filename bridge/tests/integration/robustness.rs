//! No input from the network can panic the bridge: random bytes and mutated
//! real frames through the transport decoders, the payload decoder and the
//! session machine, and random sequences of every input the machine takes.
//! Seeded, so a failure reproduces. The property tests beside the modules
//! (`prop_tests` in `codec`, `gateway::payload`, `gateway::normalize` and
//! `config::tests`) check the decoders' and the normalizer's results as well.

use std::time::{Duration, Instant};

use discord_bridge::codec::{Compression, Decoder, Frame};
use discord_bridge::gateway::machine::{Action, Input, Machine, MachineConfig};
use discord_bridge::gateway::{ShardId, payload};
use discord_bridge::secret::Secret;
use discord_gateway_sim::compress::{ZlibEncoder, ZstdEncoder};

const FRAMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/corpus/frames");

fn corpus() -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = std::fs::read_dir(FRAMES)
        .expect("corpus")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("frame"))
        .collect();
    frames.sort();
    frames
}

/// A random edit of `frame`: flipped bytes, a cut, a splice, or junk.
fn mutate(rng: &mut fastrand::Rng, frame: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = frame.to_vec();
    match rng.u8(0..5) {
        0 => {
            for _ in 0..rng.usize(1..8) {
                if !out.is_empty() {
                    let i = rng.usize(0..out.len());
                    out[i] = rng.u8(..);
                }
            }
        }
        1 => out.truncate(rng.usize(0..=out.len())),
        2 => {
            let other = &others[rng.usize(0..others.len())];
            let cut = rng.usize(0..=out.len());
            let from = rng.usize(0..=other.len());
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        3 => {
            // Swap a JSON scalar for a value of another type.
            let text = String::from_utf8_lossy(&out).into_owned();
            let junk = [
                "null",
                "[]",
                "{}",
                "\"x\"",
                "-1",
                "1e999",
                "true",
                "18446744073709551616",
                "18446744073709551615",
                "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                "\"a\\r\\nb\"",
            ];
            let pick = junk[rng.usize(0..junk.len())];
            out = text
                .replacen("\"MESSAGE_CREATE\"", pick, 1)
                .replacen("0,", &format!("{pick},"), 1)
                .into_bytes();
        }
        _ => out = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
    }
    out
}

fn live_machine(now: Instant) -> Machine {
    let mut cfg = MachineConfig::new(
        ShardId::new(0, 1),
        Secret::new("t"),
        "wss://gateway.discord.gg".into(),
    );
    cfg.seed = 1;
    let mut m = Machine::new(cfg);
    let mut out = Vec::new();
    m.handle(now, Input::Start, &mut out);
    m.handle(now, Input::Opened, &mut out);
    m.handle(
        now,
        Input::Payload(br#"{"op":10,"d":{"heartbeat_interval":41250}}"#),
        &mut out,
    );
    m.handle(now, Input::IdentifyPermit, &mut out);
    m.handle(
        now,
        Input::Payload(
            br#"{"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"wss://gateway.discord.gg","user":{"id":"1"}}}"#,
        ),
        &mut out,
    );
    assert!(m.is_live());
    m
}

#[test]
fn mutated_frames_never_panic_the_decoder_or_the_machine() {
    let frames = corpus();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let now = Instant::now();
    let mut machine = live_machine(now);
    let mut out = Vec::new();
    for round in 0..20_000 {
        let base = &frames[round % frames.len()];
        let bytes = mutate(&mut rng, base, &frames);
        let _ = payload::decode(&bytes);
        machine.handle(now, Input::Payload(&bytes), &mut out);
        if !machine.is_live() {
            machine = live_machine(now);
        }
        out.clear();
    }
}

#[test]
fn random_bytes_never_panic_the_transport_decoders() {
    let mut rng = fastrand::Rng::with_seed(7);
    let frames = corpus();
    for compression in [
        Compression::ZlibStream,
        Compression::ZstdStream,
        Compression::None,
    ] {
        for _ in 0..200 {
            let mut decoder = Decoder::new(compression, 1 << 16).expect("decoder");
            // Valid compressed frames, then garbage, then more frames.
            let mut zlib = ZlibEncoder::new();
            let mut zstd = ZstdEncoder::new().expect("zstd");
            for step in 0..rng.usize(1..12) {
                let frame = &frames[rng.usize(0..frames.len())];
                let wire = match (compression, step % 3 == 2) {
                    (_, true) => mutate(&mut rng, frame, &frames),
                    (Compression::ZlibStream, false) => zlib.encode(frame),
                    (Compression::ZstdStream, false) => zstd.encode(frame).expect("encode"),
                    (Compression::None, false) => frame.clone(),
                };
                match decoder.binary(&wire) {
                    Ok(Some(Frame::Payload(p))) => {
                        let _ = payload::decode(p);
                    }
                    Ok(_) => {}
                    // A corrupt stream resets the connection: a new context.
                    Err(_) => decoder = Decoder::new(compression, 1 << 16).expect("decoder"),
                }
                let _ = decoder.text(&wire);
            }
        }
    }
}

#[test]
fn random_input_sequences_keep_the_machine_consistent() {
    let frames = corpus();
    let mut rng = fastrand::Rng::with_seed(42);
    for _ in 0..300 {
        let mut cfg = MachineConfig::new(
            ShardId::new(0, 1),
            Secret::new("t"),
            "wss://gateway.discord.gg".into(),
        );
        cfg.seed = rng.u64(..);
        let mut m = Machine::new(cfg);
        let mut now = Instant::now();
        let mut out: Vec<Action> = Vec::new();
        m.handle(now, Input::Start, &mut out);
        for _ in 0..200 {
            let frame;
            let input = match rng.u8(0..14) {
                0 => Input::Opened,
                1 => Input::ConnectFailed { error: "x".into() },
                2 => Input::Closed {
                    code: [
                        None,
                        Some(1000),
                        Some(4000),
                        Some(4007),
                        Some(4009),
                        Some(4004),
                        Some(4014),
                    ][rng.usize(0..7)],
                    reason: String::new(),
                },
                3 => Input::Tick,
                4 => Input::IdentifyPermit,
                5 => Input::Acked {
                    epoch: rng.u64(0..3),
                    seq: rng.u64(0..50),
                },
                6 => Input::PublishRejected {
                    epoch: rng.u64(0..3),
                    seq: rng.u64(0..50),
                },
                7 => Input::PublisherReady,
                8 => Input::Oversized {
                    size: rng.usize(..),
                },
                9 => Input::StreamCorrupt { error: "x".into() },
                10 => {
                    frame = format!(
                        r#"{{"op":0,"s":{},"t":"MESSAGE_CREATE","d":{{"id":"1","channel_id":"2","author":{{"id":"3","username":"u"}},"content":"c"}}}}"#,
                        // Now and then a sequence at the end of the range.
                        if rng.u8(0..20) == 0 {
                            u64::MAX - rng.u64(0..2)
                        } else {
                            rng.u64(0..60)
                        }
                    );
                    Input::Payload(frame.as_bytes())
                }
                11 => {
                    frame = [
                        r#"{"op":10,"d":{"heartbeat_interval":1000}}"#,
                        r#"{"op":11}"#,
                        r#"{"op":7}"#,
                        r#"{"op":9,"d":true}"#,
                        r#"{"op":9,"d":false}"#,
                        r#"{"op":1}"#,
                        r#"{"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"wss://gateway.discord.gg","user":{"id":"1"}}}"#,
                        r#"{"op":0,"s":9,"t":"RESUMED","d":{}}"#,
                        r#"{"op":10,"d":{"heartbeat_interval":18446744073709551615}}"#,
                        r#"{"op":10,"d":{"heartbeat_interval":600001}}"#,
                    ][rng.usize(0..10)]
                        .to_owned();
                    Input::Payload(frame.as_bytes())
                }
                12 => {
                    frame =
                        String::from_utf8_lossy(&frames[rng.usize(0..frames.len())]).into_owned();
                    Input::Payload(frame.as_bytes())
                }
                _ => {
                    now += Duration::from_millis(rng.u64(0..90_000));
                    Input::Tick
                }
            };
            m.handle(now, input, &mut out);
            // Invariants: a stopped machine asks for nothing; a deadline is
            // never far in the past for a machine that was just ticked.
            if m.is_stopped() {
                assert_eq!(m.next_deadline(), None);
            }
            out.clear();
        }
        if rng.bool() {
            let was_stopped = m.is_stopped();
            m.handle(now, Input::Shutdown, &mut out);
            assert!(m.is_stopped());
            // A shard already stopped (a fatal close) reported its stop then.
            assert_eq!(
                out.iter().any(|a| matches!(a, Action::Stop(_))),
                !was_stopped
            );
        }
    }
}
