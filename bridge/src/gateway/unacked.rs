//! The one record of what is not yet stored: the events of a shard that
//! wait for NATS, and the resume point derived from them.
//!
//! Every dispatch of a session either becomes an event to publish or is
//! skipped (GUILD_CREATE, the bot's own messages…). Both go into
//! [`UnackedLog`] in sequence order: events until NATS acknowledges them,
//! skips as run-length markers behind the event they wait for. The resume
//! point — the last sequence up to which everything is stored — is derived
//! here and nowhere else: it advances only when the front of the log
//! completes, so it can never pass an event JetStream has not acknowledged,
//! and a skip can only commit once everything before it has.
//!
//! Pure data: the shell shares it between the shard and its publisher
//! behind a lock (`io::outbox`), and tells the machine where the resume
//! point moved ([`Input::Acked`](super::machine::Input)).

use std::collections::VecDeque;

use bytes::Bytes;

use super::machine::Publish;

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

/// A position in a session: `(epoch, seq)`.
pub type Mark = (u64, u64);

#[derive(Debug)]
enum Item {
    Event(Entry),
    /// Skipped dispatches of `epoch` up to and including `through`.
    Skip {
        epoch: u64,
        through: u64,
    },
}

impl Item {
    const fn mark(&self) -> Mark {
        match self {
            Self::Event(e) => (e.meta.epoch, e.meta.seq),
            Self::Skip { epoch, through } => (*epoch, *through),
        }
    }
}

/// Events not yet stored, skips queued behind them, and the resume point.
///
/// Invariant: the front item is never a skip (a skip with nothing before it
/// commits at once), so completing the front always completes an event.
#[derive(Debug)]
pub struct UnackedLog {
    items: VecDeque<Item>,
    events: usize,
    bytes: usize,
    /// Items before this index were handed to NATS and await their ack.
    sent: usize,
    /// Everything up to here is stored or skipped.
    committed: Mark,
    max_events: usize,
    max_bytes: usize,
}

impl UnackedLog {
    /// A log of at most `max_events` events and `max_bytes` bytes.
    #[must_use]
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            events: 0,
            bytes: 0,
            sent: 0,
            committed: (0, 0),
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Adds an event, or refuses it when the log is full. A single event
    /// larger than the byte cap still fits an empty log.
    ///
    /// # Errors
    /// [`Full`] names the refused event; the log is unchanged.
    pub fn push(&mut self, meta: Publish) -> Result<(), Full> {
        let size = meta.body.len();
        if !self.fits(size) {
            return Err(Full {
                epoch: meta.epoch,
                seq: meta.seq,
            });
        }
        self.bytes += size;
        self.events += 1;
        let mut meta = meta;
        let body = Bytes::from(std::mem::take(&mut meta.body));
        self.items.push_back(Item::Event(Entry { meta, body }));
        Ok(())
    }

    /// Whether an event of `size` bytes would be taken now.
    #[must_use]
    pub const fn fits(&self, size: usize) -> bool {
        self.events < self.max_events && (self.events == 0 || self.bytes + size <= self.max_bytes)
    }

    /// A dispatch that is not stored. Returns the new resume point when it
    /// committed at once (nothing was waiting before it).
    pub fn skip(&mut self, epoch: u64, seq: u64) -> Option<Mark> {
        match self.items.back_mut() {
            None => {
                self.committed = (epoch, seq);
                return Some(self.committed);
            }
            Some(Item::Skip { epoch: e, through }) if *e == epoch => {
                *through = (*through).max(seq);
            }
            Some(_) => self.items.push_back(Item::Skip {
                epoch,
                through: seq,
            }),
        }
        None
    }

    /// The next event not yet handed to NATS.
    pub fn next_unsent(&mut self) -> Option<Entry> {
        while let Some(item) = self.items.get(self.sent) {
            self.sent += 1;
            if let Item::Event(e) = item {
                return Some(e.clone());
            }
        }
        None
    }

    /// The oldest event was stored (or deliberately dropped): remove it and
    /// the skips that waited only for it. Returns the new resume point.
    pub fn complete_front(&mut self) -> Option<Mark> {
        let Some(Item::Event(entry)) = self.items.pop_front() else {
            return None;
        };
        self.events -= 1;
        self.bytes -= entry.body.len();
        self.sent = self.sent.saturating_sub(1);
        self.committed = (entry.meta.epoch, entry.meta.seq);
        while let Some(Item::Skip { .. }) = self.items.front() {
            if let Some(item) = self.items.pop_front() {
                self.committed = item.mark();
            }
            self.sent = self.sent.saturating_sub(1);
        }
        Some(self.committed)
    }

    /// Publishing failed: every event still here is sent again, in order.
    pub const fn rewind(&mut self) {
        self.sent = 0;
    }

    /// Everything up to this point is stored or skipped.
    #[must_use]
    pub const fn committed(&self) -> Mark {
        self.committed
    }

    /// Events waiting for their ack (sent or not).
    #[must_use]
    pub const fn events(&self) -> usize {
        self.events
    }

    /// Their bytes.
    #[must_use]
    pub const fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the log drained to half after being full: room to resume.
    #[must_use]
    pub const fn below_low_water(&self) -> bool {
        self.events <= self.max_events / 2 && self.bytes <= self.max_bytes / 2
    }
}

#[cfg(test)]
mod tests;
