//! When each recent event was handed to the capsule, so that a reload can
//! deliver again exactly those a retired generation may not have processed.

use std::collections::{BTreeSet, VecDeque};

use tokio::time::{Duration, Instant};

/// The sequences handed over within the longest reach a replay may ask for.
#[derive(Debug)]
pub(crate) struct Handovers {
    log: VecDeque<(Instant, u64)>,
    keep: Duration,
    cap: usize,
    /// Whether the cap cut the log short of `keep` (logged once).
    truncated: bool,
}

impl Handovers {
    /// Remembers `keep` back, at most `cap` entries.
    pub(crate) fn new(keep: Duration, cap: usize) -> Self {
        Self {
            log: VecDeque::new(),
            keep,
            cap: cap.max(1),
            truncated: false,
        }
    }

    pub(crate) fn record(&mut self, seq: u64, now: Instant) {
        self.log.push_back((now, seq));
        while self
            .log
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.keep)
        {
            self.log.pop_front();
        }
        if self.log.len() > self.cap {
            self.log.pop_front();
            if !self.truncated {
                self.truncated = true;
                tracing::warn!(
                    cap = self.cap,
                    "more events handed over within the replay reach than remembered; a reload replays only the latest"
                );
            }
        }
    }

    /// Every sequence handed over at or after `since`, lowest first.
    pub(crate) fn since(&self, since: Instant) -> BTreeSet<u64> {
        // Newest at the back: walk back until older than `since`.
        self.log
            .iter()
            .rev()
            .take_while(|(t, _)| *t >= since)
            .map(|(_, seq)| *seq)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_was_handed_over_since_an_instant() {
        let t0 = Instant::now();
        let mut h = Handovers::new(Duration::from_secs(10), 100);
        for (i, seq) in [5, 6, 7, 6].into_iter().enumerate() {
            h.record(seq, t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(h.since(t0 + Duration::from_secs(1)), BTreeSet::from([6, 7]));
        assert_eq!(h.since(t0).len(), 3);
        // Entries older than `keep` are forgotten.
        h.record(8, t0 + Duration::from_secs(12));
        assert_eq!(h.since(t0), BTreeSet::from([6, 7, 8]));
    }

    #[test]
    fn is_bounded() {
        let t0 = Instant::now();
        let mut h = Handovers::new(Duration::from_secs(10), 2);
        for seq in 1..=5 {
            h.record(seq, t0);
        }
        assert_eq!(h.since(t0), BTreeSet::from([4, 5]));
    }
}
