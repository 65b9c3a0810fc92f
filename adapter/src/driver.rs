//! The relay's event loop, shared by both modes: one delivery attempt at a
//! time, raced against NATS intake, host signals, timers and shutdown.
//!
//! An attempt (a reservation on the bus's lane, then its commit) lives
//! across turns, so a reservation waiting for room in a full capsule queue
//! neither blocks intake nor keep-alives, nor is restarted by every incoming
//! message. It is dropped — which releases the reservation and publishes
//! nothing — only on shutdown, when the host says the capsule went away, or
//! when a replay must go first.

use astrid_events::EventReceiver;
use tokio::sync::watch;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use crate::config::{AdapterConfig, DeliveryCheck};
use crate::deliver::{Attempt, RetryBackoff};
use crate::host::{self, HostView, Signal};
use crate::listeners::Listeners;
use crate::pump::{Next, Pump, Settle, Target};

/// The bus receivers the adapter listens to besides its own events. They
/// are created with the adapter, so nothing the host says between building
/// and running it is missed.
pub(crate) struct Signals {
    loaded: Option<EventReceiver>,
    failed: Option<EventReceiver>,
    acks: Option<EventReceiver>,
    capsule: String,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("kernel", &self.loaded.is_some())
            .field("acks", &self.acks.is_some())
            .field("capsule", &self.capsule)
            .finish()
    }
}

/// Something heard on the bus.
enum Heard {
    Host(Signal),
    Acks(Vec<String>),
    Nothing,
}

impl Signals {
    pub(crate) fn new(bus: &astrid_events::EventBus, cfg: &AdapterConfig) -> Self {
        let kernel = cfg.delivery_check == DeliveryCheck::HostSignals;
        Self {
            loaded: kernel
                .then(|| bus.subscribe_topic_as(host::CAPSULES_LOADED_TOPIC, "discord_adapter")),
            failed: kernel
                .then(|| bus.subscribe_topic_as(host::HEALTH_FAILED_TOPIC, "discord_adapter")),
            acks: cfg
                .capsule_acks
                .then(|| bus.subscribe_topic_as(cfg.ack_topic(), "discord_adapter")),
            capsule: cfg.capsule_id().to_owned(),
        }
    }

    async fn next(&mut self) -> Heard {
        /// A receiver's next event; never resolves once it is closed.
        async fn recv(
            rx: &mut Option<EventReceiver>,
        ) -> (Option<std::sync::Arc<astrid_events::AstridEvent>>, u64) {
            let Some(r) = rx.as_mut() else {
                return std::future::pending().await;
            };
            match r.recv().await {
                Some(ev) => {
                    let lagged = r.drain_lagged();
                    (Some(ev), lagged)
                }
                None => {
                    *rx = None;
                    (None, 0)
                }
            }
        }
        let capsule = self.capsule.clone();
        tokio::select! {
            (ev, lagged) = recv(&mut self.loaded) => kernel_signal(ev.as_deref(), lagged, &capsule),
            (ev, lagged) = recv(&mut self.failed) => kernel_signal(ev.as_deref(), lagged, &capsule),
            (ev, lagged) = recv(&mut self.acks) => {
                if lagged > 0 {
                    tracing::warn!(lagged, "missed capsule acks; those events are delivered again at the next reload");
                }
                ev.map_or(Heard::Nothing, |ev| Heard::Acks(host::parse_ack(&ev)))
            }
        }
    }
}

fn kernel_signal(ev: Option<&astrid_events::AstridEvent>, lagged: u64, capsule: &str) -> Heard {
    if lagged > 0 {
        return Heard::Host(Signal::Lost);
    }
    ev.and_then(|ev| host::parse(ev, capsule))
        .map_or(Heard::Nothing, Heard::Host)
}

/// What one turn of the loop came to.
pub(crate) enum Turn<I> {
    Cancelled,
    /// Something arrived from NATS: the caller admits it.
    Intake(I),
    /// Handled inside: an attempt ended, a signal, a timer.
    Busy,
}

