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
    /// Events emitted by replays on request.
    pub replayed: u64,
    /// Events delivered again after a capsule reload (the replay window, or
    /// events the capsule had not acknowledged): the duplicates a reload
    /// can cost, at most.
    pub redelivered: u64,
    /// Reload replays started.
    pub replays: u64,
    /// The most events one reload replay delivered again: what was handed
    /// over within the replay window before the generation went away.
    pub largest_replay: u64,
    /// Reservations the bus refused (`Closed`, `SelfDependency`) and that
    /// were retried.
    pub refused: u64,
    /// Events acked on the capsule's own acknowledgement.
    pub capsule_acked: u64,
    /// Capsule acks: delivered events waiting for the capsule's word.
    pub awaiting: u64,
    /// Gateway status messages relayed onto the bus.
    pub status_relayed: u64,
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
    redelivered: AtomicU64,
    replays: AtomicU64,
    largest_replay: AtomicU64,
    refused: AtomicU64,
    capsule_acked: AtomicU64,
    awaiting: AtomicU64,
    status_relayed: AtomicU64,
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
    Redelivered,
    Replays,
    Refused,
    CapsuleAcked,
    StatusRelayed,
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
            Count::Redelivered => &self.redelivered,
            Count::Replays => &self.replays,
            Count::Refused => &self.refused,
            Count::CapsuleAcked => &self.capsule_acked,
            Count::StatusRelayed => &self.status_relayed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_held(&self, held: usize) {
        self.held
            .store(u64::try_from(held).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn replay_size(&self, size: usize) {
        self.largest_replay
            .fetch_max(u64::try_from(size).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn set_awaiting(&self, awaiting: usize) {
        self.awaiting.store(
            u64::try_from(awaiting).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
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
            redelivered: self.redelivered.load(Ordering::Relaxed),
            replays: self.replays.load(Ordering::Relaxed),
            largest_replay: self.largest_replay.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            capsule_acked: self.capsule_acked.load(Ordering::Relaxed),
            awaiting: self.awaiting.load(Ordering::Relaxed),
            status_relayed: self.status_relayed.load(Ordering::Relaxed),
        }
    }
}
