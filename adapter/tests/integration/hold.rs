//! Ack after delivery across a capsule reload: while nobody listens, events
//! stay unacked (kept alive past `ack_wait`), and they arrive in order,
//! exactly once, when a listener is back; and (module `reloads`) reloads in
//! a double of astridd's dispatcher lose nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use astrid_discord_adapter::AdapterConfig;
use astrid_events::EventBus;
use discord_bridge_e2e::eventually;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn held_across_unsubscribe_and_resubscribe_without_loss_in_order() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let ack_wait = Duration::from_secs(2);
    let adapter = adapter(
        &nats,
        &bus,
        AdapterConfig {
            max_ack_pending: 3,
            ..config(ack_wait)
        },
    )
    .await;
    let listeners = adapter.listeners().clone();
    let handle = adapter.spawn(CancellationToken::new());

    let mut capsule_v1 = capsule(&listeners, &bus);
    publish(&js, 1).await;
    publish(&js, 2).await;
    assert_eq!(next_numbers(&mut capsule_v1, 2).await, [1, 2]);
    wait_all_acked(&js, 2).await;

    // The capsule reloads: its subscription goes away.
    drop(capsule_v1);
    for n in 3..=7 {
        publish(&js, n).await;
    }
    // The server hands out max_ack_pending = 3 and keeps the rest; nothing
    // is acked.
    wait_consumer(
        &js,
        "3 events held unacked and 2 waiting in the stream",
        |i| i.num_ack_pending == 3 && i.num_pending == 2 && i.ack_floor.stream_sequence == 2,
    )
    .await;
    // Hold for longer than ack_wait: four rounds of in-progress acks for the
    // three held events take at least 4/3 of ack_wait. The server must not
    // redeliver meanwhile.
    eventually(WAIT, "12 in-progress acks", || {
        let kept_alive = handle.stats().kept_alive;
        let js = js.clone();
        async move {
            let info = consumer_info(&js).await;
            assert_eq!(
                info.num_redelivered, 0,
                "held events must not be redelivered"
            );
            assert_eq!(
                info.ack_floor.stream_sequence, 2,
                "nothing acked while nobody listens"
            );
            (kept_alive >= 12).then_some(())
        }
    })
    .await;
    assert_eq!(handle.stats().held, 3);
    assert_eq!(handle.stats().delivered, 2);

    // The reloaded capsule subscribes again.
    let mut capsule_v2 = capsule(&listeners, &bus);
    assert_eq!(next_numbers(&mut capsule_v2, 5).await, [3, 4, 5, 6, 7]);
    let info = wait_all_acked(&js, 7).await;
    assert_eq!(info.num_redelivered, 0);
    let stats = handle.stats();
    assert_eq!(
        (stats.delivered, stats.duplicates, stats.held),
        (7, 0, 0),
        "{stats:?}"
    );
    assert!(
        capsule_v2.try_recv_one().is_none(),
        "each event exactly once"
    );

    // Still live afterwards.
    publish(&js, 8).await;
    assert_eq!(next_number(&mut capsule_v2).await, 8);
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn events_published_before_any_listener_wait_for_the_first() {
    let (nats, js) = server_with_stream().await;
    for n in 1..=3 {
        publish(&js, n).await;
    }
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let listeners = adapter.listeners().clone();
    let handle = adapter.spawn(CancellationToken::new());
    wait_consumer(&js, "all 3 events held", |i| {
        i.num_ack_pending == 3 && i.num_pending == 0
    })
    .await;

    let mut capsule = capsule(&listeners, &bus);
    assert_eq!(next_numbers(&mut capsule, 3).await, [1, 2, 3]);
    wait_all_acked(&js, 3).await;
    handle.shutdown().await.expect("clean shutdown");
}
