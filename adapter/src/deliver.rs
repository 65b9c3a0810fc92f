//! Publishing one event through the bus's reserved lane.
//!
//! `EventBus::reserve_publication` waits (without a bus lock) for room in
//! the queue of every capsule that handles the topic; `publish` then commits
//! in the bus's order, or fails with `Closed` when a captured capsule
//! generation retired meanwhile, in which case nothing was published and a
//! retry lands in the next generation. Dropping a reservation releases it,
//! so an attempt can be abandoned at any await point (shutdown, a host
//! signal) without publishing anything.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use astrid_events::{DeliveryAdmissionError, EventBus};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::DeliveryCheck;
use crate::listeners::Listeners;
use crate::map;

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Committed on the bus: every capsule handling the topic has it queued.
    Delivered,
    /// Nobody listens (`RequireListener`): nothing was published; hold.
    NoListener,
    /// The lane is closed or would wait on its own publisher (a generation
    /// retired, the dispatcher is starting or stopping): retry the same
    /// event later.
    Retry(DeliveryAdmissionError),
    /// The dispatcher cannot represent the event: never retry it.
    Invalid,
    /// A replayed event is gone from the stream: skip it.
    Missing(String),
    /// A replayed event cannot be read now (NATS away): retry.
    Unavailable(String),
}

/// An attempt that owns what it needs, so it can live across loop turns.
pub(crate) type Attempt = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Publishes events on one topic of one bus.
#[derive(Debug)]
pub(crate) struct Deliverer {
    bus: Arc<EventBus>,
    listeners: Listeners,
    topic: String,
    source_id: Uuid,
    check: DeliveryCheck,
}

impl Deliverer {
    pub(crate) fn new(
        bus: Arc<EventBus>,
        listeners: Listeners,
        topic: String,
        source_id: Uuid,
        check: DeliveryCheck,
    ) -> Self {
        Self {
            bus,
            listeners,
            topic,
            source_id,
            check,
        }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    pub(crate) fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// An attempt to deliver `data` as the capsule's IPC event.
    pub(crate) fn attempt(self: &Arc<Self>, data: Value, correlation: Option<Uuid>) -> Attempt {
        let this = Arc::clone(self);
        Box::pin(async move {
            let event = map::ipc_event(&this.topic, data, this.source_id, correlation);
            let reserved = match this.bus.reserve_publication(event).await {
                Ok(reserved) => reserved,
                Err(e) => return Outcome::from(e),
            };
            let committed = if this.check == DeliveryCheck::RequireListener {
                // The lease registry is held for the synchronous commit
                // only; the admitter never takes it.
                match this
                    .listeners
                    .while_listening(&this.topic, || reserved.publish())
                {
                    Some(committed) => committed,
                    None => return Outcome::NoListener,
                }
            } else {
                reserved.publish()
            };
            match committed {
                Ok(receivers) => {
                    tracing::trace!(receivers, "committed");
                    Outcome::Delivered
                }
                Err(e) => Outcome::from(e),
            }
        })
    }

    /// Delivers `data`, retrying closed lanes and waiting for a listener;
    /// `false` when cancelled first or the event is invalid. For replays on
    /// request, which run beside the live relay.
    pub(crate) async fn deliver_until(
        self: &Arc<Self>,
        data: &Value,
        correlation: Option<Uuid>,
        cancel: &CancellationToken,
    ) -> bool {
        let mut backoff = RetryBackoff::default();
        let mut changes = self.listeners.changes();
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return false,
                outcome = self.attempt(data.clone(), correlation) => outcome,
            };
            match outcome {
                Outcome::Delivered => return true,
                Outcome::Invalid | Outcome::Missing(_) => return false,
                Outcome::Retry(_) | Outcome::Unavailable(_) => {
                    tokio::select! {
                        () = cancel.cancelled() => return false,
                        () = tokio::time::sleep(backoff.next()) => {}
                    }
                }
                Outcome::NoListener => {
                    tokio::select! {
                        () = cancel.cancelled() => return false,
                        changed = changes.changed() => if changed.is_err() {
                            return false;
                        },
                    }
                }
            }
        }
    }
}

impl From<DeliveryAdmissionError> for Outcome {
    fn from(e: DeliveryAdmissionError) -> Self {
        match e {
            DeliveryAdmissionError::InvalidEvent => Self::Invalid,
            other => Self::Retry(other),
        }
    }
}

/// Backoff between retries of a closed lane: short at first (a generation
/// swap takes milliseconds), at most half a second (start-up, shutdown).
#[derive(Debug)]
pub(crate) struct RetryBackoff(Duration);

