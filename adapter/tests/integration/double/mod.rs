//! A test double of astridd 2026.10's capsule dispatcher and capsule
//! lifecycle, built on `astrid-events` alone.
//!
//! What it reproduces, because the adapter's guarantees depend on it:
//!
//! * The dispatcher owns the bus's reserved lane (it registers the admitter)
//!   and its ordered inbox, which it drains in order. The admitter is closed
//!   until the dispatcher runs (deferred activation: `Closed`).
//! * A handler capsule (`[subscribe]` with a handler) has, per generation, a
//!   bounded queue of 64 and a generation gate. A reservation waits for room
//!   in the live generation's queue; its commit fails with `Closed` once
//!   that generation retired. With no live generation the admitter reserves
//!   nothing and the event is lost; unreserved events find a full queue or
//!   no generation and are dropped.
//! * A run-loop capsule subscribes with a gated routed subscription that the
//!   lane does not cover: a new generation subscribes while its gate is
//!   still closed (events are rejected), the gate opens after activation,
//!   and events still in a retired generation's route are dropped with it.
//!   It polls its subscription at a fixed interval.
//! * Signals as the kernel sends them: `astrid.v1.capsules_loaded` after a
//!   load, an atomic restart (`reload_one_capsule`) and an unload — each
//!   after the fact; `astrid.v1.health.failed` one health-check period after
//!   a crash, then an atomic restart announced by nothing.
//!
//! A generation being replaced or unloaded drops what it still had queued
//! (the real kernel may still run some of it on the cancelled instance):
//! stricter than astridd, never kinder.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use astrid_events::ipc::Topic;
use astrid_events::{
    AstridEvent, DeliveryAdmissionError, EventBus, EventDeliveryAdmitter, EventMetadata,
    IpcMessage, IpcPayload, ReservedEventDelivery, RouteAdmissionGate, RouteCommitGuard,
};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The per-capsule dispatch queue astridd 2026.10 allocates.
pub const QUEUE: usize = 64;
pub const CAPSULE: &str = "astrid-discord";
pub const TOPIC: &str = "astrid-discord.agent.events";
pub const ACK_TOPIC: &str = "astrid-discord.agent.ack";
const PRINCIPAL: &str = "default";

/// How the capsule reads its topic.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A `[subscribe]` handler, invoked per event by the dispatcher; each
    /// invocation takes this long.
    Handler { work: Duration },
    /// A run loop that polls its `ipc::subscribe` subscription this often.
    Polling { every: Duration },
}

/// One event as the capsule processed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processed {
    pub generation: u64,
    pub n: u64,
}

/// What the capsule does with an event: the `n` of a test message event.
fn number(event: &AstridEvent) -> Option<(u64, String)> {
    let AstridEvent::Ipc { message, .. } = event else {
        return None;
    };
    if message.topic.as_str() != TOPIC {
        return None;
    }
    let IpcPayload::Custom { data } = &message.payload else {
        return None;
    };
    let id = data["payload"]["id"].as_str()?.to_owned();
    let n = data["payload"]["content"]
        .as_str()?
        .strip_prefix("event ")?
        .parse()
        .ok()?;
    Some((n, id))
}

struct Work(Arc<AstridEvent>);

/// One capsule generation.
struct Generation {
    id: u64,
    gate: RouteAdmissionGate,
    /// Handler capsules: the dispatch queue.
    queue: Option<mpsc::Sender<Work>>,
    /// Crashed: still registered, but processes nothing.
    crashed: Arc<AtomicBool>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Registry {
    live: Option<Generation>,
}

/// Shared by the admitter, the dispatcher loop and the generations.
struct Inner {
    bus: Arc<EventBus>,
    registry: Mutex<Registry>,
    processed: Mutex<Vec<Processed>>,
    /// Unreserved events dropped (no generation, or a full queue).
    dropped: AtomicU64,
    /// The capsule publishes `{prefix}.agent.ack` for each event it did.
    acks: bool,
    /// Handler invocations wait for a permit (tests that stall the capsule).
    permits: Arc<Semaphore>,
    activated: AtomicBool,
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry")
    }

    fn process(&self, generation: u64, event: &AstridEvent) {
        let Some((n, id)) = number(event) else {
            return;
        };
        self.processed
            .lock()
            .expect("log")
            .push(Processed { generation, n });
        if self.acks {
            let message = IpcMessage::new(
                Topic::from_raw(ACK_TOPIC),
                IpcPayload::Custom {
                    data: json!({ "id": id }),
                },
                Uuid::nil(),
            );
            let _ = self.bus.publish(AstridEvent::Ipc {
                metadata: EventMetadata::new("capsule"),
                message,
            });
        }
    }
}

/// The dispatcher's admitter: reserves room in the live handler
/// generation's queue.
#[derive(Clone)]
struct Admitter(Arc<Inner>);

impl std::fmt::Debug for Admitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DoubleAdmitter")
    }
}

