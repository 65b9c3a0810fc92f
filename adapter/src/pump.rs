//! The ordered hold between NATS and the bus, shared by both modes.
//!
//! Every received message is admitted into an inbox ordered by its key (the
//! stream sequence in JetStream mode, an arrival counter in core mode) and
//! delivered from its lowest key, one event at a time, while the capsule can
//! take events. The head of the inbox blocks everything behind it, so events
//! reach the bus in stream order even when the server redelivers an older
//! message after newer ones arrived. A message is settled (acked) only after
//! its event was committed on the bus — or, with capsule acks, after the
//! capsule acknowledged it; duplicates are acked without being emitted;
//! messages that can never become an event are terminated.
//!
//! After a reload, a replay set (sequences handed over shortly before the
//! old generation went away, or every event still waiting for a capsule
//! ack) is delivered again, lowest first, before the inbox goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tokio::time::{Duration, Instant};

use crate::dedupe::{Dedupe, Seen};
use crate::deliver::{Attempt, Deliverer, Outcome};
use crate::handover::Handovers;
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

/// Why a stored event cannot be fetched for a replay.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Gone from the stream, or not an event: skip it.
    Missing(String),
    /// NATS is away: try again later.
    Unavailable(String),
}

/// Reads a stored event back by stream sequence, for replays.
pub(crate) type Fetch = Arc<
    dyn Fn(u64) -> Pin<Box<dyn Future<Output = Result<Value, FetchError>> + Send>> + Send + Sync,
>;

/// One received message waiting for its delivery, or (capsule acks) for
/// the capsule's acknowledgement.
#[derive(Debug)]
struct Held<A> {
    data: Value,
    meta: EnvelopeMeta,
    stream_seq: Option<u64>,
    payload_id: Option<String>,
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

/// What an attempt is delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The head of the inbox, by key.
    Live(u64),
    /// A sequence of the replay set.
    Replay(u64),
}

/// What the driver does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Go on with the next attempt.
    Continue,
    /// Wait for a change of the listener registry.
    Hold,
    /// Try the same event again after a backoff.
    Retry,
}

/// The memory of the pump besides its inbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PumpConfig {
    pub(crate) dedupe_window: usize,
    /// Core mode holds at most this many; JetStream's `max_ack_pending`
    /// already bounds what the server hands out.
    pub(crate) capacity: Option<usize>,
    /// How far back handovers are remembered (the longest replay reach).
    pub(crate) reach: Duration,
    pub(crate) capsule_acks: bool,
}

/// Most handovers remembered, whatever the reach.
const HANDOVER_CAP: usize = 1 << 17;

/// The inbox, the dedupe memory, the replay state and the delivery side.
pub(crate) struct Pump<A> {
    inbox: BTreeMap<u64, Held<A>>,
    /// Capsule acks: delivered, waiting for the capsule's word.
    awaiting: BTreeMap<u64, Held<A>>,
    by_id: HashMap<String, BTreeSet<u64>>,
    replay: BTreeSet<u64>,
    handovers: Handovers,
    fetch: Option<Fetch>,
    dedupe: Dedupe,
    deliverer: Arc<Deliverer>,
    counters: Arc<Counters>,
    capacity: Option<usize>,
    capsule_acks: bool,
    /// Whether the last attempt found no listener (logged once per hold).
    holding: bool,
    /// The highest stream sequence delivered, where a re-created consumer
    /// resumes.
    highest: Option<u64>,
}

