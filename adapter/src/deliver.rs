//! Publishing one event on the bus and deciding whether it was delivered.

use std::sync::Arc;

use astrid_events::EventBus;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::DeliveryCheck;
use crate::listeners::Listeners;
use crate::map;

/// The result of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A listener of the topic existed for the whole publish (or the check
    /// is `PublishOnly`): ack.
    Delivered,
    /// Nobody listens: nothing was published; hold the event.
    NoListener,
}

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

    pub(crate) fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Publishes `data` as the capsule's IPC event unless nobody listens.
    pub(crate) fn try_deliver(&self, data: &Value, correlation: Option<Uuid>) -> Outcome {
        let event = || map::ipc_event(&self.topic, data.clone(), self.source_id, correlation);
        if self.check == DeliveryCheck::PublishOnly {
            let receivers = self.bus.publish(event());
            tracing::trace!(receivers, "published (publish-only check)");
            return Outcome::Delivered;
        }
        let event = event();
        match self
            .listeners
            .while_listening(&self.topic, || self.bus.publish(event))
        {
            Some(receivers) => {
                tracing::trace!(receivers, "delivered");
                Outcome::Delivered
            }
            None => Outcome::NoListener,
        }
    }

    /// Waits until a listener of the topic is registered; `false` when
    /// cancelled first. Sleeps on the registry's change notification: no
    /// polling.
    pub(crate) async fn wait_for_listener(&self, cancel: &CancellationToken) -> bool {
        let mut changes = self.listeners.changes();
        loop {
            if self.check == DeliveryCheck::PublishOnly || self.listeners.count(&self.topic) > 0 {
                return true;
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                changed = changes.changed() => if changed.is_err() {
                    // Unreachable while `self.listeners` holds the sender.
                    return false;
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use astrid_events::{AstridEvent, IpcPayload};

    const TOPIC: &str = "astrid-discord.agent.events";

    fn deliverer(bus: &Arc<EventBus>, l: &Listeners, check: DeliveryCheck) -> Deliverer {
        Deliverer::new(Arc::clone(bus), l.clone(), TOPIC.into(), Uuid::nil(), check)
    }

    #[tokio::test]
    async fn only_a_listener_of_the_topic_counts() {
        let bus = Arc::new(EventBus::new());
        let l = Listeners::new();
        let d = deliverer(&bus, &l, DeliveryCheck::RequireListener);
        // Unregistered subscribers and listeners of other topics do not count,
        // although `publish` would report the broadcast ones as receivers.
        let mut unregistered = bus.subscribe();
        let _other = l.subscribe_routed(&bus, Uuid::nil(), "astrid-discord.agent.cancel", "x", "x");
        assert_eq!(d.try_deliver(&Value::from(1), None), Outcome::NoListener);
        assert!(
            unregistered.try_recv().is_none(),
            "nothing is published while held"
        );

        let mut capsule = l.subscribe_routed(&bus, Uuid::nil(), TOPIC, "x", "x");
        assert_eq!(d.try_deliver(&Value::from(2), None), Outcome::Delivered);
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

    #[tokio::test]
    async fn publish_only_does_not_wait() {
        let bus = Arc::new(EventBus::new());
        let l = Listeners::new();
        let d = deliverer(&bus, &l, DeliveryCheck::PublishOnly);
        assert_eq!(d.try_deliver(&Value::Null, None), Outcome::Delivered);
        assert!(d.wait_for_listener(&CancellationToken::new()).await);
    }

    #[tokio::test]
    async fn waiting_ends_on_registration_or_cancellation() {
        let bus = Arc::new(EventBus::new());
        let l = Listeners::new();
        let d = Arc::new(deliverer(&bus, &l, DeliveryCheck::RequireListener));
        let cancel = CancellationToken::new();
        let waiter = tokio::spawn({
            let d = Arc::clone(&d);
            let cancel = cancel.clone();
            async move { d.wait_for_listener(&cancel).await }
        });
        let _other = l.lease("another.topic");
        let lease = l.lease(TOPIC);
        assert!(waiter.await.unwrap());
        drop(lease);
        cancel.cancel();
        assert!(!d.wait_for_listener(&cancel).await);
    }
}
