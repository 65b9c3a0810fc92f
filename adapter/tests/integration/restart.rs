//! The adapter keeps its place: across its own restart (clean or a crash),
//! across a nats-server restart, and when it starts before the stream.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use astrid_discord_adapter::{Adapter, AdapterConfig};
use astrid_events::EventBus;
use discord_bridge_e2e::NatsServer;
use tokio_util::sync::CancellationToken;

/// Longer than any test waits: an event that comes back only after
/// `ack_wait` fails the test.
const LONG_ACK_WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_clean_restart_continues_from_the_durable_consumer() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    // Without the crash rewind: the clean shutdown alone must hand the held
    // events back.
    let cfg = AdapterConfig {
        reset_orphans_on_start: false,
        ..config(LONG_ACK_WAIT)
    };

    let first = adapter(&nats, &bus, cfg.clone()).await;
    let mut capsule_v1 = capsule(first.listeners(), &bus);
    let first = first.spawn(CancellationToken::new());
    publish(&js, 1).await;
    publish(&js, 2).await;
    assert_eq!(next_numbers(&mut capsule_v1, 2).await, [1, 2]);
    drop(capsule_v1);
    publish(&js, 3).await;
    publish(&js, 4).await;
    wait_consumer(&js, "3 and 4 held", |i| i.num_ack_pending == 2).await;
    first.shutdown().await.expect("clean shutdown");
    publish(&js, 5).await;

    let second = adapter(&nats, &bus, cfg).await;
    let mut capsule_v2 = capsule(second.listeners(), &bus);
    let second = second.spawn(CancellationToken::new());
    assert_eq!(
        next_numbers(&mut capsule_v2, 3).await,
        [3, 4, 5],
        "not 1 and 2 again, nothing lost"
    );
    wait_all_acked(&js, 5).await;
    assert_eq!(second.stats().delivered, 3);
    assert!(capsule_v2.try_recv_one().is_none());
    second.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn after_a_crash_held_events_come_back_at_once_and_in_order() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let cfg = config(LONG_ACK_WAIT);

    // The first instance holds three events and dies without a word: its
    // task is aborted and its connection dropped, so nothing is naked.
    {
        let client = nats.client().await;
        let crashed = Adapter::new(client, Arc::clone(&bus), cfg.clone()).expect("valid config");
        let task = tokio::spawn(crashed.run(CancellationToken::new()));
        for n in 1..=3 {
            publish(&js, n).await;
        }
        wait_consumer(&js, "three events held by the first instance", |i| {
            i.num_ack_pending == 3 && i.num_pending == 0
        })
        .await;
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
    }
    publish(&js, 4).await;

    let second = adapter(&nats, &bus, cfg).await;
    let mut capsule = capsule(second.listeners(), &bus);
    let second = second.spawn(CancellationToken::new());
    // With 120 s of ack_wait, 1-3 arrive within the test's deadline only
    // because the durable was rewound to its ack floor; and before 4.
    assert_eq!(next_numbers(&mut capsule, 4).await, [1, 2, 3, 4]);
    wait_all_acked(&js, 4).await;
    assert!(capsule.try_recv_one().is_none());
    second.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_nats_restart_does_not_lose_the_place() {
    init_tracing();
    let mut nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_stream(&js, Duration::from_secs(120)).await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());
    publish(&js, 1).await;
    publish(&js, 2).await;
    assert_eq!(next_numbers(&mut capsule, 2).await, [1, 2]);
    wait_all_acked(&js, 2).await;

    nats.stop().await;
    nats.restart().await;
    let js = nats.jetstream().await;
    publish(&js, 3).await;
    publish(&js, 4).await;
    assert_eq!(next_numbers(&mut capsule, 2).await, [3, 4]);
    wait_all_acked(&js, 4).await;
    assert_eq!(handle.stats().delivered, 4, "nothing emitted twice");
    assert!(capsule.try_recv_one().is_none());
    assert!(!handle.is_finished(), "an outage is not an error");
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_adapter_started_before_the_stream_waits_for_it() {
    init_tracing();
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());

    create_stream(&js, Duration::from_secs(120)).await;
    publish(&js, 1).await;
    assert_eq!(next_number(&mut capsule).await, 1);
    wait_all_acked(&js, 1).await;
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_deleted_durable_is_recreated_after_the_last_delivered_event() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());
    publish(&js, 1).await;
    publish(&js, 2).await;
    assert_eq!(next_numbers(&mut capsule, 2).await, [1, 2]);
    wait_all_acked(&js, 2).await;

    js.get_stream(STREAM)
        .await
        .expect("stream")
        .delete_consumer(DURABLE)
        .await
        .expect("an operator deletes the durable");
    publish(&js, 3).await;
    assert_eq!(
        next_number(&mut capsule).await,
        3,
        "1 and 2 are not delivered again"
    );
    wait_all_acked(&js, 3).await;
    assert_eq!(handle.stats().delivered, 3);
    handle.shutdown().await.expect("clean shutdown");
}
