//! Counters an operator (or a test) can read while the adapter runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the adapter's counters since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events emitted on the bus and acked.
    pub delivered: u64,
    /// Redeliveries and duplicate publications acked without being emitted.
    pub duplicates: u64,
    /// Messages that can never become an event (not JSON, too large);
    /// terminated in JetStream so they are not redelivered.
    pub rejected: u64,
    /// Core mode only: events dropped because the in-memory hold was full.
    pub dropped: u64,
    /// Events received and not delivered yet (held while nobody listens).
    pub held: u64,
    /// In-progress acks sent to keep held events from being redelivered.
    pub kept_alive: u64,
    /// Events emitted by replays.
    pub replayed: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    delivered: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    held: AtomicU64,
    kept_alive: AtomicU64,
    replayed: AtomicU64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Delivered,
    Duplicate,
    Rejected,
    Dropped,
    KeptAlive,
    Replayed,
}

impl Counters {
    pub(crate) fn bump(&self, which: Count) {
        let counter = match which {
            Count::Delivered => &self.delivered,
            Count::Duplicate => &self.duplicates,
            Count::Rejected => &self.rejected,
            Count::Dropped => &self.dropped,
            Count::KeptAlive => &self.kept_alive,
            Count::Replayed => &self.replayed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_held(&self, held: usize) {
        self.held
            .store(u64::try_from(held).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            delivered: self.delivered.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            kept_alive: self.kept_alive.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
        }
    }
}
