//! The ordered hold between NATS and the bus, shared by both modes.
//!
//! Every received message is admitted into an inbox ordered by its key (the
//! stream sequence in JetStream mode, an arrival counter in core mode) and
//! the inbox is drained from its lowest key while a listener is there. The
//! head of the inbox blocks everything behind it, so events reach the bus in
//! stream order even when the server redelivers an older message after
//! newer ones arrived. A message is settled (acked) only after its event was
//! delivered; duplicates are acked without being emitted; messages that can
//! never become an event are terminated.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::dedupe::{Dedupe, Seen};
use crate::deliver::{Deliverer, Outcome};
use crate::map::{self, EnvelopeMeta};
use crate::stats::{Count, Counters};

/// How the pump settles a message with NATS. JetStream acks; core NATS has
/// nothing to settle.
pub(crate) trait Settle: Send {
    /// Delivered or duplicate: never send it again.
    fn ack(self) -> impl Future<Output = ()> + Send;
    /// Still held: restart the server's ack timer.
    fn progress(&self) -> impl Future<Output = ()> + Send;
    /// Given back at shutdown: redeliver it (to the next instance) now.
    fn nak(self) -> impl Future<Output = ()> + Send;
    /// Unusable: never redeliver, never emit.
    fn term(self) -> impl Future<Output = ()> + Send;
}

impl Settle for () {
    async fn ack(self) {}
    async fn progress(&self) {}
    async fn nak(self) {}
    async fn term(self) {}
}

/// One received message waiting for its delivery.
#[derive(Debug)]
struct Held<A> {
    data: Value,
    meta: EnvelopeMeta,
    stream_seq: Option<u64>,
    settle: A,
}

/// A received message, before admission.
#[derive(Debug)]
pub(crate) struct Incoming<'a, A> {
    /// Inbox order: the stream sequence, or an arrival counter.
    pub(crate) key: u64,
    /// The JetStream stream sequence, for redelivery detection.
    pub(crate) stream_seq: Option<u64>,
    pub(crate) meta: EnvelopeMeta,
    pub(crate) payload: &'a [u8],
    pub(crate) settle: A,
}

/// The inbox, the dedupe memory and the delivery side.
#[derive(Debug)]
pub(crate) struct Pump<A> {
    inbox: BTreeMap<u64, Held<A>>,
    dedupe: Dedupe,
    deliverer: Arc<Deliverer>,
    counters: Arc<Counters>,
    /// Core mode holds at most this many; JetStream's `max_ack_pending`
    /// already bounds what the server hands out.
    capacity: Option<usize>,
    /// Whether the last drain stopped for lack of a listener (logged once
    /// per hold, not per message).
    holding: bool,
    /// The highest stream sequence delivered, where a re-created consumer
    /// resumes.
    highest: Option<u64>,
}

impl<A: Settle> Pump<A> {
    pub(crate) fn new(
        deliverer: Arc<Deliverer>,
        counters: Arc<Counters>,
        dedupe_window: usize,
        capacity: Option<usize>,
    ) -> Self {
        Self {
            inbox: BTreeMap::new(),
            dedupe: Dedupe::new(dedupe_window),
            deliverer,
            counters,
            capacity,
            holding: false,
            highest: None,
        }
    }

    pub(crate) fn highest_delivered(&self) -> Option<u64> {
        self.highest
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inbox.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inbox.is_empty()
    }

    /// Takes a received message into the inbox, or settles it right away
    /// when it is a duplicate or unusable.
    pub(crate) async fn admit(&mut self, m: Incoming<'_, A>) {
        let seen = self.dedupe.check(m.stream_seq, m.meta.msg_id.as_deref());
        if seen != Seen::New {
            tracing::debug!(stream_seq = m.stream_seq, msg_id = m.meta.msg_id.as_deref(), seen = ?seen, "already delivered; acking without emitting");
            self.counters.bump(Count::Duplicate);
            m.settle.ack().await;
            return;
        }
        if let Some(held) = self.inbox.get_mut(&m.key) {
            // A redelivery of a message still held here: keep its place,
            // answer through the newest delivery.
            held.settle = m.settle;
            return;
        }
        let data = match map::decode(self.deliverer.topic(), m.payload) {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(stream_seq = m.stream_seq, msg_id = m.meta.msg_id.as_deref(), event = m.meta.event.as_deref(), shard = m.meta.shard.as_deref(), error = %e, "message cannot be emitted; terminating it");
                self.counters.bump(Count::Rejected);
                m.settle.term().await;
                return;
            }
        };
        if self.capacity.is_some_and(|cap| self.inbox.len() >= cap) {
            tracing::warn!(
                msg_id = m.meta.msg_id.as_deref(),
                event = m.meta.event.as_deref(),
                held = self.inbox.len(),
                "core mode: hold is full; dropping the event (at most once)"
            );
            self.counters.bump(Count::Dropped);
            return;
        }
        self.inbox.insert(
            m.key,
            Held {
                data,
                meta: m.meta,
                stream_seq: m.stream_seq,
                settle: m.settle,
            },
        );
        self.counters.set_held(self.inbox.len());
    }

    /// Delivers from the head of the inbox until it is empty or the head
    /// cannot be delivered.
    pub(crate) async fn drain(&mut self) {
        while let Some(entry) = self.inbox.first_entry() {
            let held = entry.get();
            match self.deliverer.try_deliver(&held.data, None) {
                Outcome::Delivered => {
                    let held = entry.remove();
                    self.dedupe
                        .record(held.stream_seq, held.meta.msg_id.as_deref());
                    self.highest = self.highest.max(held.stream_seq);
                    self.counters.bump(Count::Delivered);
                    tracing::debug!(
                        stream_seq = held.stream_seq,
                        msg_id = held.meta.msg_id.as_deref(),
                        event = held.meta.event.as_deref(),
                        shard = held.meta.shard.as_deref(),
                        guild = held.meta.guild.as_deref(),
                        "event delivered"
                    );
                    held.settle.ack().await;
                    if self.holding {
                        self.holding = false;
                        tracing::info!(topic = %self.deliverer.topic(), "a listener is back; delivering held events in order");
                    }
                }
                Outcome::NoListener => {
                    if !self.holding {
                        self.holding = true;
                        tracing::info!(topic = %self.deliverer.topic(), held = self.inbox.len(), "no live listener of the topic; holding events unacked");
                    }
                    break;
                }
            }
        }
        self.counters.set_held(self.inbox.len());
    }

    /// Keeps every held message alive on the server.
    pub(crate) async fn progress_all(&self) {
        for held in self.inbox.values() {
            held.settle.progress().await;
            self.counters.bump(Count::KeptAlive);
        }
        tracing::trace!(held = self.inbox.len(), "in-progress acks sent");
    }

    /// Gives every held message back, lowest first, so the next consumer
    /// instance receives them first and in order.
    pub(crate) async fn nak_all(&mut self) -> usize {
        let n = self.inbox.len();
        while let Some((_, held)) = self.inbox.pop_first() {
            held.settle.nak().await;
        }
        self.counters.set_held(0);
        n
    }

    /// Forgets held messages without settling them (core mode shutdown, or
    /// a consumer that was deleted under us).
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.inbox.len();
        self.inbox.clear();
        self.counters.set_held(0);
        n
    }
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
