//! Heartbeat schedule and zombie detection for one connection.
//!
//! Discord: send op 1 every `heartbeat_interval`, the first one after
//! `interval × jitter` (jitter uniform in [0, 1)) so that reconnecting clients
//! spread out; if no ACK (op 11) arrived between two beats, the connection
//! may be a zombie and must be closed with a code other than 1000/1001 and
//! resumed.
//!
//! One refinement: Discord writes the ACK into the same ordered stream as
//! the dispatches, so under a burst (a GUILD_CREATE flood at start-up, a
//! RESUME replay) the ACK can sit unread behind frames the shard is still
//! reading. A connection that delivered frames since the last beat is not
//! dead, so the verdict is "zombie" only when the beat is due, the previous
//! one is unacknowledged *and* nothing at all arrived since it was sent. A
//! half-open connection delivers nothing and is still caught one interval
//! after its last beat.
//!
//! A second one: under back-pressure the shard stops reading the socket on
//! purpose (its event buffer is full), so the ACK may arrive and sit unread.
//! Input the shard chose not to read cannot prove anything either way, so
//! while reading is paused the beats go on (Discord must keep seeing them)
//! but no verdict is given; once reading resumes the connection gets one full
//! interval of being read to show it is alive. A real zombie delivers
//! nothing once read again and is caught at most two intervals after the
//! pause ends.

use std::time::{Duration, Instant};

/// The longest `heartbeat_interval` a HELLO may ask for: one hour
/// (Discord's is about 41 s; the tests' simulator asks for an hour to turn
/// scheduled beats off). A larger one would leave a dead connection
/// undetected for longer still, up to the 584 million years of `u64::MAX`
/// milliseconds; such a HELLO is refused like one without an interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

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
    /// When the oldest beat still waiting for its ACK was sent.
    unacked_since: Option<Instant>,
    /// Whether any frame arrived since the latest beat was sent.
    heard_since_beat: bool,
    /// The shard is not reading the socket (back-pressure): no verdict.
    paused: bool,
    /// After reading resumed: no verdict before this instant.
    verdict_after: Option<Instant>,
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
            heard_since_beat: false,
            paused: false,
            verdict_after: None,
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
        let judged = !self.paused && self.verdict_after.is_none_or(|t| now >= t);
        if judged && self.unacked_since.is_some() && !self.heard_since_beat {
            return Some(Beat::Zombie);
        }
        self.sent(now);
        self.next_due = now + self.interval;
        Some(Beat::Send)
    }

    /// Discord asked for a beat (server op 1): it is sent at once and, like a
    /// scheduled beat, expects an ACK.
    pub fn on_request(&mut self, now: Instant) {
        self.sent(now);
    }

    fn sent(&mut self, now: Instant) {
        self.unacked_since.get_or_insert(now);
        self.heard_since_beat = false;
    }

    /// A frame arrived: the connection is alive.
    pub const fn on_frame(&mut self) {
        self.heard_since_beat = true;
    }

    /// The shard stopped reading the socket: beats go on, unjudged.
    pub const fn pause(&mut self) {
        self.paused = true;
    }

    /// The shard reads again: the connection has one interval from `now` to
    /// show it is alive before a missing ACK counts.
    pub fn resume(&mut self, now: Instant) {
        self.paused = false;
        self.verdict_after = Some(now + self.interval);
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
    fn frames_after_the_beat_prove_the_connection_alive() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.0);
        assert_eq!(hb.poll(t0), Some(Beat::Send));
        // A burst: dispatches arrive, the ACK is still queued behind them.
        hb.on_frame();
        assert_eq!(hb.poll(t0 + I), Some(Beat::Send), "alive: beat again");
        // Then silence after that beat: a zombie one interval later.
        assert_eq!(hb.poll(t0 + 2 * I), Some(Beat::Zombie));
        // The late ACK answers the oldest beat.
        let mut hb = Heartbeat::new(t0, I, 0.0);
        hb.poll(t0);
        hb.on_frame();
        hb.poll(t0 + I);
        assert_eq!(hb.on_ack(t0 + I + I / 2), Some(I + I / 2));
        assert_eq!(hb.poll(t0 + 2 * I), Some(Beat::Send));
    }

    #[test]
    fn the_request_itself_is_not_an_answer() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.5);
        hb.on_frame(); // Discord's op 1…
        hb.on_request(t0); // …answered at once, and unacknowledged.
        assert_eq!(hb.poll(t0 + I / 2), Some(Beat::Zombie));
    }

    #[test]
    fn no_verdict_while_reading_is_paused() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.0);
        assert_eq!(hb.poll(t0), Some(Beat::Send));
        hb.pause();
        // Nothing is read for three intervals: the beats go on.
        for n in 1..=3 {
            assert_eq!(hb.poll(t0 + n * I), Some(Beat::Send), "beat {n}");
        }
        // Reading resumes just before a beat is due: still no verdict.
        let r = t0 + 4 * I - Duration::from_millis(1);
        hb.resume(r);
        assert_eq!(hb.poll(t0 + 4 * I), Some(Beat::Send));
        // The backlog is read: alive.
        hb.on_frame();
        assert_eq!(hb.poll(t0 + 5 * I), Some(Beat::Send));
        assert!(hb.on_ack(t0 + 5 * I + Duration::from_millis(3)).is_some());
    }

    #[test]
    fn a_zombie_is_still_caught_after_a_pause() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.0);
        assert_eq!(hb.poll(t0), Some(Beat::Send));
        hb.pause();
        assert_eq!(hb.poll(t0 + I), Some(Beat::Send));
        hb.resume(t0 + I + I / 2);
        // Read again, and nothing arrives: sent once more within the grace
        // interval, then judged.
        assert_eq!(hb.poll(t0 + 2 * I), Some(Beat::Send));
        assert_eq!(hb.poll(t0 + 3 * I), Some(Beat::Zombie));
    }

    #[test]
    fn stray_ack_is_ignored() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, I, 0.0);
        assert_eq!(hb.on_ack(t0), None);
    }
}
