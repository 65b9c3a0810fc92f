//! [`Listeners`]: who is subscribed to which topic, as the adapter sees it.
//!
//! `astrid-events` 2026.10 cannot answer "is anyone subscribed to topic T":
//! `EventBus::publish` returns the number of *broadcast* receivers of every
//! topic (a topic filter is applied on the receiving side, after counting),
//! routed subscriptions — the kind capsules get — are kept in a private table
//! and not counted at all, and `routed_subscription_count` is a total over
//! all topics. So the subscriber side tells the adapter: each subscription
//! that should count holds a [`ListenerLease`] for its topic pattern, for
//! exactly as long as the subscription exists.
//!
//! The adapter publishes only while a lease matches the topic (by the bus's
//! own `topic_pattern_matches`), and holds the registry for the duration of
//! the synchronous `EventBus::publish`, so no lease can be released during
//! it. Because a lease is taken after its subscription is created and
//! released before it is dropped, the subscription existed for the whole
//! publish and so received the event — certainly, not just probably, even
//! when a capsule unsubscribes at that very moment. [`Listener`] packages a bus subscription with its lease in that
//! order; [`Listeners::lease`] is for subscriptions created elsewhere (the
//! daemon's capsule host).

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use astrid_events::{EventBus, EventReceiver, RoutedEventReceiver, topic_pattern_matches};
use tokio::sync::watch;
use uuid::Uuid;

/// The registry of live subscriptions; cheap to clone, clones share state.
#[derive(Debug, Clone)]
pub struct Listeners {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Bumped on every lease taken or released; waiters watch it instead of
    /// polling.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    live: BTreeMap<u64, String>,
}

impl Default for Listeners {
    fn default() -> Self {
        Self::new()
    }
}

impl Listeners {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// Registers a subscription to `topic_pattern` (the pattern grammar of
    /// `EventBus::subscribe_topic`) that exists elsewhere.
    ///
    /// Take the lease right *after* the subscription is created and keep it
    /// in the same owner, declared *before* the subscription so it is
    /// dropped first: then a live lease always means a live subscription.
    /// The subscription must accept system events (no principal), as
    /// capsule run-loop subscriptions do.
    #[must_use = "the subscription counts only while the lease is held"]
    pub fn lease(&self, topic_pattern: impl Into<String>) -> ListenerLease {
        let pattern = topic_pattern.into();
        let id = {
            let mut state = self.lock();
            let id = state.next_id;
            state.next_id = id.wrapping_add(1);
            state.live.insert(id, pattern.clone());
            id
        };
        tracing::debug!(lease = id, pattern = %pattern, "listener registered");
        self.inner.changes.send_modify(|g| *g = g.wrapping_add(1));
        ListenerLease {
            listeners: self.clone(),
            id,
        }
    }

    /// A routed subscription — what astridd gives a capsule — that counts as
    /// a listener while it lives. Arguments are those of
    /// `EventBus::subscribe_topic_routed`.
    pub fn subscribe_routed(
        &self,
        bus: &EventBus,
        capsule_uuid: Uuid,
        topic_pattern: impl Into<String>,
        capsule_id_label: impl Into<String>,
        subscriber: &'static str,
    ) -> Listener<RoutedEventReceiver> {
        let pattern = topic_pattern.into();
        let receiver =
            bus.subscribe_topic_routed(capsule_uuid, pattern.clone(), capsule_id_label, subscriber);
        Listener {
            lease: self.lease(pattern),
            receiver,
        }
    }

    /// A broadcast topic subscription that counts as a listener while it
    /// lives. A broadcast receiver that falls more than the bus capacity
    /// behind loses events without the publisher knowing: prefer
    /// [`subscribe_routed`](Self::subscribe_routed) for anything that can
    /// be slow.
    pub fn subscribe_topic(
        &self,
        bus: &EventBus,
        topic_pattern: impl Into<String>,
    ) -> Listener<EventReceiver> {
        let pattern = topic_pattern.into();
        let receiver = bus.subscribe_topic(pattern.clone());
        Listener {
            lease: self.lease(pattern),
            receiver,
        }
    }

