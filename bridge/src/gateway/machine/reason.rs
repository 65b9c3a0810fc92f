//! Why a gateway connection ended, as a closed set of stable words.
//!
//! The same word is the `reason` of the `disconnected` status event, the
//! `reason` field of the log line and the `reason` label of the reconnect
//! counter, so the three cannot drift apart; and a closed set keeps the
//! metric's label values bounded whatever the gateway sends (the close
//! frame's own text never becomes a label).

use std::fmt;

/// Why a connection ended (and the shard reconnects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The WebSocket could not be opened.
    ConnectFailed,
    /// The connection broke without a close frame.
    ConnectionLost,
    /// Discord sent a close frame with a non-fatal code.
    ClosedByGateway,
    /// Discord asked for a reconnect (op 7).
    ReconnectRequested,
    /// Discord invalidated the session (op 9).
    InvalidSession,
    /// No heartbeat ACK between two heartbeats.
    ZombieConnection,
    /// No HELLO in time.
    HelloTimeout,
    /// No READY or RESUMED in time.
    HandshakeTimeout,
    /// A HELLO without a usable heartbeat interval.
    BadHello,
    /// A READY whose session cannot be used.
    BadReady,
    /// The compressed stream could not be decoded.
    CorruptStream,
    /// NATS was down or stalled with the event buffer full.
    NatsBackpressure,
}

impl EndReason {
    /// Every reason, in a fixed order.
    pub const ALL: [Self; 12] = [
        Self::ConnectFailed,
        Self::ConnectionLost,
        Self::ClosedByGateway,
        Self::ReconnectRequested,
        Self::InvalidSession,
        Self::ZombieConnection,
        Self::HelloTimeout,
        Self::HandshakeTimeout,
        Self::BadHello,
        Self::BadReady,
        Self::CorruptStream,
        Self::NatsBackpressure,
    ];

    /// The stable word (status events, logs, metric labels).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConnectFailed => "connect_failed",
            Self::ConnectionLost => "connection_lost",
            Self::ClosedByGateway => "closed_by_gateway",
            Self::ReconnectRequested => "reconnect_requested",
            Self::InvalidSession => "invalid_session",
            Self::ZombieConnection => "zombie_connection",
            Self::HelloTimeout => "hello_timeout",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::BadHello => "bad_hello",
            Self::BadReady => "bad_ready",
            Self::CorruptStream => "corrupt_stream",
            Self::NatsBackpressure => "nats_backpressure",
        }
    }

    /// The position in [`Self::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A count per [`EndReason`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasonCounts([u64; EndReason::ALL.len()]);

impl ReasonCounts {
    /// The counts `count` gives for each reason (e.g. read back from
    /// somewhere they were copied to).
    #[must_use]
    pub fn from_fn(mut count: impl FnMut(EndReason) -> u64) -> Self {
        Self(EndReason::ALL.map(&mut count))
    }

    /// Counts one more `reason`.
    pub const fn add(&mut self, reason: EndReason) {
        self.0[reason.index()] += 1;
    }

    /// How many times `reason` was counted.
    #[must_use]
    pub const fn get(&self, reason: EndReason) -> u64 {
        self.0[reason.index()]
    }

    /// All reasons together.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each reason with its count, in [`EndReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (EndReason, u64)> + '_ {
        EndReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_words_are_unique_snake_case() {
        let mut words = std::collections::HashSet::new();
        for (i, r) in EndReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert!(words.insert(r.as_str()), "{r:?}");
            assert!(
                r.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{r:?}"
            );
        }
    }

    #[test]
    fn counts_per_reason_and_in_total() {
        let mut c = ReasonCounts::default();
        c.add(EndReason::ZombieConnection);
        c.add(EndReason::ZombieConnection);
        c.add(EndReason::NatsBackpressure);
        assert_eq!(c.get(EndReason::ZombieConnection), 2);
        assert_eq!(c.get(EndReason::ConnectFailed), 0);
        assert_eq!(c.total(), 3);
        assert_eq!(c.iter().filter(|(_, n)| *n > 0).count(), 2);
        assert_eq!(ReasonCounts::from_fn(|r| c.get(r)), c);
    }
}
