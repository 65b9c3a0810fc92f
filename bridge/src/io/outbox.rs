//! The bounded buffer between a shard and its publisher: the shard's
//! [`UnackedLog`] behind a lock, with the wake-ups each side waits for.
//!
//! The shard never waits on NATS: it pushes without blocking, and a full
//! buffer is a signal, not a place where events are dropped. Entries stay
//! until NATS acknowledged them, so the buffer bounds everything not yet
//! stored.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, watch};

use crate::gateway::machine::Publish;
use crate::gateway::unacked::UnackedLog;
pub(crate) use crate::gateway::unacked::{Entry, Full, Mark};

#[derive(Debug)]
struct State {
    log: UnackedLog,
    /// A push was refused; the shard waits for room.
    refused: bool,
}

/// The log of one shard, shared by its shard and publisher tasks.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the publisher: something to send.
    work: Notify,
    /// Wakes the shard: room again after a refusal.
    room: Notify,
    /// The resume point after each completion, for the shard.
    acks: watch::Sender<Mark>,
}

impl Outbox {
    /// An outbox of at most `max_events` events and `max_bytes` bytes.
    #[must_use]
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                log: UnackedLog::new(max_events, max_bytes),
                refused: false,
            }),
            work: Notify::new(),
            room: Notify::new(),
            acks: watch::Sender::new((0, 0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the log completes under the lock without calling
        // out, so a poisoned lock still holds a consistent log.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an event, or refuses it when the buffer is full.
    ///
    /// # Errors
    /// [`Full`] names the refused event.
    pub(crate) fn push(&self, meta: Publish) -> Result<(), Full> {
        let mut s = self.lock();
        let pushed = s.log.push(meta);
        if pushed.is_err() {
            s.refused = true;
        }
        drop(s);
        if pushed.is_ok() {
            self.work.notify_one();
        }
        pushed
    }

    /// A dispatch that is not stored; the new resume point when it
    /// committed at once.
    pub(crate) fn skip(&self, epoch: u64, seq: u64) -> Option<Mark> {
        self.lock().log.skip(epoch, seq)
    }

    /// The next event not yet handed to NATS.
    #[must_use]
    pub(crate) fn next_unsent(&self) -> Option<Entry> {
        self.lock().log.next_unsent()
    }

    /// The oldest event was stored or deliberately dropped.
    pub(crate) fn complete_front(&self) {
        let mut s = self.lock();
        let committed = s.log.complete_front();
        let wake = s.refused && s.log.below_low_water();
        if wake {
            s.refused = false;
        }
        drop(s);
        if let Some(mark) = committed {
            self.acks.send_replace(mark);
        }
        if wake {
            self.room.notify_one();
        }
    }

    /// Publishing failed: every event will be sent again, in order.
    pub(crate) fn rewind(&self) {
        self.lock().log.rewind();
    }

    /// Buffered events (sent or not).
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.lock().log.events()
    }

    /// Whether no event is buffered.
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The resume point, as it moves.
    #[must_use]
    pub(crate) fn acks(&self) -> watch::Receiver<Mark> {
        self.acks.subscribe()
    }

    /// Resolves when there is something new to send.
    pub(crate) async fn work(&self) {
        self.work.notified().await;
    }

    /// Resolves once the buffer drained to half after a refusal.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            {
                let s = self.lock();
                if !s.refused || s.log.below_low_water() {
                    return;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use discord_bridge_schemas::AgentEventKind;

    use super::*;
    use crate::gateway::machine::PublishKind;

    fn event(epoch: u64, seq: u64, size: usize) -> Publish {
        Publish {
            epoch,
            session_id: Arc::from("s"),
            seq,
            kind: PublishKind::Agent(AgentEventKind::Message),
            guild_id: None,
            body: vec![b'x'; size],
        }
    }

    #[tokio::test]
    async fn room_resolves_at_low_water_after_a_refusal() {
        let o = Arc::new(Outbox::new(4, 1000));
        for seq in 1..=4 {
            o.push(event(1, seq, 1)).unwrap();
        }
        assert!(o.push(event(1, 5, 1)).is_err());
        let waiter = tokio::spawn({
            let o = Arc::clone(&o);
            async move { o.room().await }
        });
        let mut acks = o.acks();
        o.complete_front();
        assert!(!waiter.is_finished());
        assert_eq!(*acks.borrow_and_update(), (1, 1));
        o.complete_front();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("room after draining to half")
            .unwrap();
    }
}
