//! A gateway session as the bridge tracks it.
//!
//! Where a RESUME starts is not decided here: the rule is that a RESUME asks
//! Discord to replay everything after the last sequence whose events are all
//! safely stored, so a NATS outage never loses an event that Discord could
//! still replay. The shell's outbox is the one record of what is stored; it
//! reports the resume point back ([`Input::Acked`](super::machine::Input)),
//! and the session keeps the latest report.

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
    /// Every sequence up to here was handled: handed to the outbox as an
    /// event or a skip. Replays at or below it are not handled again.
    pub handled_through: u64,
    /// Everything up to here is stored (or was not to be stored): where a
    /// RESUME starts.
    pub committed: u64,
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
            committed: 0,
        }
    }

    /// The outbox reports that everything up to `seq` is stored. Reports
    /// may arrive out of order; the resume point only moves forward, and
    /// never past what was handled.
    pub fn commit(&mut self, seq: u64) {
        self.committed = self.committed.max(seq.min(self.handled_through));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_point_only_moves_forward_and_not_past_handled() {
        let mut s = Session::new(Arc::from("s"), None, 1);
        s.handled_through = 7;
        s.commit(5);
        s.commit(3);
        assert_eq!(s.committed, 5);
        s.commit(9);
        assert_eq!(s.committed, 7);
    }
}
