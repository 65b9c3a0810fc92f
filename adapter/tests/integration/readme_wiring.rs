//! The wiring the README shows for astridd, through the same public API:
//! the start-up lines on the kernel's `Arc<EventBus>`, built before the
//! kernel loads its capsules, against a double of astridd's dispatcher and
//! kernel signals, across a capsule reload.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use crate::double::{Astridd, Kind};
use astrid_discord_adapter::{Adapter, AdapterConfig, AdapterHandle};
use astrid_events::EventBus;
use discord_bridge_e2e::eventually;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// README, "Wiring it into astridd", start-up.
async fn start_discord(
    event_bus: &Arc<EventBus>,
    nats_url: &str,
    shutdown: &CancellationToken,
) -> Result<AdapterHandle, BoxError> {
    let nats = async_nats::connect(nats_url).await?;
    let adapter = Adapter::new(nats, Arc::clone(event_bus), AdapterConfig::default())?;
    Ok(adapter.spawn(shutdown.child_token()))
}

#[tokio::test]
async fn the_readme_wiring_delivers_across_a_reload() {
    let (nats, js) = server_with_stream().await;
    let kernel_event_bus = Arc::new(EventBus::new());
    let astridd = Astridd::start(
        &kernel_event_bus,
        Kind::Handler {
            work: Duration::ZERO,
        },
        false,
    );
    let shutdown = CancellationToken::new();
    let discord = start_discord(&kernel_event_bus, &nats.url(), &shutdown)
        .await
        .expect("start-up");
    // Published before the kernel loaded the capsule: held.
    publish(&js, 1).await;
    wait_consumer(&js, "event 1 held until the capsule is loaded", |i| {
        i.num_ack_pending == 1
    })
    .await;
    astridd.load().await;
    let numbers = || astridd.processed().iter().map(|p| p.n).collect::<Vec<_>>();
    eventually(WAIT, "event 1 handled", || {
        let done = numbers() == [1];
        async move { done.then_some(()) }
    })
    .await;

    // A reload: unload, an event meanwhile, load.
    astridd.unload().await;
    publish(&js, 2).await;
    wait_consumer(&js, "event 2 held during the reload", |i| {
        i.num_ack_pending == 1
    })
    .await;
    astridd.load().await;
    eventually(WAIT, "event 2 handled after the reload", || {
        let seen = numbers();
        async move { seen.contains(&2).then_some(seen) }
    })
    .await;
    wait_all_acked(&js, 2).await;
    let seen = numbers();
    assert_eq!(seen.iter().filter(|n| **n == 2).count(), 1, "{seen:?}");
    // Event 1 may come again (it was handed over within the replay window
    // before the unload): counted, and with its payload.id.
    assert!(
        seen.len() as u64 - 2 <= discord.stats().redelivered,
        "{seen:?}"
    );

    // The daemon's shutdown token stops the adapter cleanly.
    shutdown.cancel();
    tokio::time::timeout(WAIT, discord.join())
        .await
        .expect("stops in time")
        .expect("clean shutdown");
}
