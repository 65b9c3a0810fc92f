//! Replays from a stream sequence and from a time re-emit stored events in
//! order, marked with the replay's id, without disturbing the durable
//! consumer.

use std::sync::Arc;

use crate::common::*;
use astrid_discord_adapter::{
    Adapter, AdapterConfig, AdapterError, Mode, ReplayFrom, ReplayRequest, ReplayUntil,
};
use astrid_events::{EventBus, RoutedEventReceiver};
use discord_bridge_e2e::NatsServer;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The next `count` events; each must carry `replay` as correlation id.
async fn replayed(rx: &mut RoutedEventReceiver, count: usize, replay: Uuid) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..count {
        let event = next_event(rx).await;
        assert_eq!(
            event.metadata().correlation_id,
            Some(replay),
            "marked as a replay"
        );
        assert_eq!(event.metadata().source, "discord-gateway");
        assert_eq!(ipc(&event).principal, None);
        out.push(number(&event));
    }
    out
}

#[tokio::test]
async fn replay_from_a_sequence_and_from_a_time() {
    let (nats, js) = server_with_stream().await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());
    let mut seqs = Vec::new();
    for n in 1..=5 {
        seqs.push(publish(&js, n).await);
    }
    assert_eq!(next_numbers(&mut capsule, 5).await, [1, 2, 3, 4, 5]);
    let before = wait_all_acked(&js, seqs[4]).await;

    // From a sequence, to the end.
    let report = handle
        .replay(ReplayRequest::from(ReplayFrom::Sequence(seqs[1])))
        .await
        .expect("replay from a sequence");
    assert_eq!(replayed(&mut capsule, 4, report.id).await, [2, 3, 4, 5]);
    assert_eq!((report.emitted, report.skipped), (4, 0));
    assert_eq!(
        (report.first_sequence, report.last_sequence),
        (Some(seqs[1]), Some(seqs[4]))
    );

    // From the time event 4 was stored.
    let stored_4 = js
        .get_stream(STREAM)
        .await
        .expect("stream")
        .get_raw_message(seqs[3])
        .await
        .expect("event 4 is stored");
    let report = handle
        .replay(ReplayRequest::from(ReplayFrom::Time(stored_4.time)))
        .await
        .expect("replay from a time");
    assert_eq!(replayed(&mut capsule, 2, report.id).await, [4, 5]);
    assert_eq!(report.emitted, 2);

    // A bounded window.
    let report = handle
        .replay(
            ReplayRequest::from(ReplayFrom::Sequence(seqs[0]))
                .until(ReplayUntil::Sequence(seqs[2])),
        )
        .await
        .expect("bounded replay");
    assert_eq!(replayed(&mut capsule, 3, report.id).await, [1, 2, 3]);

    // Past the end: nothing, and no waiting.
    let report = handle
        .replay(ReplayRequest::from(ReplayFrom::Sequence(seqs[4] + 1)))
        .await
        .expect("empty replay");
    assert_eq!(report.emitted, 0);

    // The durable consumer did not move.
    let after = consumer_info(&js).await;
    assert_eq!(
        after.ack_floor.stream_sequence,
        before.ack_floor.stream_sequence
    );
    assert_eq!(
        after.delivered.stream_sequence,
        before.delivered.stream_sequence
    );
    assert_eq!(
        after.delivered.consumer_sequence,
        before.delivered.consumer_sequence
    );
    assert_eq!((after.num_ack_pending, after.num_pending), (0, 0));
    assert_eq!(handle.stats().replayed, 9);
    assert_eq!(handle.stats().delivered, 5);

    // The live relay continues, unmarked, and was not deduplicated away by
    // the replays.
    publish(&js, 6).await;
    let live = next_event(&mut capsule).await;
    assert_eq!((number(&live), live.metadata().correlation_id), (6, None));
    assert!(capsule.try_recv_one().is_none());
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_replay_waits_for_a_listener_and_can_be_cancelled() {
    let (nats, js) = server_with_stream().await;
    let seq = publish(&js, 1).await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, leased()).await;
    let listeners = adapter.listeners().clone();
    let replayer = adapter.replayer().expect("JetStream mode");
    let handle = adapter.spawn(CancellationToken::new());

    // Nobody listens: the replay waits (the live relay holds event 1 too).
    let cancel = CancellationToken::new();
    let waiting = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            replayer
                .replay(ReplayRequest::from(ReplayFrom::Sequence(seq)), &cancel)
                .await
        }
    });
    wait_consumer(&js, "the live event to be held", |i| i.num_ack_pending == 1).await;
    assert!(!waiting.is_finished());
    cancel.cancel();
    assert!(matches!(
        waiting.await.expect("no panic"),
        Err(AdapterError::Cancelled)
    ));

    let mut capsule = capsule(&listeners, &bus);
    assert_eq!(next_number(&mut capsule).await, 1);
    let report = handle
        .replay(ReplayRequest::from(ReplayFrom::Sequence(seq)))
        .await
        .expect("replay");
    assert_eq!(replayed(&mut capsule, 1, report.id).await, [1]);
    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn core_mode_has_nothing_to_replay() {
    let nats = NatsServer::builder().without_jetstream().start().await;
    let adapter = Adapter::new(
        nats.client().await,
        EventBus::new(),
        AdapterConfig {
            mode: Mode::Core,
            ..leased()
        },
    )
    .expect("valid config");
    let err = adapter.replayer().expect_err("no replay in core mode");
    assert!(err.to_string().contains("JetStream"), "{err}");
}
