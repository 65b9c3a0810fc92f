//! Capsule reloads in astridd as it really behaves (the double in
//! `tests/double`), with events flowing: for every capsule kind and reload
//! kind, nothing is lost, duplicates stay within the replay window, and
//! each generation gets events in stream order apart from one rewind per
//! replay. Plus backpressure from a full capsule queue and a shutdown with
//! a reservation pending.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use astrid_discord_adapter::{AdapterConfig, Stats};
use astrid_events::EventBus;
use discord_bridge_e2e::eventually;
use tokio_util::sync::CancellationToken;

use crate::common::*;
use crate::double::{Astridd, Kind, Processed, QUEUE};

/// Events per second the bridge publishes during a scenario.
const RATE: u64 = 300;
/// Events per scenario: the publisher outlasts the reloads.
const EVENTS: u64 = 1_500;
const RELOADS: usize = 10;
/// How often a run-loop capsule polls (the Discord capsule: every second;
/// shorter here to keep the tests short).
const POLL: Duration = Duration::from_millis(100);
/// The replay window: the poll interval plus margin.
const WINDOW: Duration = Duration::from_millis(300);
/// The double's health-check period.
const HEALTH: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    /// `restart_capsule` through `reload_one_capsule`.
    Atomic,
    /// `unload_one_capsule`, 100–300 ms, `load_capsule`.
    UnloadThenLoad,
    /// A crash, found by the health monitor, restarted atomically.
    Crash,
}

fn scenario_config(acks: bool) -> AdapterConfig {
    AdapterConfig {
        replay_window: WINDOW,
        health_check_interval: HEALTH,
        restart_hold: Duration::from_millis(150),
        capsule_acks: acks,
        ..AdapterConfig::default()
    }
}

/// Publishes `count` events at `RATE`, numbered from 1.
async fn publish_paced(js: async_nats::jetstream::Context, count: u64) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    for n in 1..=count {
        tick.tick().await;
        publish(&js, n).await;
    }
}

/// Times a generation's event numbers go down (a replay rewinding).
fn rewinds(processed: &[Processed]) -> u64 {
    let mut by_generation: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for p in processed {
        by_generation.entry(p.generation).or_default().push(p.n);
    }
    by_generation
        .values()
        .map(|ns| ns.windows(2).filter(|w| w[1] < w[0]).count() as u64)
        .sum()
}

/// Runs one scenario and checks what the README's table promises.
async fn scenario(kind: Kind, reload: Reload, acks: bool) -> Stats {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let mut astridd = Astridd::start(&bus, kind, acks);
    astridd.health_interval = HEALTH;
    // Wired as the README shows: built before the kernel loads capsules.
    let adapter = adapter(&nats, &bus, scenario_config(acks)).await;
    let handle = adapter.spawn(CancellationToken::new());
    astridd.load().await;

    let publisher = tokio::spawn(publish_paced(js.clone(), EVENTS));
    let mut gap = 100;
    for _ in 0..RELOADS {
        tokio::time::sleep(Duration::from_millis(150)).await;
        match reload {
            Reload::Atomic => astridd.restart(true).await,
            Reload::UnloadThenLoad => {
                astridd.unload().await;
                // Traffic pacing: the time a reload keeps the capsule away.
                tokio::time::sleep(Duration::from_millis(gap)).await;
                gap = if gap >= 300 { 100 } else { gap + 50 };
                astridd.load().await;
            }
            Reload::Crash => astridd.crash().await,
        }
    }
    publisher.await.expect("publisher");

    eventually(Duration::from_secs(30), "every event processed", || {
        let seen: BTreeSet<u64> = astridd.processed().iter().map(|p| p.n).collect();
        let complete = seen.len() as u64 == EVENTS;
        async move { complete.then_some(()) }
    })
    .await;
    wait_all_acked(&js, EVENTS).await;

    let processed = astridd.processed();
    let stats = handle.stats();
    let duplicates = processed.len() as u64 - EVENTS;
    let report = format!(
        "{kind:?} {reload:?} acks={acks}: {} processed, {duplicates} duplicates, {} rewinds, {stats:?}",
        processed.len(),
        rewinds(&processed)
    );
    tracing::info!("{report}");
    assert!(duplicates <= stats.redelivered, "{report}");
    assert!(stats.replays <= 2 * RELOADS as u64 + 1, "{report}");
    // Reloads here come closer together than the window, so a replay also
    // covers the short-lived generations before: bounded by the window, not
    // by the event rate (see `spaced_reloads_replay_one_window_each`).
    assert!(
        stats.redelivered <= stats.replays * stats.largest_replay,
        "{report}"
    );
    assert!(rewinds(&processed) <= stats.replays, "{report}");
    assert_eq!(stats.delivered, EVENTS, "{report}");
    if acks {
        assert_eq!(stats.capsule_acked, EVENTS, "{report}");
    }
    if reload == Reload::UnloadThenLoad {
        // The replay comes before anything live: every generation in order.
        assert_eq!(rewinds(&processed), 0, "{report}");
    }
    handle.shutdown().await.expect("clean shutdown");
    stats
}

const HANDLER: Kind = Kind::Handler {
    work: Duration::ZERO,
};
const POLLING: Kind = Kind::Polling { every: POLL };

#[tokio::test]
async fn handler_atomic_restart() {
    scenario(HANDLER, Reload::Atomic, false).await;
}

#[tokio::test]
async fn handler_unload_then_load() {
    let stats = scenario(HANDLER, Reload::UnloadThenLoad, false).await;
    assert!(stats.replays >= 1, "reloads are seen: {stats:?}");
}

#[tokio::test]
async fn handler_crash() {
    let stats = scenario(HANDLER, Reload::Crash, false).await;
    assert!(
        stats.redelivered > 0,
        "a crash loses events that only the replay brings back: {stats:?}"
    );
}

