//! Heartbeat schedule and zombie detection for one connection.
//!
//! Discord: send op 1 every `heartbeat_interval`, the first one after
//! `interval × jitter` (jitter uniform in [0, 1)) so that reconnecting clients
//! spread out; if no ACK (op 11) arrived between two beats, the connection is
//! a zombie and must be closed with a code other than 1000/1001 and resumed.

use std::time::{Duration, Instant};

/// What is due at a heartbeat deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send a heartbeat now.
    Send,
    /// The previous beat was never acknowledged: the connection is dead.
    Zombie,
}

/// Heartbeat state of one connection.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    interval: Duration,
    next_due: Instant,
    /// When the beat still waiting for its ACK was sent.
    unacked_since: Option<Instant>,
    last_rtt: Option<Duration>,
}

impl Heartbeat {
    /// Starts the schedule at HELLO: the first beat is due after
    /// `interval × jitter`.
    #[must_use]
    pub fn new(now: Instant, interval: Duration, jitter: f64) -> Self {
        Self {
            interval,
            next_due: now + interval.mul_f64(jitter.clamp(0.0, 1.0)),
            unacked_since: None,
            last_rtt: None,
        }
    }

    /// The interval Discord asked for.
    #[must_use]
    pub const fn interval(&self) -> Duration {
        self.interval
    }

    /// When [`Heartbeat::poll`] next has something to do.
    #[must_use]
    pub const fn deadline(&self) -> Instant {
        self.next_due
    }

    /// What is due at `now`, if anything. After `Send`, the next beat is
    /// scheduled one interval later.
    pub fn poll(&mut self, now: Instant) -> Option<Beat> {
        if now < self.next_due {
            return None;
        }
        if self.unacked_since.is_some() {
            return Some(Beat::Zombie);
        }
        self.unacked_since = Some(now);
        self.next_due = now + self.interval;
        Some(Beat::Send)
    }

    /// Discord asked for a beat (server op 1): it is sent at once and, like a
    /// scheduled beat, expects an ACK.
    pub fn on_request(&mut self, now: Instant) {
        self.unacked_since.get_or_insert(now);
    }

    /// An ACK arrived; returns the round-trip time of the beat it answers.
    pub fn on_ack(&mut self, now: Instant) -> Option<Duration> {
        let sent = self.unacked_since.take()?;
        let rtt = now.saturating_duration_since(sent);
        self.last_rtt = Some(rtt);
        Some(rtt)
    }

    /// The latest measured round-trip time.
    #[must_use]
    pub const fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_millis(41_250);

    #[test]
    fn first_beat_is_jittered() {
        let t0 = Instant::now();
        let hb = Heartbeat::new(t0, I, 0.25);
        assert_eq!(hb.deadline(), t0 + I.mul_f64(0.25));
        assert_eq!(Heartbeat::new(t0, I, 0.0).deadline(), t0);
    }

    #[test]
    fn beats_every_interval_while_acked() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.0);
        assert_eq!(hb.poll(t0), Some(Beat::Send));
        assert_eq!(hb.poll(t0 + I / 2), None);
        assert_eq!(
            hb.on_ack(t0 + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(hb.last_rtt(), Some(Duration::from_millis(30)));
        assert_eq!(hb.poll(t0 + I), Some(Beat::Send));
        assert_eq!(hb.deadline(), t0 + 2 * I);
    }

    #[test]
    fn missing_ack_between_beats_is_a_zombie() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.0);
        assert_eq!(hb.poll(t0), Some(Beat::Send));
        assert_eq!(hb.poll(t0 + I), Some(Beat::Zombie));
    }

    #[test]
    fn server_request_expects_an_ack_too() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.5);
        hb.on_request(t0);
        assert_eq!(hb.poll(t0 + I / 2), Some(Beat::Zombie));
        let mut hb = Heartbeat::new(t0, I, 0.5);
        hb.on_request(t0);
        assert!(hb.on_ack(t0 + Duration::from_millis(5)).is_some());
        assert_eq!(hb.poll(t0 + I / 2), Some(Beat::Send));
    }

    #[test]
    fn stray_ack_is_ignored() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.0);
        assert_eq!(hb.on_ack(t0), None);
    }
}