    /// How many live leases match `topic`.
    #[must_use]
    pub fn count(&self, topic: &str) -> usize {
        self.lock()
            .live
            .values()
            .filter(|p| topic_pattern_matches(p, topic))
            .count()
    }

    /// Runs `publish` only if a lease matches `topic`, holding the registry
    /// while it runs: no lease can be released meanwhile, and since a lease
    /// is dropped before its subscription, the subscription it stands for
    /// lives through the whole (synchronous) publish. That is what makes
    /// "delivered to a live subscriber" certain rather than likely. `publish`
    /// must not touch this registry (it would deadlock): `EventBus::publish`
    /// does not.
    pub(crate) fn while_listening<R>(&self, topic: &str, publish: impl FnOnce() -> R) -> Option<R> {
        let state = self.lock();
        let listening = state.live.values().any(|p| topic_pattern_matches(p, topic));
        let result = listening.then(publish);
        drop(state);
        result
    }

    /// A receiver that wakes on every registration change.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn release(&self, id: u64) {
        let removed = self.lock().live.remove(&id);
        if let Some(pattern) = removed {
            tracing::debug!(lease = id, pattern = %pattern, "listener released");
            self.inner.changes.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a plain map, consistent after every statement.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Proof that a subscription to a topic pattern is live; dropping it
/// unregisters the subscription.
#[derive(Debug)]
pub struct ListenerLease {
    listeners: Listeners,
    id: u64,
}

impl Drop for ListenerLease {
    fn drop(&mut self) {
        self.listeners.release(self.id);
    }
}

/// A bus subscription registered in [`Listeners`]. Dereferences to the
/// receiver, so `listener.recv(..)` works as on the bare receiver.
#[derive(Debug)]
pub struct Listener<R> {
    // Field order is drop order: the lease goes before the subscription.
    lease: ListenerLease,
    receiver: R,
}

impl<R> Listener<R> {
    /// The lease, e.g. to check it belongs to a given registry.
    #[must_use]
    pub fn lease(&self) -> &ListenerLease {
        &self.lease
    }
}

impl<R> Deref for Listener<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.receiver
    }
}

impl<R> DerefMut for Listener<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "astrid-discord.agent.events";

    #[test]
    fn leases_match_by_the_bus_pattern_grammar() {
        let l = Listeners::new();
        let exact = l.lease(TOPIC);
        let _other = l.lease("astrid-discord.agent.cancel");
        let _wild = l.lease("astrid-discord.*");
        assert_eq!(l.count(TOPIC), 2);
        assert_eq!(l.count("astrid-discord.agent.cancel"), 2);
        drop(exact);
        assert_eq!(l.count(TOPIC), 1);
        assert_eq!(l.count("other.agent.events"), 0);
    }

    #[test]
    fn the_registry_is_held_for_the_whole_publish() {
        let l = Listeners::new();
        let lease = l.lease(TOPIC);
        // Releasing a lease takes this lock, so it waits for the publish.
        let held = l.while_listening(TOPIC, || l.inner.state.try_lock().is_err());
        assert_eq!(held, Some(true));
        assert!(
            l.inner.state.try_lock().is_ok(),
            "free again after the publish"
        );
        drop(lease);
        assert_eq!(
            l.while_listening(TOPIC, || ()),
            None,
            "nobody listens: not run"
        );
    }

    #[test]
    fn changes_are_announced() {
        let l = Listeners::new();
        let mut rx = l.changes();
        assert!(!rx.has_changed().unwrap());
        let lease = l.lease(TOPIC);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        drop(lease);
        assert!(rx.has_changed().unwrap());
    }

    #[tokio::test]
    async fn listener_wraps_real_subscriptions() {
        let bus = EventBus::new();
        let l = Listeners::new();
        let routed = l.subscribe_routed(&bus, Uuid::nil(), TOPIC, "test", "test");
        let topic = l.subscribe_topic(&bus, TOPIC);
        assert_eq!(l.count(TOPIC), 2);
        assert_eq!(bus.routed_subscription_count(), 1);
        drop(routed);
        drop(topic);
        assert_eq!(l.count(TOPIC), 0);
        assert_eq!(bus.routed_subscription_count(), 0);
    }
}