/// The pump plus everything that decides when it may deliver.
pub(crate) struct Driver<A> {
    pub(crate) pump: Pump<A>,
    host: HostView,
    signals: Signals,
    listeners: Listeners,
    listener_changes: watch::Receiver<u64>,
    topic: String,
    check: DeliveryCheck,
    attempt: Option<(Target, Attempt)>,
    retry_at: Option<Instant>,
    backoff: RetryBackoff,
    /// `RequireListener`: the last attempt found nobody; wait for a change.
    no_listener: bool,
    /// Tells replays on request whether delivery may go on.
    deliverable: watch::Sender<bool>,
}

impl<A: Settle> Driver<A> {
    pub(crate) fn new(
        pump: Pump<A>,
        cfg: &AdapterConfig,
        signals: Signals,
        listeners: Listeners,
        deliverable: watch::Sender<bool>,
    ) -> Self {
        let topic = cfg.topic();
        let listening = listeners.count(&topic) > 0;
        Self {
            pump,
            host: HostView::new(cfg, listening),
            signals,
            listener_changes: listeners.changes(),
            listeners,
            topic,
            check: cfg.delivery_check,
            attempt: None,
            retry_at: None,
            backoff: RetryBackoff::default(),
            no_listener: false,
            deliverable,
        }
    }

    /// Drops a pending attempt: its reservation is released, nothing of it
    /// was published, and its event stays held.
    pub(crate) fn abandon(&mut self) {
        self.attempt = None;
    }

    /// One turn: plan an attempt if delivery may go on, then handle
    /// whichever of cancellation, the attempt, a signal, a timer or
    /// `intake` comes first.
    pub(crate) async fn turn<I>(
        &mut self,
        cancel: &CancellationToken,
        intake: impl Future<Output = I>,
        keepalive: &mut Interval,
    ) -> Turn<I> {
        let now = Instant::now();
        self.host.expire_hold(now);
        if let Some(since) = self.host.take_replay(now) {
            // The replay goes before the event being attempted.
            self.attempt = None;
            self.pump.start_replay(since);
        }
        let may = self.host.may_deliver(now) && !self.no_listener;
        self.deliverable
            .send_if_modified(|d| std::mem::replace(d, may) != may);
        if self.attempt.is_none() && may && self.retry_at.is_none_or(|t| now >= t) {
            self.retry_at = None;
            self.attempt = self.pump.next_attempt();
        }
        let wake = match (self.retry_at, self.host.wake_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Self {
            pump,
            host,
            signals,
            listeners,
            listener_changes,
            topic,
            check,
            attempt,
            retry_at,
            backoff,
            no_listener,
            deliverable: _,
        } = self;
        let watch_listeners = *check == DeliveryCheck::RequireListener;
        tokio::select! {
            biased;
            () = cancel.cancelled() => Turn::Cancelled,
            outcome = pending_attempt(attempt), if attempt.is_some() => {
                let Some((target, _)) = attempt.take() else { return Turn::Busy };
                match pump.finish(target, outcome, Instant::now()).await {
                    Next::Continue => *backoff = RetryBackoff::default(),
                    Next::Hold => *no_listener = true,
                    Next::Retry => *retry_at = Some(Instant::now() + backoff.next()),
                }
                Turn::Busy
            }
            heard = signals.next() => {
                match heard {
                    Heard::Host(signal) => {
                        if host.apply(signal, Instant::now()) {
                            *attempt = None;
                        }
                    }
                    Heard::Acks(ids) => pump.capsule_acked(ids).await,
                    Heard::Nothing => {}
                }
                Turn::Busy
            }
            changed = listener_changes.changed(), if watch_listeners => {
                if changed.is_ok() {
                    *no_listener = false;
                    let present = listeners.count(topic) > 0;
                    host.apply(Signal::Listeners { present }, Instant::now());
                }
                Turn::Busy
            }
            item = intake => Turn::Intake(item),
            () = sleep_until(wake), if wake.is_some() => Turn::Busy,
            _ = keepalive.tick(), if !pump.is_empty() => {
                pump.progress_all().await;
                Turn::Busy
            }
        }
    }
}

async fn pending_attempt(attempt: &mut Option<(Target, Attempt)>) -> crate::deliver::Outcome {
    match attempt.as_mut() {
        Some((_, a)) => a.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
