//! Reconnect backoff: exponential with full jitter ("AWS full jitter"), so a
//! fleet of shards that lost Discord at the same moment does not come back in
//! lock-step.

use std::time::Duration;

/// The delay before attempt `attempt` (0-based): uniform in
/// `[0, min(max, base·2^attempt)]`, with `unit` a uniform draw from `[0, 1)`.
#[must_use]
pub fn full_jitter(base: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    let ceiling = base.saturating_mul(factor).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Consecutive failed attempts and the policy that turns them into delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A policy starting at `base` and never waiting longer than `max`.
    #[must_use]
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay; each call counts one more failed attempt.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let delay = full_jitter(self.base, self.max, self.attempt, unit);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Attempts counted since the last reset.
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Forget past failures: called after READY or RESUMED.
    pub const fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(60);

    #[test]
    fn ceiling_doubles_then_caps() {
        // unit just below 1 gives (almost) the ceiling of each attempt.
        let table = [
            (0, 1.0),
            (1, 2.0),
            (2, 4.0),
            (3, 8.0),
            (5, 32.0),
            (6, 60.0),
            (40, 60.0),
        ];
        for (attempt, secs) in table {
            let d = full_jitter(S, CAP, attempt, 1.0);
            assert_eq!(d, Duration::from_secs_f64(secs), "attempt {attempt}");
        }
    }

    #[test]
    fn jitter_spans_zero_to_ceiling() {
        assert_eq!(full_jitter(S, CAP, 3, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(S, CAP, 3, 0.5), Duration::from_secs(4));
        assert_eq!(
            full_jitter(S, CAP, 3, 7.0),
            Duration::from_secs(8),
            "clamped"
        );
    }

    #[test]
    fn counts_attempts_and_resets() {
        let mut b = Backoff::new(S, CAP);
        assert_eq!(b.next_delay(1.0), S);
        assert_eq!(b.next_delay(1.0), 2 * S);
        assert_eq!(b.attempt(), 2);
        b.reset();
        assert_eq!(b.next_delay(1.0), S);
    }
}
