//! Shared fixtures of the adapter's end-to-end tests: a stream shaped like
//! the bridge's, events published with the bridge's headers, a capsule-like
//! subscriber on a real `EventBus`, and conditions to wait for.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use astrid_discord_adapter::{Adapter, AdapterConfig, DeliveryCheck, Listener, Listeners};
use astrid_events::{AstridEvent, EventBus, IpcMessage, IpcPayload, RoutedEventReceiver};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use discord_bridge_e2e::{NatsServer, eventually};
use discord_bridge_schemas::header;
use serde_json::{Value, json};
use uuid::Uuid;

/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(20);
/// The bridge's default stream and subject.
pub const STREAM: &str = "ASTRID_DISCORD";
pub const SUBJECT: &str = "astrid-discord.agent.events";
pub const DURABLE: &str = "astrid-discord-adapter";

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The stream the bridge creates (DESIGN §5.5), with its duplicate window.
pub async fn create_stream(js: &jetstream::Context, duplicate_window: Duration) {
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![SUBJECT.into()],
        storage: stream::StorageType::File,
        duplicate_window,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("create the agent stream");
}

/// A nats-server holding the bridge's stream (2-minute duplicate window),
/// and its JetStream context.
pub async fn server_with_stream() -> (NatsServer, jetstream::Context) {
    init_tracing();
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    create_stream(&js, Duration::from_secs(120)).await;
    (nats, js)
}

/// An adapter on `nats` and `bus` (not started).
pub async fn adapter(nats: &NatsServer, bus: &Arc<EventBus>, config: AdapterConfig) -> Adapter {
    Adapter::new(nats.client().await, Arc::clone(bus), config).expect("valid config")
}

/// The agent event the bridge publishes for a MESSAGE_CREATE `n`.
#[must_use]
pub fn message_event(n: u64) -> Value {
    json!({
        "type": "message",
        "source": "gateway",
        "payload": {
            "id": format!("{}", 1_000 + n),
            "channel_id": "2",
            "guild_id": "3",
            "author": {"id": "4", "username": "alice"},
            "content": format!("event {n}"),
            "timestamp": "2024-01-01T00:00:00+00:00"
        }
    })
}

/// The headers the bridge attaches (DESIGN §5.3).
#[must_use]
pub fn bridge_headers(session: &str, seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::MSG_ID, format!("{session}:{seq}").as_str());
    h.insert(header::SHARD, "0/1");
    h.insert(header::SEQ, seq.to_string().as_str());
    h.insert(header::EVENT, "MESSAGE_CREATE");
    h.insert(header::SESSION, session);
    h.insert(header::GUILD, "3");
    h
}

/// Publishes raw bytes with the bridge's headers; returns the stream
/// sequence.
pub async fn publish_raw(
    js: &jetstream::Context,
    session: &str,
    seq: u64,
    payload: Vec<u8>,
) -> u64 {
    let msg = PublishMessage::build()
        .payload(payload.into())
        .headers(bridge_headers(session, seq));
    js.send_publish(SUBJECT, msg)
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

/// Publishes [`message_event`] `n` as dispatch `n` of `session`.
pub async fn publish(js: &jetstream::Context, n: u64) -> u64 {
    publish_raw(js, "sess", n, message_event(n).to_string().into_bytes()).await
}

/// The defaults, but delivering only while a [`Listeners`] lease matches:
/// the tests of everything but astridd's own signals subscribe through the
/// registry.
#[must_use]
pub fn leased() -> AdapterConfig {
    AdapterConfig {
        delivery_check: DeliveryCheck::RequireListener,
        ..AdapterConfig::default()
    }
}

/// A test configuration: [`leased`] with a given `ack_wait`.
#[must_use]
pub fn config(ack_wait: Duration) -> AdapterConfig {
    AdapterConfig {
        ack_wait,
        ..leased()
    }
}

/// A capsule-like routed subscription to the agent topic, registered as a
/// listener.
pub fn capsule(listeners: &Listeners, bus: &EventBus) -> Listener<RoutedEventReceiver> {
    listeners.subscribe_routed(
        bus,
        Uuid::new_v4(),
        SUBJECT,
        "astrid-discord",
        "capsule_guest",
    )
}

/// The next event a routed receiver gets, within [`WAIT`].
pub async fn next_event(rx: &mut RoutedEventReceiver) -> Arc<AstridEvent> {
    rx.recv(Some(WAIT))
        .await
        .expect("an event reaches the subscriber in time")
}

/// The IPC message of an event.
#[must_use]
pub fn ipc(event: &AstridEvent) -> &IpcMessage {
    match event {
        AstridEvent::Ipc { message, .. } => message,
        other => panic!("expected an IPC event, got {other:?}"),
    }
}

/// The `Custom` payload data of an event.
#[must_use]
pub fn data(event: &AstridEvent) -> Value {
    match &ipc(event).payload {
        IpcPayload::Custom { data } => data.clone(),
        other => panic!("expected a Custom payload, got {other:?}"),
    }
}

/// The `n` of a [`message_event`].
#[must_use]
pub fn number(event: &AstridEvent) -> u64 {
    let d = data(event);
    let content = d["payload"]["content"]
        .as_str()
        .expect("a message event")
        .to_owned();
    content
        .strip_prefix("event ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected content {content:?}"))
}

/// The number of the next event.
pub async fn next_number(rx: &mut RoutedEventReceiver) -> u64 {
    number(&*next_event(rx).await)
}

/// The next `count` event numbers.
pub async fn next_numbers(rx: &mut RoutedEventReceiver, count: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(next_number(rx).await);
    }
    out
}

/// The durable consumer's current state.
pub async fn consumer_info(js: &jetstream::Context) -> consumer::Info {
    js.get_stream(STREAM)
        .await
        .expect("the stream exists")
        .consumer_info(DURABLE)
        .await
        .expect("the durable consumer exists")
}

/// Waits until the durable consumer satisfies `condition`; returns its state.
pub async fn wait_consumer(
    js: &jetstream::Context,
    what: &str,
    condition: impl Fn(&consumer::Info) -> bool,
) -> consumer::Info {
    eventually(WAIT, what, || async {
        let stream = js.get_stream(STREAM).await.ok()?;
        let info = stream.consumer_info(DURABLE).await.ok()?;
        condition(&info).then_some(info)
    })
    .await
}

/// Waits until everything up to stream sequence `floor` is acked and
/// nothing is pending or outstanding.
pub async fn wait_all_acked(js: &jetstream::Context, floor: u64) -> consumer::Info {
    wait_consumer(
        js,
        &format!("the durable consumer to ack everything up to {floor}"),
        |i| i.ack_floor.stream_sequence == floor && i.num_ack_pending == 0 && i.num_pending == 0,
    )
    .await
}