#[tokio::test]
async fn polling_atomic_restart() {
    let stats = scenario(POLLING, Reload::Atomic, false).await;
    assert!(
        stats.redelivered > 0,
        "the retired routes held events: {stats:?}"
    );
}

#[tokio::test]
async fn polling_unload_then_load() {
    scenario(POLLING, Reload::UnloadThenLoad, false).await;
}

#[tokio::test]
async fn polling_crash() {
    scenario(POLLING, Reload::Crash, false).await;
}

#[tokio::test]
async fn handler_with_capsule_acks() {
    for reload in [Reload::Atomic, Reload::UnloadThenLoad, Reload::Crash] {
        scenario(HANDLER, reload, true).await;
    }
}

#[tokio::test]
async fn polling_with_capsule_acks() {
    for reload in [Reload::Atomic, Reload::UnloadThenLoad, Reload::Crash] {
        scenario(POLLING, reload, true).await;
    }
}

/// Reloads further apart than the window replay at most one window of
/// traffic each (plus a queue's worth of slack).
#[tokio::test]
async fn spaced_reloads_replay_one_window_each() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let astridd = Astridd::start(&bus, POLLING, false);
    let adapter = adapter(&nats, &bus, scenario_config(false)).await;
    let handle = adapter.spawn(CancellationToken::new());
    astridd.load().await;
    let total = 900;
    let publisher = tokio::spawn(publish_paced(js.clone(), total));
    for _ in 0..3 {
        // Traffic pacing: longer than the window between reloads.
        tokio::time::sleep(WINDOW * 2).await;
        astridd.restart(true).await;
    }
    publisher.await.expect("publisher");
    eventually(Duration::from_secs(30), "every event processed", || {
        let seen: BTreeSet<u64> = astridd.processed().iter().map(|p| p.n).collect();
        let complete = seen.len() as u64 == total;
        async move { complete.then_some(()) }
    })
    .await;
    let stats = handle.stats();
    let one_window = (RATE as f64 * WINDOW.as_secs_f64()) as u64 + QUEUE as u64;
    assert_eq!(stats.replays, 3, "{stats:?}");
    assert!(stats.largest_replay <= one_window, "{stats:?}");
    let duplicates = astridd.processed().len() as u64 - total;
    assert!(
        duplicates <= 3 * one_window,
        "{duplicates} duplicates, {stats:?}"
    );
    handle.shutdown().await.expect("clean shutdown");
}

/// A slow capsule fills its queue: the adapter waits in the reserved lane
/// instead of dropping, commits at most a queue's worth ahead of the
/// capsule, and everything arrives once, in order.
#[tokio::test]
async fn a_full_capsule_queue_holds_the_adapter_back() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let astridd = Astridd::start(
        &bus,
        Kind::Handler {
            work: Duration::from_millis(2),
        },
        false,
    );
    let adapter = adapter(&nats, &bus, scenario_config(false)).await;
    let handle = adapter.spawn(CancellationToken::new());
    astridd.load().await;
    let total = 400;
    for n in 1..=total {
        publish(&js, n).await;
    }
    eventually(Duration::from_secs(30), "all processed", || {
        let done = astridd.processed().len() as u64;
        let delivered = handle.stats().delivered;
        assert!(
            delivered <= done + QUEUE as u64 + 1,
            "committed {delivered} with {done} processed: more than a queue ahead"
        );
        async move { (done == total).then_some(()) }
    })
    .await;
    let ns: Vec<u64> = astridd.processed().iter().map(|p| p.n).collect();
    assert_eq!(ns, (1..=total).collect::<Vec<_>>(), "once each, in order");
    assert_eq!(astridd.dropped(), 0, "the reserved lane never drops");
    wait_all_acked(&js, total).await;
    handle.shutdown().await.expect("clean shutdown");
}

/// Shutdown while a reservation waits for a stalled capsule: what was
/// committed is acked, nothing else, and the next instance delivers the
/// rest exactly once.
#[tokio::test]
async fn shutdown_with_a_pending_reservation_acks_nothing_uncommitted() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let astridd = Astridd::start(&bus, HANDLER, false);
    let cfg = AdapterConfig {
        ack_wait: Duration::from_secs(120),
        ..scenario_config(false)
    };
    let first = adapter(&nats, &bus, cfg.clone()).await;
    let first = first.spawn(CancellationToken::new());
    astridd.load().await;
    astridd.stall();
    let total = 100;
    for n in 1..=total {
        publish(&js, n).await;
    }
    // The queue (64) is full and one invocation waits: the adapter's next
    // reservation is pending.
    eventually(Duration::from_secs(20), "the capsule queue full", || {
        let delivered = first.stats().delivered;
        async move { (delivered == QUEUE as u64 + 1).then_some(()) }
    })
    .await;
    first.shutdown().await.expect("clean shutdown");
    let info = consumer_info(&js).await;
    assert_eq!(
        info.ack_floor.stream_sequence,
        QUEUE as u64 + 1,
        "only committed events are acked"
    );

    astridd.release();
    let second = adapter(
        &nats,
        &bus,
        AdapterConfig {
            assume_loaded_at_start: true,
            ..cfg
        },
    )
    .await;
    let second = second.spawn(CancellationToken::new());
    eventually(Duration::from_secs(20), "all processed", || {
        let done = astridd.processed().len() as u64;
        async move { (done >= total).then_some(()) }
    })
    .await;
    wait_all_acked(&js, total).await;
    let ns: Vec<u64> = astridd.processed().iter().map(|p| p.n).collect();
    assert_eq!(ns, (1..=total).collect::<Vec<_>>(), "once each, in order");
    second.shutdown().await.expect("clean shutdown");
}
