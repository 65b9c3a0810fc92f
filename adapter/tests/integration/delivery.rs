//! Delivery onto a real `EventBus` from a real nats-server: the exact IPC
//! shape, what counts as a listener, bad input, duplicates.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use astrid_discord_adapter::EVENT_SOURCE;
use astrid_events::{EventBus, IpcPayload};
use discord_bridge_e2e::{NatsServer, eventually};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn emits_the_exact_ipc_shape_and_acks_after_delivery() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let config = leased();
    let source_id = config.source_id();
    let adapter = adapter(&nats, &bus, config).await;
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());

    let published = message_event(1);
    let seq = publish_raw(&js, "sess", 1, published.to_string().into_bytes()).await;
    let event = next_event(&mut capsule).await;

    let metadata = event.metadata();
    assert_eq!(metadata.source, EVENT_SOURCE);
    assert_eq!(metadata.source, "discord-gateway");
    assert_eq!(
        metadata.correlation_id, None,
        "live events carry no replay id"
    );
    let message = ipc(&event);
    assert_eq!(message.topic.as_str(), "astrid-discord.agent.events");
    assert_eq!(message.source_id, source_id);
    assert_ne!(message.source_id, Uuid::nil());
    assert_eq!(message.principal, None, "a system event");
    assert_eq!(message.signature, None);
    assert_eq!(
        message.payload,
        IpcPayload::Custom {
            data: published.clone()
        }
    );
    // What the capsule reads is the JSON the bridge published.
    let guest: Value =
        serde_json::from_slice(&message.payload.to_guest_bytes().expect("serializable"))
            .expect("JSON");
    assert_eq!(guest, published);

    wait_all_acked(&js, seq).await;
    assert_eq!(handle.stats().delivered, 1);
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn only_a_listener_of_the_topic_counts() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, config(Duration::from_secs(30))).await;
    // A registered listener of another topic, and subscribers of this topic
    // the adapter knows nothing about: `EventBus::publish` would count the
    // broadcast ones as receivers, but none is a registered listener.
    let _other = adapter.listeners().subscribe_routed(
        &bus,
        Uuid::new_v4(),
        "astrid-discord.agent.cancel",
        "astrid-discord",
        "capsule_guest",
    );
    let mut everything = bus.subscribe();
    let mut unregistered = bus.subscribe_topic(SUBJECT);
    let handle = adapter.spawn(CancellationToken::new());

    let seq = publish(&js, 1).await;
    wait_consumer(&js, "the event to be held unacked", |i| {
        i.num_ack_pending == 1 && i.num_pending == 0 && i.ack_floor.stream_sequence == 0
    })
    .await;
    eventually(WAIT, "the adapter to report the held event", || async {
        (handle.stats().held == 1).then_some(())
    })
    .await;
    assert!(
        everything.try_recv().is_none(),
        "nothing is published while held"
    );
    assert!(unregistered.try_recv().is_none());
    assert_eq!(handle.stats().delivered, 0);

    let mut capsule = capsule(handle.listeners(), &bus);
    assert_eq!(next_number(&mut capsule).await, 1);
    wait_all_acked(&js, seq).await;
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_input_is_terminated_and_does_not_block_the_stream() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());

    publish_raw(
        &js,
        "sess",
        1,
        b"{\"type\": \"message\", truncated".to_vec(),
    )
    .await;
    let seq = publish(&js, 2).await;
    assert_eq!(next_number(&mut capsule).await, 2);
    wait_all_acked(&js, seq).await;
    let stats = handle.stats();
    assert_eq!((stats.rejected, stats.delivered), (1, 1));
    assert_eq!(
        consumer_info(&js).await.num_redelivered,
        0,
        "terminated, not redelivered"
    );
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_dispatch_published_twice_is_emitted_once() {
    init_tracing();
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    // A tiny duplicate window: the second publication of `sess:1` is stored
    // again, as it would be when a RESUME replays it minutes later.
    create_stream(&js, Duration::from_millis(100)).await;
    let first = publish(&js, 1).await;
    let again = eventually(WAIT, "the duplicate to be stored", || async {
        let seq = publish(&js, 1).await;
        (seq != first).then_some(seq)
    })
    .await;
    let last = publish(&js, 2).await;
    assert!(first < again && again < last);

    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());

    assert_eq!(next_numbers(&mut capsule, 2).await, [1, 2]);
    wait_all_acked(&js, last).await;
    let stats = handle.stats();
    assert_eq!((stats.delivered, stats.duplicates), (2, 1), "{stats:?}");
    assert!(capsule.try_recv_one().is_none());
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn gateway_status_is_relayed_onto_the_bus() {
    let (nats, _js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let handle = adapter.spawn(CancellationToken::new());
    let mut status = bus.subscribe_topic("astrid-discord.gateway.status");
    let client = nats.client().await;
    let body = serde_json::json!({"shard": [0, 1], "state": "ready"});
    // The relay subscribes once it runs: publish until it has.
    let got = eventually(WAIT, "a status message on the bus", || {
        let client = client.clone();
        let payload = body.to_string();
        let got = status.try_recv();
        async move {
            if got.is_none() {
                client
                    .publish("astrid-discord.gateway.status", payload.into())
                    .await
                    .expect("publish");
            }
            got
        }
    })
    .await;
    let message = ipc(&got);
    assert_eq!(message.topic.as_str(), "astrid-discord.gateway.status");
    assert_eq!(message.payload, IpcPayload::Custom { data: body });
    assert!(handle.stats().status_relayed >= 1);
    handle.shutdown().await.expect("clean shutdown");
}