struct Reserved {
    slot: Option<(mpsc::OwnedPermit<Work>, RouteAdmissionGate)>,
}

impl ReservedEventDelivery for Reserved {
    fn commit_guards(&self) -> Result<Vec<RouteCommitGuard>, DeliveryAdmissionError> {
        self.slot
            .iter()
            .map(|(_, gate)| gate.commit_guard().ok_or(DeliveryAdmissionError::Closed))
            .collect()
    }

    fn deliver(self: Box<Self>, event: &AstridEvent) {
        if let Some((permit, _)) = self.slot {
            permit.send(Work(Arc::new(event.clone())));
        }
    }
}

#[async_trait::async_trait]
impl EventDeliveryAdmitter for Admitter {
    async fn reserve(
        &self,
        event: &AstridEvent,
    ) -> Result<Box<dyn ReservedEventDelivery>, DeliveryAdmissionError> {
        if !self.0.activated.load(Ordering::Acquire) {
            return Err(DeliveryAdmissionError::Closed);
        }
        let target = {
            let registry = self.0.registry();
            registry
                .live
                .as_ref()
                .filter(|_| number(event).is_some())
                .and_then(|g| Some((g.queue.clone()?, g.gate.clone())))
        };
        let Some((sender, gate)) = target else {
            // No handler generation: nothing to reserve, nothing delivered.
            return Ok(Box::new(Reserved { slot: None }));
        };
        let permit = match sender.try_reserve_owned() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(DeliveryAdmissionError::Closed);
            }
            Err(mpsc::error::TrySendError::Full(sender)) => sender
                .reserve_owned()
                .await
                .map_err(|_| DeliveryAdmissionError::Closed)?,
        };
        Ok(Box::new(Reserved {
            slot: Some((permit, gate)),
        }))
    }
}

/// The double: a dispatcher on `bus` and the capsule's lifecycle.
pub struct Astridd {
    inner: Arc<Inner>,
    kind: Kind,
    /// Keeps the bus's weak reference alive.
    admitter: Arc<dyn EventDeliveryAdmitter>,
    dispatcher: JoinHandle<()>,
    next_generation: AtomicU64,
    /// The kernel's health-check period.
    pub health_interval: Duration,
    /// How long a new generation takes from subscribing to being ready.
    pub activation: Duration,
}

