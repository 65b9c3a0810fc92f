//! Pure de-duplication of delivered events, by stream sequence and by
//! `Nats-Msg-Id`.
//!
//! Two different things can bring an event back after it was delivered:
//!
//! * a **redelivery** of the same stream message — its ack was lost (NATS
//!   disconnected between delivery and ack) and `ack_wait` expired. Same
//!   stream sequence.
//! * a **duplicate publication** — the bridge published the same Discord
//!   dispatch (`{session}:{seq}`) again after JetStream's duplicate window
//!   had passed, or in core-NATS mode where there is no window at all. Same
//!   `Nats-Msg-Id`, new stream sequence.
//!
//! Only *delivered* events are recorded: an event that was held, or whose
//! delivery was uncertain, must be emitted when it comes back. Both memories
//! are bounded windows of the most recent entries, so memory stays flat; an
//! entry older than the window is forgotten (the JetStream duplicate window
//! and prompt acks make that case practically unreachable). The window is
//! per process: a redelivery reaching a *restarted* adapter is emitted again
//! (at-least-once).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// What [`Dedupe::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never delivered (as far as the window remembers): emit it.
    New,
    /// This stream sequence was already delivered: ack it, do not emit.
    Redelivery,
    /// Another stream message with this `Nats-Msg-Id` was already delivered:
    /// ack it, do not emit.
    DuplicateId,
}

/// The memory of recently delivered events.
#[derive(Debug)]
pub struct Dedupe {
    seqs: Window<u64>,
    ids: Window<String>,
}

impl Dedupe {
    /// Remembers up to `capacity` sequences and `capacity` message ids.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            seqs: Window::new(capacity),
            ids: Window::new(capacity),
        }
    }

    /// Whether an event with this stream sequence and message id was
    /// already delivered. Either may be absent (core NATS has no sequence;
    /// a message not published by the bridge may have no id).
    #[must_use]
    pub fn check(&self, stream_seq: Option<u64>, msg_id: Option<&str>) -> Seen {
        if stream_seq.is_some_and(|s| self.seqs.contains(&s)) {
            Seen::Redelivery
        } else if msg_id.is_some_and(|id| self.ids.contains(id)) {
            Seen::DuplicateId
        } else {
            Seen::New
        }
    }

    /// Records a delivered event.
    pub fn record(&mut self, stream_seq: Option<u64>, msg_id: Option<&str>) {
        if let Some(s) = stream_seq {
            self.seqs.insert(s);
        }
        if let Some(id) = msg_id {
            self.ids.insert(id.to_owned());
        }
    }
}

/// A set that forgets its oldest entry past `capacity`.
#[derive(Debug)]
struct Window<T> {
    set: HashSet<T>,
    order: VecDeque<T>,
    capacity: usize,
}

impl<T: Eq + Hash + Clone> Window<T> {
    fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn contains<Q>(&self, item: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.set.contains(item)
    }

    fn insert(&mut self, item: T) {
        if !self.set.insert(item.clone()) {
            return;
        }
        self.order.push_back(item);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_until_delivered() {
        let mut d = Dedupe::new(10);
        assert_eq!(d.check(Some(1), Some("s:1")), Seen::New);
        d.record(Some(1), Some("s:1"));
        assert_eq!(d.check(Some(1), Some("s:1")), Seen::Redelivery);
        assert_eq!(d.check(Some(2), Some("s:1")), Seen::DuplicateId);
        assert_eq!(d.check(Some(2), Some("s:2")), Seen::New);
        assert_eq!(d.check(Some(2), None), Seen::New);
        assert_eq!(d.check(None, Some("s:1")), Seen::DuplicateId);
        assert_eq!(d.check(None, None), Seen::New);
    }

    #[test]
    fn the_window_forgets_the_oldest() {
        let mut d = Dedupe::new(2);
        for s in 1..=3 {
            d.record(Some(s), Some(&format!("id{s}")));
        }
        assert_eq!(d.check(Some(1), Some("id1")), Seen::New);
        assert_eq!(d.check(Some(2), None), Seen::Redelivery);
        assert_eq!(d.check(None, Some("id3")), Seen::DuplicateId);
    }

    #[test]
    fn recording_twice_does_not_evict_early() {
        let mut d = Dedupe::new(2);
        d.record(Some(1), None);
        d.record(Some(1), None);
        d.record(Some(2), None);
        assert_eq!(d.check(Some(1), None), Seen::Redelivery);
    }
}