impl Default for RetryBackoff {
    fn default() -> Self {
        Self(Duration::from_millis(5))
    }
}

impl RetryBackoff {
    pub(crate) fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_millis(500));
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use astrid_events::{AstridEvent, EventDeliveryAdmitter, IpcPayload, ReservedEventDelivery};

    const TOPIC: &str = "astrid-discord.agent.events";

    fn deliverer(bus: &Arc<EventBus>, l: &Listeners, check: DeliveryCheck) -> Arc<Deliverer> {
        Arc::new(Deliverer::new(
            Arc::clone(bus),
            l.clone(),
            TOPIC.into(),
            Uuid::nil(),
            check,
        ))
    }

    #[tokio::test]
    async fn only_a_listener_of_the_topic_counts() {
        let bus = Arc::new(EventBus::new());
        let l = Listeners::new();
        let d = deliverer(&bus, &l, DeliveryCheck::RequireListener);
        let mut unregistered = bus.subscribe();
        let _other = l.subscribe_routed(&bus, Uuid::nil(), "astrid-discord.agent.cancel", "x", "x");
        assert_eq!(d.attempt(Value::from(1), None).await, Outcome::NoListener);
        assert!(
            unregistered.try_recv().is_none(),
            "nothing is published while held"
        );

        let mut capsule = l.subscribe_routed(&bus, Uuid::nil(), TOPIC, "x", "x");
        assert_eq!(d.attempt(Value::from(2), None).await, Outcome::Delivered);
        let got = capsule.try_recv_one().expect("delivered to the listener");
        let AstridEvent::Ipc { message, .. } = &*got else {
            panic!("not IPC");
        };
        assert_eq!(
            message.payload,
            IpcPayload::Custom {
                data: Value::from(2)
            }
        );
    }

    /// An admitter whose answer the test sets.
    #[derive(Debug)]
    struct Refuse(DeliveryAdmissionError);

    #[async_trait::async_trait]
    impl EventDeliveryAdmitter for Refuse {
        async fn reserve(
            &self,
            _event: &AstridEvent,
        ) -> Result<Box<dyn ReservedEventDelivery>, DeliveryAdmissionError> {
            Err(self.0)
        }
    }

    #[tokio::test]
    async fn lane_errors_map_to_retry_or_invalid() {
        for (err, expected) in [
            (
                DeliveryAdmissionError::Closed,
                Outcome::Retry(DeliveryAdmissionError::Closed),
            ),
            (
                DeliveryAdmissionError::SelfDependency,
                Outcome::Retry(DeliveryAdmissionError::SelfDependency),
            ),
            (DeliveryAdmissionError::InvalidEvent, Outcome::Invalid),
        ] {
            let bus = Arc::new(EventBus::new());
            let admitter: Arc<dyn EventDeliveryAdmitter> = Arc::new(Refuse(err));
            assert!(bus.register_delivery_admitter(&admitter));
            let d = deliverer(&bus, &Listeners::new(), DeliveryCheck::PublishOnly);
            let mut rx = bus.subscribe();
            assert_eq!(d.attempt(Value::from(1), None).await, expected);
            assert!(
                rx.try_recv().is_none(),
                "a refused reservation publishes nothing"
            );
        }
    }

    #[tokio::test]
    async fn deliver_until_waits_for_a_listener_or_cancellation() {
        let bus = Arc::new(EventBus::new());
        let l = Listeners::new();
        let d = deliverer(&bus, &l, DeliveryCheck::RequireListener);
        let cancel = CancellationToken::new();
        let waiter = tokio::spawn({
            let d = Arc::clone(&d);
            let cancel = cancel.clone();
            async move { d.deliver_until(&Value::from(1), None, &cancel).await }
        });
        let _other = l.lease("another.topic");
        let mut capsule = l.subscribe_routed(&bus, Uuid::nil(), TOPIC, "x", "x");
        assert!(waiter.await.unwrap());
        assert!(capsule.try_recv_one().is_some());
        drop(capsule);
        cancel.cancel();
        assert!(!d.deliver_until(&Value::from(2), None, &cancel).await);
    }

    #[test]
    fn backoff_doubles_up_to_half_a_second() {
        let mut b = RetryBackoff::default();
        let steps: Vec<_> = (0..10).map(|_| b.next().as_millis()).collect();
        assert_eq!(steps, [5, 10, 20, 40, 80, 160, 320, 500, 500, 500]);
    }
}
