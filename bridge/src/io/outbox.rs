//! The bounded buffer between a shard and its publisher: the shard's
//! [`UnackedLog`] behind a lock, with the wake-ups each side waits for.
//!
//! The shard never waits on NATS: it pushes without blocking, and a full
//! buffer is a signal, not a place where events are dropped: the shard keeps
//! the refused event and stops reading the socket until [`Outbox::room`]
//! says it fits again. Entries stay until NATS acknowledged them, so the
//! buffer bounds everything not yet stored.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, watch};

use crate::gateway::machine::Publish;
use crate::gateway::unacked::UnackedLog;
pub(crate) use crate::gateway::unacked::{Entry, Mark};

#[derive(Debug)]
struct State {
    log: UnackedLog,
    /// A push of this many bytes was refused; the shard waits for room.
    refused: Option<usize>,
}

impl State {
    /// Room for the refused event, with hysteresis: the log drained to half
    /// (so reading resumes for a burst, not for one event) and it fits.
    const fn room(&self) -> bool {
        match self.refused {
            None => true,
            Some(size) => self.log.below_low_water() && self.log.fits(size),
        }
    }
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
                refused: None,
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
    /// The refused event, given back: the shard keeps it until
    /// [`Outbox::room`].
    pub(crate) fn push(&self, meta: Publish) -> Result<(), Publish> {
        let mut s = self.lock();
        let size = meta.body.len();
        if !s.log.fits(size) {
            s.refused = Some(size);
            return Err(meta);
        }
        s.refused = None;
        // It fits, so the log takes it.
        let _ = s.log.push(meta);
        drop(s);
        self.work.notify_one();
        Ok(())
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
        let wake = s.refused.is_some() && s.room();
        if wake {
            s.refused = None;
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

    /// Buffered events and their bytes, read together.
    #[must_use]
    pub(crate) fn fill(&self) -> (usize, usize) {
        let s = self.lock();
        (s.log.events(), s.log.bytes())
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

    /// Resolves once the buffer drained to half after a refusal and the
    /// refused event fits.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            if self.lock().room() {
                return;
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
