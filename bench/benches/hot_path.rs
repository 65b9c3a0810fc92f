//! criterion microbenchmarks of the bridge's hot path, per event and per
//! MB, on the flood's busy-bot mix (80 % MESSAGE_CREATE, 10 % slash
//! commands, 10 % presence): inflate (zlib-stream, zstd-stream), envelope
//! decode, normalize, the whole machine per frame, and header build.
//!
//! `cargo bench -p discord-bridge-bench` (or `scripts/bench micro`).

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use discord_bridge::EventHeaders;
use discord_bridge::codec::{Compression, Decoder, Frame};
use discord_bridge::gateway::machine::{Action, Input, Machine, MachineConfig, Publish};
use discord_bridge::gateway::normalize::{self, Outcome};
use discord_bridge::gateway::{ShardId, payload};
use discord_bridge::secret::Secret;
use discord_gateway_sim::SimConfig;
use discord_gateway_sim::compress::{ZlibEncoder, ZstdEncoder};
use discord_gateway_sim::flood::busy_bot_mix;
use serde_json::value::RawValue;

/// Frames of the mix as the simulator writes them, seq 2 onwards.
fn frames(n: usize) -> Vec<String> {
    let mix = busy_bot_mix(&SimConfig::default(), 0, 1, 200);
    (0..n)
        .map(|i| {
            let e = &mix[i % mix.len()];
            format!(r#"{{"t":"{}","s":{},"op":0,"d":{}}}"#, e.t, i + 2, e.d)
        })
        .collect()
}

const N: usize = 2000;

fn inflate(c: &mut Criterion) {
    let frames = frames(N);
    let json: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let mut g = c.benchmark_group("inflate");
    let mut zlib = ZlibEncoder::new();
    let zlib_msgs: Vec<Vec<u8>> = frames.iter().map(|f| zlib.encode(f.as_bytes())).collect();
    let mut zstd = ZstdEncoder::new().unwrap();
    let zstd_msgs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| zstd.encode(f.as_bytes()).unwrap())
        .collect();
    for (name, compression, msgs) in [
        ("zlib-stream", Compression::ZlibStream, &zlib_msgs),
        ("zstd-stream", Compression::ZstdStream, &zstd_msgs),
    ] {
        // Bytes of JSON out: MB/s of decompressed payloads.
        g.throughput(Throughput::Bytes(json));
        g.bench_function(format!("{name} ({N} events)"), |b| {
            b.iter(|| {
                let mut d = Decoder::new(compression, 32 << 20).unwrap();
                for m in msgs {
                    if let Ok(Some(Frame::Payload(p))) = d.binary(m) {
                        black_box(p.len());
                    }
                }
            });
        });
        g.throughput(Throughput::Elements(N as u64));
        g.bench_function(format!("{name} per event"), |b| {
            b.iter(|| {
                let mut d = Decoder::new(compression, 32 << 20).unwrap();
                for m in msgs {
                    black_box(d.binary(m).is_ok());
                }
            });
        });
    }
    g.finish();
}

fn decode_and_normalize(c: &mut Criterion) {
    let frames = frames(N);
    let json: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("envelope per event", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(payload::decode(f.as_bytes()).is_ok());
            }
        });
    });
    g.throughput(Throughput::Bytes(json));
    g.bench_function("envelope MB/s", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(payload::decode(f.as_bytes()).is_ok());
            }
        });
    });
    let mix = busy_bot_mix(&SimConfig::default(), 0, 1, 200);
    let bodies: Vec<(String, Box<RawValue>)> = mix
        .iter()
        .map(|e| (e.t.clone(), RawValue::from_string(e.d.to_string()).unwrap()))
        .collect();
    let bytes: u64 = bodies.iter().map(|(_, d)| d.get().len() as u64).sum();
    g.throughput(Throughput::Elements(bodies.len() as u64));
    g.bench_function("normalize per event", |b| {
        b.iter(|| {
            for (t, d) in &bodies {
                black_box(matches!(
                    normalize::normalize(t, d, Some("1")),
                    Ok(Outcome::Relay(_))
                ));
            }
        });
    });
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("normalize MB/s", |b| {
        b.iter(|| {
            for (t, d) in &bodies {
                black_box(normalize::normalize(t, d, Some("1")).is_ok());
            }
        });
    });
    g.finish();
}

/// The machine per frame: decode, sequence bookkeeping, normalize, the
/// Publish action (the one-pass MESSAGE_CREATE path where it applies).
fn machine(c: &mut Criterion) {
    let frames = frames(N);
    let mut g = c.benchmark_group("machine");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("frame per event", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let mut m = live_machine();
                let mut out = Vec::with_capacity(8);
                let t0 = Instant::now();
                for f in &frames {
                    m.handle(t0, Input::Payload(f.as_bytes()), &mut out);
                    black_box(out.len());
                    out.clear();
                }
                total += t0.elapsed();
            }
            total
        });
    });
    g.finish();
}

fn live_machine() -> Machine {
    let now = std::time::Instant::now();
    let cfg = MachineConfig::new(
        ShardId::new(0, 1),
        Secret::new("t"),
        "wss://gateway.discord.gg".into(),
    );
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
    let ready = r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"session_id":"0123456789abcdef0123456789abcdef","resume_gateway_url":"wss://gateway-us-east1-b.discord.gg","user":{"id":"1","username":"bot","bot":true},"guilds":[],"shard":[0,1]}}"#;
    m.handle(now, Input::Payload(ready.as_bytes()), &mut out);
    assert!(m.is_live());
    m
}

fn headers(c: &mut Criterion) {
    let frames = frames(N);
    let mut m = live_machine();
    let now = std::time::Instant::now();
    let mut publishes: Vec<Publish> = Vec::new();
    let mut out = Vec::new();
    for f in &frames {
        m.handle(now, Input::Payload(f.as_bytes()), &mut out);
        for a in out.drain(..) {
            if let Action::Publish(p) = a {
                publishes.push(p);
            }
        }
    }
    let session: Arc<str> = Arc::clone(&publishes[0].session_id);
    assert!(
        publishes
            .iter()
            .all(|p| Arc::ptr_eq(&p.session_id, &session))
    );
    let mut g = c.benchmark_group("headers");
    g.throughput(Throughput::Elements(publishes.len() as u64));
    g.bench_function("build per event", |b| {
        let mut h = EventHeaders::new(ShardId::new(0, 1));
        b.iter(|| {
            for p in &publishes {
                black_box(h.build(p).is_ok());
            }
        });
    });
    g.finish();
}

criterion_group!(benches, inflate, decode_and_normalize, machine, headers);
criterion_main!(benches);
