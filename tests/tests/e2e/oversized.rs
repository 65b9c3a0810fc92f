//! Payloads larger than `discord.max_frame_bytes` (the README's Gateway behaviour) are dropped
//! with a warning; the session goes on, and the events after them arrive.

use std::time::{Duration, Instant};

use discord_bridge::codec::Compression;
use discord_bridge_e2e::POLL_INTERVAL;
use discord_bridge_e2e::stack::{Stack, StackOptions};
use discord_bridge_schemas::ShardState;

/// The smallest cap the configuration accepts.
const CAP: usize = 64 * 1024;

/// `len` characters that compress well (`repetitive`) or hardly at all.
fn filler(len: usize, repetitive: bool) -> String {
    if repetitive {
        return "x".repeat(len);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = xorshift(0x5eed);
    (0..len)
        .map(|_| {
            let i = usize::try_from(rng() % 62).expect("below 62");
            char::from(ALPHABET[i])
        })
        .collect()
}

/// A small xorshift generator: the e2e crate has no RNG dependency.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

async fn oversized_event_is_dropped(compression: Compression, size: usize, repetitive: bool) {
    let stack = Stack::start_with(StackOptions::with(move |c| {
        c.discord.compression = compression;
        c.discord.max_frame_bytes = CAP;
    }))
    .await;
    stack.wait_session(0).await;
    stack.guild_message("before");
    stack.wait_contents(&["before"]).await;

    stack.guild_message(&filler(size, repetitive));
    let last = stack.guild_message("after");
    // Wait with a diagnosis: a bridge that cannot read the payload loses the
    // connection and, since every RESUME replays it, never gets past it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.stored().await.len() < 2 {
        if Instant::now() > deadline {
            let conns = stack.sim.connections();
            let ends: Vec<_> = conns.iter().map(|c| c.closed.clone()).collect();
            panic!(
                "the event after the {size}-byte payload never arrived; {} connections, \
                 {} RESUMEs, {} IDENTIFYs; how they ended: {ends:#?}",
                conns.len(),
                stack.sim.resumes().len(),
                stack.sim.identifies().len()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let stored = stack.wait_contents(&["before", "after"]).await;
    assert_eq!(
        discord_bridge_e2e::jetstream::header(&stored[1], "Discord-Seq"),
        Some(last.to_string().as_str())
    );

    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 1, "the session goes on: {conns:#?}");
    assert!(conns[0].closed.is_none(), "{conns:#?}");
    let states: Vec<ShardState> = stack.statuses().iter().map(|e| e.state).collect();
    assert!(!states.contains(&ShardState::Disconnected), "{states:?}");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

#[tokio::test]
async fn oversized_compressible_payload_zlib() {
    oversized_event_is_dropped(Compression::ZlibStream, 100_000, true).await;
}

#[tokio::test]
async fn oversized_compressible_payload_zstd() {
    oversized_event_is_dropped(Compression::ZstdStream, 1_000_000, true).await;
}

#[tokio::test]
async fn oversized_payload_without_compression() {
    oversized_event_is_dropped(Compression::None, 100_000, true).await;
}

/// Several times the cap on the wire: still one payload to drop, not a
/// reason to lose the connection (a RESUME would replay it, forever).
#[tokio::test]
async fn far_oversized_payload_without_compression() {
    oversized_event_is_dropped(Compression::None, 4 * CAP, true).await;
}

#[tokio::test]
async fn far_oversized_incompressible_payload_zlib() {
    oversized_event_is_dropped(Compression::ZlibStream, 4 * CAP, false).await;
}
