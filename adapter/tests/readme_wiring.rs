//! The wiring the README shows for astridd, through the same public API:
//! start-up lines on the kernel's `Arc<EventBus>`, and the lease the capsule
//! host keeps beside a capsule's routed subscription (the principal-runtime
//! kind astridd creates, which admits system events).

mod common;

use std::sync::Arc;

use astrid_discord_adapter::{Adapter, AdapterConfig, AdapterHandle, ListenerLease, Listeners};
use astrid_events::{EventBus, RoutedEventReceiver};
use common::*;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// README, "Wiring it into astridd", start-up.
async fn start_discord(
    event_bus: &Arc<EventBus>,
    nats_url: &str,
    shutdown: &CancellationToken,
) -> Result<(AdapterHandle, Listeners), BoxError> {
    let nats = async_nats::connect(nats_url).await?;
    let adapter = Adapter::new(nats, Arc::clone(event_bus), AdapterConfig::default())?;
    let listeners = adapter.listeners().clone();
    let discord = adapter.spawn(shutdown.child_token());
    Ok((discord, listeners))
}

/// README, "Wiring it into astridd", the capsule host's subscription entry:
/// the lease is declared first so it is dropped before the receiver.
struct SubscriptionEntry {
    _lease: ListenerLease,
    receiver: RoutedEventReceiver,
}

fn host_subscribe(
    bus: &EventBus,
    listeners: &Listeners,
    capsule_uuid: Uuid,
    principal: &str,
    topic_pattern: String,
) -> SubscriptionEntry {
    let receiver = bus.subscribe_topic_routed_principal_or_system(
        capsule_uuid,
        topic_pattern.clone(),
        "astrid-discord",
        "capsule_guest",
        principal,
    );
    let lease = listeners.lease(topic_pattern);
    SubscriptionEntry {
        _lease: lease,
        receiver,
    }
}

#[tokio::test]
async fn the_readme_wiring_delivers_to_every_principal_runtime() {
    let (nats, js) = server_with_stream().await;
    let kernel_event_bus = Arc::new(EventBus::new());
    let shutdown = CancellationToken::new();
    let (discord, listeners) = start_discord(&kernel_event_bus, &nats.url(), &shutdown)
        .await
        .expect("start-up");

    let capsule = Uuid::new_v4();
    let topic = "astrid-discord.agent.events".to_owned();
    let mut alice = host_subscribe(
        &kernel_event_bus,
        &listeners,
        capsule,
        "alice",
        topic.clone(),
    );
    let mut bob = host_subscribe(&kernel_event_bus, &listeners, capsule, "bob", topic.clone());
    publish(&js, 1).await;
    assert_eq!(next_number(&mut alice.receiver).await, 1);
    assert_eq!(next_number(&mut bob.receiver).await, 1);

    // A capsule reload: both runtimes' subscriptions go, then come back.
    drop((alice, bob));
    publish(&js, 2).await;
    wait_consumer(&js, "event 2 held during the reload", |i| {
        i.num_ack_pending == 1
    })
    .await;
    let mut alice = host_subscribe(&kernel_event_bus, &listeners, capsule, "alice", topic);
    assert_eq!(next_number(&mut alice.receiver).await, 2);
    wait_all_acked(&js, 2).await;

    // The daemon's shutdown token stops the adapter cleanly.
    shutdown.cancel();
    tokio::time::timeout(WAIT, discord.join())
        .await
        .expect("stops in time")
        .expect("clean shutdown");
}