impl<A> std::fmt::Debug for Pump<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump")
            .field("inbox", &self.inbox.len())
            .field("awaiting", &self.awaiting.len())
            .field("replay", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl<A: Settle> Pump<A> {
    pub(crate) fn new(
        deliverer: Arc<Deliverer>,
        counters: Arc<Counters>,
        cfg: PumpConfig,
        fetch: Option<Fetch>,
    ) -> Self {
        Self {
            inbox: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            by_id: HashMap::new(),
            replay: BTreeSet::new(),
            handovers: Handovers::new(cfg.reach, HANDOVER_CAP),
            fetch,
            dedupe: Dedupe::new(cfg.dedupe_window),
            deliverer,
            counters,
            capacity: cfg.capacity,
            capsule_acks: cfg.capsule_acks,
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

    /// Whether anything is held unacked (so keep-alives are needed).
    pub(crate) fn is_empty(&self) -> bool {
        self.inbox.is_empty() && self.awaiting.is_empty()
    }

    /// Takes a received message into the inbox, or settles it right away
    /// when it is a duplicate or unusable.
    pub(crate) async fn admit(&mut self, m: Incoming<'_, A>) {
        if let Some(held) = self
            .awaiting
            .get_mut(&m.key)
            .or_else(|| self.inbox.get_mut(&m.key))
        {
            // A redelivery of a message still held here: keep its place,
            // answer through the newest delivery.
            held.settle = m.settle;
            return;
        }
        let seen = self.dedupe.check(m.stream_seq, m.meta.msg_id.as_deref());
        if seen != Seen::New {
            tracing::debug!(stream_seq = m.stream_seq, msg_id = m.meta.msg_id.as_deref(), seen = ?seen, "already delivered; acking without emitting");
            self.counters.bump(Count::Duplicate);
            m.settle.ack().await;
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
        let payload_id = map::payload_id(&data);
        self.inbox.insert(
            m.key,
            Held {
                data,
                meta: m.meta,
                stream_seq: m.stream_seq,
                payload_id,
                settle: m.settle,
            },
        );
        self.counters.set_held(self.inbox.len());
    }

    /// The next attempt: the replay set first, then the head of the inbox.
    pub(crate) fn next_attempt(&self) -> Option<(Target, Attempt)> {
        if let Some(&seq) = self.replay.first() {
            if let Some(held) = self.awaiting.get(&seq) {
                return Some((
                    Target::Replay(seq),
                    self.deliverer.attempt(held.data.clone(), None),
                ));
            }
            let fetch = self.fetch.clone()?;
            let deliverer = Arc::clone(&self.deliverer);
            let attempt: Attempt = Box::pin(async move {
                match fetch(seq).await {
                    Ok(data) => deliverer.attempt(data, None).await,
                    Err(FetchError::Missing(why)) => Outcome::Missing(why),
                    Err(FetchError::Unavailable(why)) => Outcome::Unavailable(why),
                }
            });
            return Some((Target::Replay(seq), attempt));
        }
        let (&key, held) = self.inbox.first_key_value()?;
        Some((
            Target::Live(key),
            self.deliverer.attempt(held.data.clone(), None),
        ))
    }

    /// Settles what an attempt did.
    pub(crate) async fn finish(&mut self, target: Target, outcome: Outcome, now: Instant) -> Next {
        match outcome {
            Outcome::Delivered => {
                if self.holding {
                    self.holding = false;
                    tracing::info!(topic = %self.deliverer.topic(), "a listener is back; delivering held events in order");
                }
                match target {
                    Target::Live(key) => self.delivered(key, now).await,
                    Target::Replay(seq) => {
                        self.replay.remove(&seq);
                        self.handovers.record(seq, now);
                        self.counters.bump(Count::Redelivered);
                        tracing::debug!(stream_seq = seq, "event delivered again after a reload");
                    }
                }
                Next::Continue
            }
            Outcome::NoListener => {
                if !self.holding {
                    self.holding = true;
                    tracing::info!(topic = %self.deliverer.topic(), held = self.inbox.len(), "no live listener of the topic; holding events unacked");
                }
                Next::Hold
            }
            Outcome::Retry(e) => {
                tracing::debug!(?target, error = %e, "the bus refused the reservation; retrying the same event");
                self.counters.bump(Count::Refused);
                Next::Retry
            }
            Outcome::Unavailable(why) => {
                tracing::warn!(?target, error = %why, "cannot read a stored event for the replay; retrying");
                Next::Retry
            }
            Outcome::Missing(why) => {
                if let Target::Replay(seq) = target {
                    self.replay.remove(&seq);
                    tracing::warn!(stream_seq = seq, reason = %why, "stored event gone; not delivered again");
                }
                Next::Continue
            }
            Outcome::Invalid => {
                match target {
                    Target::Live(key) => {
                        if let Some(held) = self.inbox.remove(&key) {
                            tracing::error!(
                                stream_seq = held.stream_seq,
                                msg_id = held.meta.msg_id.as_deref(),
                                "the capsule dispatcher cannot represent this event; terminating it"
                            );
                            self.counters.bump(Count::Rejected);
                            held.settle.term().await;
                        }
                    }
                    Target::Replay(seq) => {
                        self.replay.remove(&seq);
                    }
                }
                self.counters.set_held(self.inbox.len());
                Next::Continue
            }
        }
    }

    async fn delivered(&mut self, key: u64, now: Instant) {
        let Some(held) = self.inbox.remove(&key) else {
            return;
        };
        self.counters.set_held(self.inbox.len());
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
        if let Some(seq) = held.stream_seq {
            self.handovers.record(seq, now);
        }
        match (&held.payload_id, self.capsule_acks) {
            (Some(id), true) => {
                self.by_id.entry(id.clone()).or_default().insert(key);
                self.awaiting.insert(key, held);
                self.counters.set_awaiting(self.awaiting.len());
            }
            (None, true) => {
                // Nothing the capsule could acknowledge it by.
                tracing::warn!(
                    stream_seq = held.stream_seq,
                    "event without payload.id; acked on delivery"
                );
                held.settle.ack().await;
            }
            (_, false) => held.settle.ack().await,
        }
    }

    /// Starts (or widens) a replay after a reload: every event handed over
    /// at or after `since` and, with capsule acks, every event the capsule
    /// has not acknowledged.
    pub(crate) fn start_replay(&mut self, since: Instant) {
        if self.fetch.is_none() && !self.capsule_acks {
            tracing::debug!("nothing stored to replay (core mode)");
            return;
        }
        let again: BTreeSet<u64> = if self.capsule_acks {
            self.awaiting.keys().copied().collect()
        } else {
            self.handovers.since(since)
        };
        if again.is_empty() {
            return;
        }
        self.counters.bump(Count::Replays);
        self.counters.replay_size(again.len());
        tracing::info!(
            events = again.len(),
            first = again.first(),
            last = again.last(),
            "delivering again what the previous capsule generation may not have processed"
        );
        self.replay.extend(again);
    }

    /// The capsule acknowledged these `payload.id`s.
    pub(crate) async fn capsule_acked(&mut self, ids: Vec<String>) {
        for id in ids {
            let Some(keys) = self.by_id.remove(&id) else {
                tracing::trace!(id, "capsule ack for nothing awaiting");
                continue;
            };
            for key in keys {
                self.replay.remove(&key);
                if let Some(held) = self.awaiting.remove(&key) {
                    self.counters.bump(Count::CapsuleAcked);
                    held.settle.ack().await;
                }
            }
        }
        self.counters.set_awaiting(self.awaiting.len());
    }

    /// Keeps every held message alive on the server.
    pub(crate) async fn progress_all(&self) {
        for held in self.inbox.values().chain(self.awaiting.values()) {
            held.settle.progress().await;
            self.counters.bump(Count::KeptAlive);
        }
        tracing::trace!(
            held = self.inbox.len(),
            awaiting = self.awaiting.len(),
            "in-progress acks sent"
        );
    }

    /// Gives every held message back, lowest first, so the next consumer
    /// instance receives them first and in order. Nothing of an abandoned
    /// attempt was committed, so its event is among them.
    pub(crate) async fn nak_all(&mut self) -> usize {
        let mut all: BTreeMap<u64, Held<A>> = std::mem::take(&mut self.inbox);
        all.append(&mut self.awaiting);
        self.by_id.clear();
        self.replay.clear();
        let n = all.len();
        for (_, held) in all {
            held.settle.nak().await;
        }
        self.counters.set_held(0);
        self.counters.set_awaiting(0);
        n
    }

    /// Forgets held messages without settling them (core mode shutdown, or
    /// a consumer that was deleted under us).
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.inbox.len() + self.awaiting.len();
        self.inbox.clear();
        self.awaiting.clear();
        self.by_id.clear();
        self.replay.clear();
        self.counters.set_held(0);
        self.counters.set_awaiting(0);
        n
    }
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
