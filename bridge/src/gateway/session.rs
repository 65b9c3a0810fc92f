//! A gateway session as the bridge tracks it, and the commit tracker that
//! decides where a RESUME starts.
//!
//! The rule (DESIGN §5.5): a RESUME asks Discord to replay everything after the
//! last sequence whose events are all safely stored, so a NATS outage never
//! loses an event that Discord could still replay. Dispatches that are not
//! published (GUILD_CREATE, the bot's own messages…) are "stored" at once, but
//! only in order: they cannot move the resume point past an earlier event that
//! JetStream has not acknowledged yet.

use std::collections::VecDeque;
use std::sync::Arc;

/// One gateway session (from READY until Discord invalidates it).
#[derive(Debug, Clone)]
pub struct Session {
    /// Discord's session id (shared with every event published in it).
    pub id: Arc<str>,
    /// Where to RESUME (validated when READY arrived), if usable.
    pub resume_url: Option<String>,
    /// A local number that tells this session's acks from an earlier one's.
    pub epoch: u64,
    /// The latest sequence received (what heartbeats carry).
    pub last_seq: u64,
    /// Every sequence up to here was handled: relayed into the outbox or
    /// deliberately skipped. Replays at or below it are not relayed again.
    pub handled_through: u64,
    /// Which sequences are stored and which still wait for their ack.
    pub commits: CommitTracker,
}

impl Session {
    /// A session that starts with READY.
    #[must_use]
    pub fn new(id: Arc<str>, resume_url: Option<String>, epoch: u64) -> Self {
        Self {
            id,
            resume_url,
            epoch,
            last_seq: 0,
            handled_through: 0,
            commits: CommitTracker::default(),
        }
    }
}

/// Tracks which dispatch sequences are durably handled.
#[derive(Debug, Clone, Default)]
pub struct CommitTracker {
    committed: u64,
    /// Sequences after `committed`, in order: `(seq, done)`. A run of
    /// skipped dispatches is one entry holding the run's last seq.
    pending: VecDeque<(u64, bool)>,
}

impl CommitTracker {
    /// The highest sequence up to which everything is stored.
    #[must_use]
    pub const fn committed(&self) -> u64 {
        self.committed
    }

    /// Published events still waiting for their ack (including skipped
    /// runs queued behind them).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A dispatch was handed to the publisher (`published`) or skipped.
    pub fn record(&mut self, seq: u64, published: bool) {
        if published {
            self.pending.push_back((seq, false));
            return;
        }
        match self.pending.back_mut() {
            None => self.committed = self.committed.max(seq),
            Some((last, true)) => *last = (*last).max(seq),
            Some((_, false)) => self.pending.push_back((seq, true)),
        }
    }

    /// The publisher could not take the event `seq` that was just recorded:
    /// forget it, as if it never arrived.
    pub fn unrecord(&mut self, seq: u64) {
        if self.pending.back() == Some(&(seq, false)) {
            self.pending.pop_back();
        }
    }

    /// JetStream acknowledged every published event up to `seq`.
    pub fn ack_through(&mut self, seq: u64) {
        for entry in &mut self.pending {
            if entry.0 > seq {
                break;
            }
            entry.1 = true;
        }
        while let Some(&(s, true)) = self.pending.front() {
            self.committed = self.committed.max(s);
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_dispatches_commit_at_once_when_nothing_is_pending() {
        let mut c = CommitTracker::default();
        c.record(1, false);
        c.record(2, false);
        assert_eq!(c.committed(), 2);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn unacked_event_holds_back_later_skips() {
        let mut c = CommitTracker::default();
        c.record(1, false);
        c.record(2, true);
        c.record(3, false);
        c.record(4, false);
        c.record(5, true);
        assert_eq!(c.committed(), 1);
        assert_eq!(c.pending(), 3, "the skip run 3-4 is one entry");
        c.ack_through(2);
        assert_eq!(c.committed(), 4);
        c.ack_through(5);
        assert_eq!(c.committed(), 5);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn acks_never_move_backwards() {
        let mut c = CommitTracker::default();
        c.record(7, true);
        c.ack_through(7);
        c.ack_through(3);
        assert_eq!(c.committed(), 7);
    }

    #[test]
    fn unrecord_forgets_the_rejected_event() {
        let mut c = CommitTracker::default();
        c.record(1, false);
        c.record(2, true);
        c.unrecord(2);
        assert_eq!(c.pending(), 0);
        assert_eq!(c.committed(), 1);
    }
}
