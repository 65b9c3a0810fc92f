//! Discord's outbound limit: at most 120 gateway sends per 60 s per
//! connection, else close 4008. Heartbeats must never be starved by other
//! sends, so a share of the window is reserved for them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sends Discord allows per window.
pub const LIMIT: usize = 120;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A sliding-window log of one connection's sends.
#[derive(Debug, Clone)]
pub struct SendLimiter {
    limit: usize,
    window: Duration,
    reserved: usize,
    sent: VecDeque<Instant>,
}

impl Default for SendLimiter {
    fn default() -> Self {
        Self::new(LIMIT, WINDOW)
    }
}

impl SendLimiter {
    /// `limit` sends per `window`, nothing reserved yet.
    #[must_use]
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            reserved: 0,
            sent: VecDeque::with_capacity(limit),
        }
    }

    /// Reserves room for the heartbeats of a window at `interval`, plus two
    /// for heartbeats Discord requests.
    pub fn reserve_for_heartbeats(&mut self, interval: Duration) {
        let per_window = if interval.is_zero() {
            self.limit
        } else {
            let n = self.window.as_secs_f64() / interval.as_secs_f64();
            // n is positive and bounded by the window/interval ratio.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = n.ceil() as usize;
            n
        };
        self.reserved = per_window.saturating_add(2).min(self.limit / 2);
    }

    /// Whether a send may go now; `Err(t)` says when it may. Heartbeats
    /// (`priority`) may use the whole window, other sends all but the reserve.
    ///
    /// # Errors
    /// The window is full for this kind of send until the returned instant.
    pub fn check(&mut self, now: Instant, priority: bool) -> Result<(), Instant> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.sent.pop_front();
        }
        let allowed = if priority {
            self.limit
        } else {
            self.limit - self.reserved
        };
        if self.sent.len() < allowed {
            return Ok(());
        }
        // The oldest sends must age out until one slot frees up.
        let index = self.sent.len() - allowed;
        Err(self.sent[index] + self.window)
    }

    /// Records a send made at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_keep_their_reserve() {
        let t0 = Instant::now();
        let mut l = SendLimiter::default();
        l.reserve_for_heartbeats(Duration::from_millis(41_250));
        // 2 beats per minute + 2 requested = 4 reserved: 116 ordinary sends.
        for i in 0..116 {
            assert_eq!(l.check(t0, false), Ok(()), "send {i}");
            l.record(t0);
        }
        assert_eq!(l.check(t0, false), Err(t0 + WINDOW));
        for _ in 0..4 {
            assert_eq!(l.check(t0, true), Ok(()));
            l.record(t0);
        }
        assert_eq!(l.check(t0, true), Err(t0 + WINDOW));
    }

    #[test]
    fn window_slides() {
        let t0 = Instant::now();
        let mut l = SendLimiter::new(2, Duration::from_secs(10));
        l.record(t0);
        l.record(t0 + Duration::from_secs(4));
        assert_eq!(
            l.check(t0 + Duration::from_secs(5), true),
            Err(t0 + Duration::from_secs(10))
        );
        assert_eq!(l.check(t0 + Duration::from_secs(10), true), Ok(()));
    }

    #[test]
    fn reserve_never_takes_more_than_half() {
        let mut l = SendLimiter::default();
        l.reserve_for_heartbeats(Duration::from_millis(10));
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(l.check(t0, false).is_ok());
            l.record(t0);
        }
        assert!(l.check(t0, false).is_err());
    }
}
