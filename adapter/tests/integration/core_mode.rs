//! Servers without JetStream: JetStream mode says what to do; core mode
//! relays at most once, holding a bounded number of events for a missing
//! listener and dropping duplicate dispatches.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use astrid_discord_adapter::{Adapter, AdapterConfig, AdapterError, Mode};
use astrid_events::EventBus;
use discord_bridge_e2e::{NatsServer, eventually};
use tokio_util::sync::CancellationToken;

fn core_config() -> AdapterConfig {
    AdapterConfig {
        mode: Mode::Core,
        max_ack_pending: 3,
        ..leased()
    }
}

async fn publish_core(client: &async_nats::Client, session: &str, n: u64) {
    client
        .publish_with_headers(
            SUBJECT,
            bridge_headers(session, n),
            message_event(n).to_string().into(),
        )
        .await
        .expect("publish");
    client.flush().await.expect("flush");
}

/// Probe events are numbered above this.
const PROBE: u64 = 1_000_000;

/// The next event that is not a probe.
async fn next_real(capsule: &mut astrid_events::RoutedEventReceiver) -> u64 {
    loop {
        let n = next_number(capsule).await;
        if n <= PROBE {
            return n;
        }
    }
}

#[tokio::test]
async fn jetstream_mode_without_jetstream_says_what_to_do() {
    init_tracing();
    let nats = NatsServer::builder().without_jetstream().start().await;
    let adapter =
        Adapter::new(nats.client().await, EventBus::new(), leased()).expect("valid config");
    let result = tokio::time::timeout(WAIT, adapter.run(CancellationToken::new()))
        .await
        .expect("fails fast instead of retrying");
    let err = result.expect_err("no JetStream");
    assert!(matches!(err, AdapterError::JetStreamNotEnabled), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("-js") && text.contains("Mode::Core"),
        "{text}"
    );
}

#[tokio::test]
async fn core_mode_relays_holds_and_drops_duplicates() {
    init_tracing();
    let nats = NatsServer::builder().without_jetstream().start().await;
    let publisher = nats.client().await;
    let bus = Arc::new(EventBus::new());
    let adapter = adapter(&nats, &bus, core_config()).await;
    let listeners = adapter.listeners().clone();
    let mut capsule_v1 = capsule(&listeners, &bus);
    let handle = adapter.spawn(CancellationToken::new());

    // Core NATS delivers only to existing subscriptions: publish probes
    // (numbered from PROBE on) until the adapter's subscription is in place.
    let mut probe = PROBE;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        probe += 1;
        publish_core(&publisher, "probe", probe).await;
        if capsule_v1
            .recv(Some(Duration::from_millis(50)))
            .await
            .is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the core subscription is not in place after {WAIT:?}"
        );
    }

    publish_core(&publisher, "sess", 1).await;
    publish_core(&publisher, "sess", 1).await; // a RESUME replay
    publish_core(&publisher, "sess", 2).await;
    assert_eq!(
        [
            next_real(&mut capsule_v1).await,
            next_real(&mut capsule_v1).await
        ],
        [1, 2]
    );
    eventually(WAIT, "the duplicate to be counted", || async {
        (handle.stats().duplicates == 1).then_some(())
    })
    .await;

    // No listener: up to max_ack_pending = 3 events are held, the rest dropped.
    drop(capsule_v1);
    for n in 3..=7 {
        publish_core(&publisher, "sess", n).await;
    }
    eventually(WAIT, "3 held and 2 dropped", || async {
        let s = handle.stats();
        (s.held == 3 && s.dropped == 2).then_some(())
    })
    .await;
    let mut capsule_v2 = capsule(&listeners, &bus);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_real(&mut capsule_v2).await);
    }
    assert_eq!(got, [3, 4, 5]);
    publish_core(&publisher, "sess", 8).await;
    assert_eq!(
        next_real(&mut capsule_v2).await,
        8,
        "6 and 7 were dropped, 1 not repeated"
    );
    assert_eq!(handle.stats().duplicates, 1);
    handle.shutdown().await.expect("clean shutdown");
}