impl Astridd {
    /// Registers the lane and takes the ordered inbox, as the dispatcher's
    /// constructor does; the admitter opens only once the dispatch loop
    /// runs, so early reservations are refused with `Closed`.
    pub fn start(bus: &Arc<EventBus>, kind: Kind, acks: bool) -> Self {
        let inner = Arc::new(Inner {
            bus: Arc::clone(bus),
            registry: Mutex::new(Registry::default()),
            processed: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            acks,
            permits: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            activated: AtomicBool::new(false),
        });
        let admitter: Arc<dyn EventDeliveryAdmitter> = Arc::new(Admitter(Arc::clone(&inner)));
        assert!(
            bus.register_delivery_admitter(&admitter),
            "one dispatcher per bus"
        );
        let mut inbox = bus.subscribe_ordered_delivery();
        let dispatcher = tokio::spawn({
            let inner = Arc::clone(&inner);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                inner.activated.store(true, Ordering::Release);
                while let Some(delivery) = inbox.recv().await {
                    let Some(event) = delivery.into_unreserved() else {
                        continue;
                    };
                    if number(&event).is_none() {
                        continue;
                    }
                    let queue = inner.registry().live.as_ref().and_then(|g| g.queue.clone());
                    let sent = queue.is_some_and(|q| q.try_send(Work(event)).is_ok());
                    if !sent {
                        inner.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self {
            inner,
            kind,
            admitter,
            dispatcher,
            next_generation: AtomicU64::new(1),
            health_interval: Duration::from_millis(250),
            activation: Duration::from_millis(20),
        }
    }

    /// Holds every handler invocation until [`release`](Self::release).
    pub fn stall(&self) {
        let n = self.inner.permits.available_permits();
        self.inner.permits.forget_permits(n);
    }

    pub fn release(&self) {
        self.inner.permits.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// Everything the capsule processed, in order.
    pub fn processed(&self) -> Vec<Processed> {
        self.inner.processed.lock().expect("log").clone()
    }

    /// Unreserved events the dispatcher dropped.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// A new generation, subscribed (run loop) behind a closed gate.
    fn build(&self) -> Generation {
        let id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let gate = RouteAdmissionGate::staged();
        let stop = CancellationToken::new();
        let crashed = Arc::new(AtomicBool::new(false));
        let inner = Arc::clone(&self.inner);
        match self.kind {
            Kind::Handler { work: cost } => {
                let (tx, mut rx) = mpsc::channel::<Work>(QUEUE);
                let (stop2, crashed2) = (stop.clone(), Arc::clone(&crashed));
                let task = tokio::spawn(async move {
                    loop {
                        let Work(event) = tokio::select! {
                            () = stop2.cancelled() => return,
                            work = rx.recv() => match work { Some(w) => w, None => return },
                        };
                        let Ok(_permit) = inner.permits.acquire().await else {
                            return;
                        };
                        if !cost.is_zero() {
                            tokio::time::sleep(cost).await;
                        }
                        if stop2.is_cancelled() {
                            return; // unloaded mid-invocation: not processed
                        }
                        if !crashed2.load(Ordering::Acquire) {
                            inner.process(id, &event);
                        }
                    }
                });
                Generation {
                    id,
                    gate,
                    queue: Some(tx),
                    crashed,
                    stop,
                    task,
                }
            }
            Kind::Polling { every } => {
                let mut rx = self
                    .inner
                    .bus
                    .subscribe_topic_routed_principal_or_system_gated(
                        Uuid::new_v4(),
                        TOPIC,
                        CAPSULE,
                        "capsule_guest",
                        PRINCIPAL,
                        gate.clone(),
                    );
                let (stop2, crashed2) = (stop.clone(), Arc::clone(&crashed));
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tokio::select! {
                            () = stop2.cancelled() => return,
                            _ = tick.tick() => {}
                        }
                        if crashed2.load(Ordering::Acquire) {
                            // The run loop died: its subscription goes with it.
                            return;
                        }
                        while let Some(event) = rx.try_recv_one() {
                            inner.process(id, &event);
                        }
                    }
                });
                Generation {
                    id,
                    gate,
                    queue: None,
                    crashed,
                    stop,
                    task,
                }
            }
        }
    }

    async fn retire(generation: Generation) {
        generation.gate.retire();
        generation.stop.cancel();
        let _ = generation.task.await;
    }

    /// The kernel's inventory for the default view.
    fn publish_inventory(&self) {
        let capsules: Vec<Value> = self
            .inner
            .registry()
            .live
            .iter()
            .map(|_| json!({"principal": PRINCIPAL, "name": CAPSULE, "source_id": null, "meta": null}))
            .collect();
        publish_kernel(
            &self.inner.bus,
            "astrid.v1.capsules_loaded",
            IpcPayload::RawJson(json!({"status": "ready", "capsules": capsules})),
            Some(PRINCIPAL),
        );
    }

    /// `load_capsule` then the inventory: activation behind a closed gate,
    /// registration and gate opening, then `capsules_loaded`.
    pub async fn load(&self) {
        let generation = self.build();
        tokio::time::sleep(self.activation).await;
        {
            let mut registry = self.inner.registry();
            assert!(registry.live.is_none(), "load: already loaded");
            generation.gate.publish();
            registry.live = Some(generation);
        }
        self.publish_inventory();
    }

    /// `unload_one_capsule`: unregister, retire, unload, then the inventory.
    pub async fn unload(&self) {
        let old = self.inner.registry().live.take();
        if let Some(old) = old {
            Self::retire(old).await;
        }
        self.publish_inventory();
    }

    /// `restart_capsule` (atomic): the replacement is prepared behind a
    /// closed gate, the old generation retires and the new one opens in one
    /// step; then the old one is unloaded. `announce` publishes the
    /// inventory afterwards, as `reload_one_capsule` does (a health restart
    /// does not).
    pub async fn restart(&self, announce: bool) {
        let generation = self.build();
        tokio::time::sleep(self.activation).await;
        let old = {
            let mut registry = self.inner.registry();
            let old = registry.live.take();
            if let Some(old) = &old {
                old.gate.retire();
            }
            generation.gate.publish();
            registry.live = Some(generation);
            old
        };
        if let Some(old) = old {
            Self::retire(old).await;
        }
        if announce {
            self.publish_inventory();
        }
    }

    /// The live generation crashes; the health monitor notices one check
    /// period later, reports it and restarts the capsule.
    pub async fn crash(&self) {
        if let Some(g) = self.inner.registry().live.as_ref() {
            g.crashed.store(true, Ordering::Release);
        }
        tokio::time::sleep(self.health_interval).await;
        publish_kernel(
            &self.inner.bus,
            "astrid.v1.health.failed",
            IpcPayload::Custom {
                data: json!({"capsule_id": CAPSULE, "principal": PRINCIPAL, "reason": "engine crashed"}),
            },
            None,
        );
        self.restart(false).await;
    }
}

impl Drop for Astridd {
    fn drop(&mut self) {
        self.dispatcher.abort();
        if let Ok(mut registry) = self.inner.registry.lock()
            && let Some(g) = registry.live.take()
        {
            g.stop.cancel();
            g.task.abort();
        }
    }
}

/// A kernel publication, as `Kernel` makes them.
pub fn publish_kernel(bus: &EventBus, topic: &str, payload: IpcPayload, principal: Option<&str>) {
    let mut message = IpcMessage::new(Topic::from_raw(topic), payload, Uuid::nil());
    message.principal = principal.map(str::to_owned);
    let _ = bus.publish(AstridEvent::Ipc {
        metadata: EventMetadata::new("kernel"),
        message,
    });
}
