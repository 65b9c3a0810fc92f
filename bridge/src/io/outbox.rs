//! The bounded buffer between a shard and its publisher.
//!
//! The shard never waits on NATS: it pushes without blocking, and a full
//! buffer is a signal (the shard closes the gateway and resumes later), not a
//! place where events are dropped. Entries stay here until NATS acknowledged
//! them, so the buffer bounds everything not yet stored.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::gateway::machine::Publish;

/// One buffered event.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What and where.
    pub meta: Publish,
    /// The body, shareable with in-flight publishes.
    pub body: Bytes,
}

/// The buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// The session of the refused event.
    pub epoch: u64,
    /// Its sequence.
    pub seq: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Entry>,
    bytes: usize,
    /// Entries before this index were handed to NATS and await their ack.
    sent: usize,
    /// A push was refused; the shard waits for room.
    refused: bool,
}

/// The outbox of one shard.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    max_events: usize,
    max_bytes: usize,
    /// Wakes the publisher: something to send.
    work: Notify,
    /// Wakes the shard: room again after a refusal.
    room: Notify,
}

impl Outbox {
    /// A buffer of at most `max_events` events and `max_bytes` bytes.
    #[must_use]
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            work: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated
        // in a way that matters more than losing the process, so recover it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an event, or refuses it when the buffer is full.
    ///
    /// # Errors
    /// [`Full`] names the refused event.
    pub fn push(&self, meta: Publish) -> Result<(), Full> {
        let mut s = self.lock();
        let size = meta.body.len();
        let over = s.queue.len() >= self.max_events
            || (!s.queue.is_empty() && s.bytes + size > self.max_bytes);
        if over {
            s.refused = true;
            return Err(Full {
                epoch: meta.epoch,
                seq: meta.seq,
            });
        }
        s.bytes += size;
        let mut meta = meta;
        let body = Bytes::from(std::mem::take(&mut meta.body));
        s.queue.push_back(Entry { meta, body });
        drop(s);
        self.work.notify_one();
        Ok(())
    }

    /// The next entry not yet handed to NATS.
    #[must_use]
    pub fn next_unsent(&self) -> Option<Entry> {
        let mut s = self.lock();
        let entry = s.queue.get(s.sent).cloned()?;
        s.sent += 1;
        Some(entry)
    }

    /// The oldest entry was stored (or deliberately skipped): drop it.
    pub fn complete_front(&self) -> Option<Entry> {
        let mut s = self.lock();
        let entry = s.queue.pop_front()?;
        s.bytes -= entry.body.len();
        s.sent = s.sent.saturating_sub(1);
        let wake = s.refused && self.below_low_water(&s);
        if wake {
            s.refused = false;
        }
        drop(s);
        if wake {
            self.room.notify_one();
        }
        Some(entry)
    }

    /// Publishing failed: every entry will be sent again, in order.
    pub fn rewind(&self) {
        self.lock().sent = 0;
    }

    /// Buffered events (sent or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing is buffered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buffered bytes.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Resolves when there is something new to send.
    pub async fn work(&self) {
        self.work.notified().await;
    }

    /// Resolves once the buffer drained to half after a refusal.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            {
                let s = self.lock();
                if !s.refused || self.below_low_water(&s) {
                    return;
                }
            }
            notified.await;
        }
    }

    fn below_low_water(&self, s: &State) -> bool {
        s.queue.len() <= self.max_events / 2 && s.bytes <= self.max_bytes / 2
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use discord_bridge_schemas::AgentEventKind;

    use super::*;
    use crate::gateway::machine::PublishKind;

    fn event(seq: u64, size: usize) -> Publish {
        Publish {
            epoch: 1,
            session_id: Arc::from("s"),
            seq,
            kind: PublishKind::Agent(AgentEventKind::Message),
            guild_id: None,
            body: vec![b'x'; size],
        }
    }

    #[test]
    fn bounded_by_events_and_bytes() {
        let o = Outbox::new(3, 100);
        assert!(o.push(event(1, 10)).is_ok());
        assert!(o.push(event(2, 10)).is_ok());
        assert_eq!(o.push(event(3, 90)), Err(Full { epoch: 1, seq: 3 }));
        assert!(o.push(event(4, 10)).is_ok());
        assert_eq!(o.push(event(5, 1)), Err(Full { epoch: 1, seq: 5 }));
        assert_eq!((o.len(), o.bytes()), (3, 30));
        // A single event larger than the byte cap still fits an empty buffer.
        let o = Outbox::new(3, 100);
        assert!(o.push(event(1, 500)).is_ok());
    }

    #[test]
    fn entries_stay_until_completed_and_rewind_resends() {
        let o = Outbox::new(10, 1000);
        for seq in 1..=3 {
            o.push(event(seq, 1)).unwrap();
        }
        assert_eq!(o.next_unsent().unwrap().meta.seq, 1);
        assert_eq!(o.next_unsent().unwrap().meta.seq, 2);
        o.rewind();
        assert_eq!(o.next_unsent().unwrap().meta.seq, 1);
        assert_eq!(o.complete_front().unwrap().meta.seq, 1);
        assert_eq!(o.next_unsent().unwrap().meta.seq, 2);
        assert_eq!(o.len(), 2);
    }

    #[tokio::test]
    async fn room_resolves_at_low_water_after_a_refusal() {
        let o = Arc::new(Outbox::new(4, 1000));
        for seq in 1..=4 {
            o.push(event(seq, 1)).unwrap();
        }
        assert!(o.push(event(5, 1)).is_err());
        let waiter = tokio::spawn({
            let o = Arc::clone(&o);
            async move { o.room().await }
        });
        o.complete_front();
        assert!(!waiter.is_finished());
        o.complete_front();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("room after draining to half")
            .unwrap();
    }
}
