//! The pump against a real in-process `EventBus`, with a settle double that
//! records what would have been sent to NATS.

use std::sync::{Arc, Mutex};

use astrid_events::{AstridEvent, EventBus, IpcPayload, RoutedEventReceiver};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::config::DeliveryCheck;
use crate::listeners::{Listener, Listeners};

const TOPIC: &str = "astrid-discord.agent.events";

type Log = Arc<Mutex<Vec<(u64, &'static str)>>>;

#[derive(Debug)]
struct Rec(u64, Log);

impl Rec {
    fn push(&self, what: &'static str) {
        self.1.lock().unwrap().push((self.0, what));
    }
}

impl Settle for Rec {
    async fn ack(self) {
        self.push("ack");
    }
    async fn progress(&self) {
        self.push("progress");
    }
    async fn nak(self) {
        self.push("nak");
    }
    async fn term(self) {
        self.push("term");
    }
}

struct Fixture {
    bus: Arc<EventBus>,
    listeners: Listeners,
    log: Log,
    pump: Pump<Rec>,
    counters: Arc<Counters>,
}

fn fixture(capacity: Option<usize>) -> Fixture {
    let bus = Arc::new(EventBus::new());
    let listeners = Listeners::new();
    let deliverer = Arc::new(Deliverer::new(
        Arc::clone(&bus),
        listeners.clone(),
        TOPIC.into(),
        Uuid::nil(),
        DeliveryCheck::RequireListener,
    ));
    let counters = Arc::new(Counters::default());
    let cfg = PumpConfig {
        dedupe_window: 100,
        capacity,
        reach: Duration::from_secs(10),
        capsule_acks: false,
    };
    Fixture {
        pump: Pump::new(deliverer, Arc::clone(&counters), cfg, None),
        bus,
        listeners,
        log: Log::default(),
        counters,
    }
}

impl<A: Settle> Pump<A> {
    /// Delivers from the head until it is empty or the head is held.
    async fn drain(&mut self) {
        while let Some((target, attempt)) = self.next_attempt() {
            let outcome = attempt.await;
            if self.finish(target, outcome, Instant::now()).await != Next::Continue {
                break;
            }
        }
    }
}

impl Fixture {
    async fn admit(&mut self, seq: u64, id: &str, payload: &[u8]) {
        let meta = EnvelopeMeta {
            msg_id: Some(id.to_owned()),
            ..EnvelopeMeta::default()
        };
        let m = Incoming {
            key: seq,
            stream_seq: Some(seq),
            meta,
            payload,
            settle: Rec(seq, Arc::clone(&self.log)),
        };
        self.pump.admit(m).await;
    }

    fn capsule(&self) -> Listener<RoutedEventReceiver> {
        self.listeners
            .subscribe_routed(&self.bus, Uuid::new_v4(), TOPIC, "astrid-discord", "test")
    }

    fn log(&self) -> Vec<(u64, &'static str)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn drain_events(rx: &mut RoutedEventReceiver) -> Vec<Value> {
    std::iter::from_fn(|| rx.try_recv_one())
        .map(|ev| match &*ev {
            AstridEvent::Ipc { message, .. } => match &message.payload {
                IpcPayload::Custom { data } => data.clone(),
                other => panic!("unexpected payload {other:?}"),
            },
            other => panic!("unexpected event {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn holds_without_listener_then_delivers_in_order_and_acks_after() {
    let mut f = fixture(None);
    for n in 1..=3 {
        f.admit(
            n,
            &format!("s:{n}"),
            json!({ "n": n }).to_string().as_bytes(),
        )
        .await;
        f.pump.drain().await;
    }
    assert_eq!(f.pump.len(), 3);
    assert_eq!(f.counters.snapshot().held, 3);
    assert!(f.log().is_empty(), "nothing acked while nobody listens");

    f.pump.progress_all().await;
    assert_eq!(
        f.log(),
        vec![(1, "progress"), (2, "progress"), (3, "progress")]
    );

    let mut capsule = f.capsule();
    f.pump.drain().await;
    assert_eq!(
        drain_events(&mut capsule),
        vec![json!({"n":1}), json!({"n":2}), json!({"n":3})]
    );
    assert_eq!(f.log(), vec![(1, "ack"), (2, "ack"), (3, "ack")]);
    assert_eq!(f.counters.snapshot().delivered, 3);
    assert_eq!(f.counters.snapshot().held, 0);
}

#[tokio::test]
async fn inbox_orders_by_sequence() {
    let mut f = fixture(None);
    f.admit(5, "s:5", b"5").await;
    f.admit(2, "s:2", b"2").await;
    let mut capsule = f.capsule();
    f.pump.drain().await;
    assert_eq!(drain_events(&mut capsule), vec![json!(2), json!(5)]);
}

#[tokio::test]
async fn redeliveries_and_duplicates_are_not_emitted_twice() {
    let mut f = fixture(None);
    let mut capsule = f.capsule();
    f.admit(1, "s:1", b"1").await;
    f.pump.drain().await;
    // The ack of seq 1 was lost: the server redelivers it.
    f.admit(1, "s:1", b"1").await;
    // The bridge published s:1 again after the duplicate window: new seq.
    f.admit(2, "s:1", b"1").await;
    f.admit(3, "s:3", b"3").await;
    f.pump.drain().await;
    assert_eq!(drain_events(&mut capsule), vec![json!(1), json!(3)]);
    assert_eq!(
        f.log(),
        vec![(1, "ack"), (1, "ack"), (2, "ack"), (3, "ack")]
    );
    assert_eq!(f.counters.snapshot().duplicates, 2);
}

#[tokio::test]
async fn a_redelivery_of_a_held_message_keeps_its_place() {
    let mut f = fixture(None);
    f.admit(1, "s:1", b"1").await;
    f.admit(2, "s:2", b"2").await;
    f.admit(1, "s:1", b"1").await;
    assert_eq!(f.pump.len(), 2);
    let mut capsule = f.capsule();
    f.pump.drain().await;
    assert_eq!(drain_events(&mut capsule), vec![json!(1), json!(2)]);
    assert_eq!(f.log(), vec![(1, "ack"), (2, "ack")]);
}

#[tokio::test]
async fn unusable_messages_are_terminated_and_do_not_block() {
    let mut f = fixture(None);
    let mut capsule = f.capsule();
    f.admit(1, "s:1", b"{not json").await;
    f.admit(2, "s:2", b"2").await;
    f.pump.drain().await;
    assert_eq!(drain_events(&mut capsule), vec![json!(2)]);
    assert_eq!(f.log(), vec![(1, "term"), (2, "ack")]);
    assert_eq!(f.counters.snapshot().rejected, 1);
}

#[tokio::test]
async fn shutdown_gives_held_messages_back_lowest_first() {
    let mut f = fixture(None);
    for n in [3, 1, 2] {
        f.admit(n, &format!("s:{n}"), b"0").await;
    }
    assert_eq!(f.pump.nak_all().await, 3);
    assert_eq!(f.log(), vec![(1, "nak"), (2, "nak"), (3, "nak")]);
    assert!(f.pump.is_empty());
}

#[tokio::test]
async fn core_mode_hold_is_bounded() {
    let mut f = fixture(Some(2));
    for n in 1..=3 {
        f.admit(n, &format!("s:{n}"), n.to_string().as_bytes())
            .await;
    }
    assert_eq!(f.counters.snapshot().dropped, 1);
    let mut capsule = f.capsule();
    f.pump.drain().await;
    assert_eq!(drain_events(&mut capsule), vec![json!(1), json!(2)]);
}

fn pump_with(f: &Fixture, capsule_acks: bool, fetch: Option<Fetch>) -> Pump<Rec> {
    let deliverer = Arc::new(Deliverer::new(
        Arc::clone(&f.bus),
        f.listeners.clone(),
        TOPIC.into(),
        Uuid::nil(),
        DeliveryCheck::RequireListener,
    ));
    let cfg = PumpConfig {
        dedupe_window: 100,
        capacity: None,
        reach: Duration::from_secs(10),
        capsule_acks,
    };
    Pump::new(deliverer, Arc::clone(&f.counters), cfg, fetch)
}

fn message(n: u64) -> Vec<u8> {
    json!({"type": "message", "payload": {"id": format!("m{n}")}, "n": n})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_replay_delivers_what_was_handed_over_since_again_before_the_inbox() {
    let mut f = fixture(None);
    // The stream, as the fetch reads it back.
    let fetch: Fetch = Arc::new(|seq| {
        Box::pin(async move {
            serde_json::from_slice(&message(seq)).map_err(|e| FetchError::Missing(e.to_string()))
        })
    });
    f.pump = pump_with(&f, false, Some(fetch));
    let mut capsule = f.capsule();
    let t0 = Instant::now();
    for n in 1..=3 {
        f.admit(n, &format!("s:{n}"), &message(n)).await;
    }
    f.pump.drain().await;
    assert_eq!(drain_events(&mut capsule).len(), 3);
    f.admit(4, "s:4", &message(4)).await;
    f.pump.start_replay(t0);
    f.pump.drain().await;
    let again: Vec<u64> = drain_events(&mut capsule)
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect();
    assert_eq!(again, [1, 2, 3, 4], "the replay first, then the inbox");
    let stats = f.counters.snapshot();
    assert_eq!(
        (stats.redelivered, stats.replays, stats.largest_replay),
        (3, 1, 3)
    );
    assert_eq!(stats.delivered, 4);
}

#[tokio::test]
async fn with_capsule_acks_only_the_capsules_word_acks() {
    let mut f = fixture(None);
    f.pump = pump_with(&f, true, None);
    let mut capsule = f.capsule();
    f.admit(1, "s:1", &message(1)).await;
    f.admit(2, "s:2", &message(2)).await;
    f.pump.drain().await;
    assert_eq!(drain_events(&mut capsule).len(), 2);
    assert!(f.log().is_empty(), "delivered, not acked");
    // A redelivery of an awaiting event keeps waiting for the capsule.
    f.admit(1, "s:1", &message(1)).await;
    assert!(f.log().is_empty());
    f.pump
        .capsule_acked(vec!["m1".into(), "unknown".into()])
        .await;
    assert_eq!(f.log(), vec![(1, "ack")]);
    // A reload delivers again exactly what the capsule did not acknowledge.
    f.pump.start_replay(Instant::now());
    f.pump.drain().await;
    let again: Vec<u64> = drain_events(&mut capsule)
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect();
    assert_eq!(again, [2]);
    assert_eq!(f.pump.nak_all().await, 1);
    assert_eq!(f.log(), vec![(2, "nak")]);
    assert_eq!(f.counters.snapshot().capsule_acked, 1);
}
