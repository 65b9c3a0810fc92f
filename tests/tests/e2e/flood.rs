//! Flow control (the README's Delivery guarantees): a burst while NATS is
//! healthy never closes the gateway. The simulator writes a flood into the
//! socket as fast as the bridge reads; with a small buffer the shard pauses
//! reading (TCP back-pressure) instead of reconnecting, and every event is
//! stored exactly once. Only a NATS that is down or makes no progress with
//! the buffer full leads to the resumable close. No timing is asserted.

use std::time::Duration;

use discord_bridge_e2e::jetstream::header;
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT, assert_exactly_once, test_sim_config};
use discord_bridge_schemas::header as h;
use discord_gateway_sim::flood::busy_bot_mix;
use discord_gateway_sim::{Closer, Flood, FloodReport, SimConfig};

const EVENTS: u64 = 3000;

/// The seqs of a flood's events that become agent events (presence updates
/// are not relayed).
fn relayed(report: &FloodReport, flood: &Flood) -> Vec<u64> {
    let (first, last) = report.seqs.expect("the flood wrote dispatches");
    (first..=last)
        .filter(|seq| {
            let n = usize::try_from(seq - first).expect("small");
            flood.events[n % flood.events.len()].t != "PRESENCE_UPDATE"
        })
        .collect()
}

fn stored_seqs(stored: &[async_nats::jetstream::message::StreamMessage]) -> Vec<u64> {
    stored
        .iter()
        .map(|m| header(m, h::SEQ).expect("seq").parse().expect("a number"))
        .collect()
}

async fn flood_through(
    sim: SimConfig,
    tweak: impl FnOnce(&mut discord_bridge::config::Config) + Send + 'static,
) {
    let mut options = StackOptions::with(tweak);
    options.sim = sim;
    let mut stack = Stack::start_with(options).await;
    stack.wait_session(0).await;
    let flood = Flood {
        events: busy_bot_mix(stack.sim.config(), 0, 1, 50),
        count: EVENTS,
        rate: None,
        record_times: false,
    };
    let handle = stack.sim.flood(0, flood.clone()).expect("a connection");
    let report = handle
        .finished(WAIT * 3)
        .await
        .expect("the bridge read the whole flood");
    assert!(!report.aborted, "{report:?}");
    assert_eq!(report.written, EVENTS);
    let expected = relayed(&report, &flood);
    let stored = stack.wait_stored(expected.len()).await;
    assert_exactly_once(&stored);
    assert_eq!(stored_seqs(&stored), expected, "every event once, in order");
    // One connection from start to end: no close, no RESUME.
    let connections = stack.sim.connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert!(connections[0].closed.is_none(), "{connections:?}");
    assert!(stack.sim.resumes().is_empty());
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
    assert!(
        stack
            .statuses()
            .iter()
            .all(|e| e.reason.as_deref() != Some("nats_backpressure")),
        "no close for NATS"
    );
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_flood_into_a_small_buffer_pauses_reading_and_never_reconnects() {
    flood_through(test_sim_config(), |c| {
        c.nats.buffer_events = 64;
        // One ack at a time: NATS is slower than the socket, so the buffer
        // fills again and again.
        c.nats.max_inflight = 1;
    })
    .await;
}

#[tokio::test]
async fn heartbeats_go_on_while_reading_is_paused() {
    // Heartbeats far more often than the flood's pauses: a paused shard
    // must neither miss a beat nor judge its unread ACKs a zombie.
    let sim = SimConfig {
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Some(Duration::from_millis(1500)),
        ..test_sim_config()
    };
    flood_through(sim, |c| {
        c.nats.buffer_events = 16;
        c.nats.max_inflight = 1;
        c.discord.compression = discord_bridge::codec::Compression::ZstdStream;
    })
    .await;
}

#[tokio::test]
async fn a_stalled_nats_with_a_full_buffer_closes_resumably_after_the_stall_timeout() {
    let mut stack = Stack::start_with(StackOptions::with(|c| {
        c.nats.buffer_events = 8;
        c.nats.stall_timeout = Duration::from_secs(1);
        c.nats.ack_timeout = Duration::from_secs(30);
    }))
    .await;
    stack.wait_session(0).await;
    let first = stack.guild_message("before the stall");
    stack.wait_stored(1).await;
    // NATS stops answering but keeps its connections: no ack, no error.
    stack.nats.pause();
    let mut expected = vec![first];
    for i in 0..20 {
        expected.push(stack.guild_message(&format!("during the stall {i}")));
    }
    let closed = stack
        .wait_sim(|s| {
            s.connections.values().find_map(|c| {
                c.closed
                    .as_ref()
                    .filter(|x| x.by == Closer::Client)
                    .map(|x| x.code)
            })
        })
        .await;
    assert_eq!(closed, Some(4000), "a resumable close");
    // Status events travel through NATS too: thaw it to read them.
    stack.nats.resume();
    let stall = stack
        .wait_status("a nats_backpressure status", |e| {
            e.reason.as_deref() == Some("nats_backpressure")
        })
        .await;
    assert!(
        stall.detail.contains("no publish acknowledged"),
        "{}",
        stall.detail
    );
    assert_eq!(stall.will_resume, Some(true));
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert!(resume.seq >= first, "{resume:?}");
    expected.push(stack.guild_message("after the stall"));
    let stored = stack.wait_stored(expected.len()).await;
    assert_exactly_once(&stored);
    assert_eq!(stored_seqs(&stored), expected);
    stack.stop_bridge().await.expect("clean shutdown");
}
