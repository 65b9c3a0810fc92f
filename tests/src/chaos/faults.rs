//! The faults the soak injects: every failure the README's guarantees say
//! the bridge survives, and the seeded schedule they are injected in.

use std::fmt;

/// Close codes Discord documents as reconnectable. 4004 (authentication
/// failed) is fatal by Discord's rules, like 4010–4014: the bridge stops the
/// shard, so none of them belongs in a soak that expects it to go on.
pub const RECONNECTABLE_CLOSE_CODES: [u16; 8] = [4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009];

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The simulator stops acknowledging one shard's heartbeats until the
    /// bridge gives the connection up as a zombie.
    Zombie,
    /// Op 7 RECONNECT.
    Reconnect,
    /// Op 9 INVALID_SESSION with this `d`.
    InvalidSession {
        /// Whether the session may be resumed.
        resumable: bool,
    },
    /// The TCP connection dropped without a close frame.
    TcpDrop,
    /// A close frame with this (reconnectable) code.
    Close(u16),
    /// A binary frame that corrupts the zlib / zstd stream.
    CorruptFrame,
    /// Every NATS node killed with SIGKILL, then started again on the same
    /// ports and stores.
    NatsKill9,
    /// One node of the three killed with SIGKILL, and restarted once the
    /// bridge carried on without it.
    NodeKill,
    /// Every bridge process stopped with SIGTERM, then started again.
    BridgeRestart,
    /// The process owning a shard killed with SIGKILL; the standby takes
    /// over.
    BridgeKill9,
    /// Every bridge process stopped with SIGTERM; while none runs, Discord
    /// expires one shard's session, so the next process's RESUME is refused
    /// and what was dispatched meanwhile is lost (and must be reported).
    SessionExpired,
}

/// What the bridge must do to recover from a fault on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// RESUME the same session.
    Resume,
    /// IDENTIFY a new session: Discord ended the old one.
    Reidentify,
}

impl Fault {
    /// Every fault kind, once.
    #[must_use]
    pub fn all() -> Vec<Self> {
        let mut all = vec![
            Self::Zombie,
            Self::Reconnect,
            Self::InvalidSession { resumable: true },
            Self::InvalidSession { resumable: false },
            Self::TcpDrop,
        ];
        all.extend(RECONNECTABLE_CLOSE_CODES.map(Self::Close));
        all.extend([
            Self::CorruptFrame,
            Self::NatsKill9,
            Self::NodeKill,
            Self::BridgeRestart,
            Self::BridgeKill9,
            Self::SessionExpired,
        ]);
        all
    }

    /// How the shard the fault hits must recover.
    #[must_use]
    pub const fn recovery(self) -> Recovery {
        match self {
            Self::InvalidSession { resumable: false }
            | Self::Close(4007 | 4009)
            | Self::SessionExpired => Recovery::Reidentify,
            _ => Recovery::Resume,
        }
    }

    /// Whether the fault acts on one gateway connection (the simulator's
    /// side) rather than on processes.
    #[must_use]
    pub const fn is_gateway(self) -> bool {
        matches!(
            self,
            Self::Zombie
                | Self::Reconnect
                | Self::InvalidSession { .. }
                | Self::TcpDrop
                | Self::Close(_)
                | Self::CorruptFrame
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zombie => f.write_str("zombie (heartbeat ACKs stop)"),
            Self::Reconnect => f.write_str("op 7 reconnect"),
            Self::InvalidSession { resumable } => write!(f, "op 9 invalid session d:{resumable}"),
            Self::TcpDrop => f.write_str("TCP drop"),
            Self::Close(code) => write!(f, "close {code}"),
            Self::CorruptFrame => f.write_str("corrupt compressed frame"),
            Self::NatsKill9 => f.write_str("NATS kill -9 (all nodes), restart"),
            Self::NodeKill => f.write_str("NATS node kill -9, restart"),
            Self::BridgeRestart => f.write_str("bridge SIGTERM, restart"),
            Self::BridgeKill9 => f.write_str("bridge kill -9, standby takes over"),
            Self::SessionExpired => f.write_str("session expired while no bridge ran"),
        }
    }
}

/// `rounds` rounds of every fault kind, each round in its own order drawn
/// from `rng`.
#[must_use]
pub fn schedule(rng: &mut fastrand::Rng, rounds: u32) -> Vec<Fault> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        let mut round = Fault::all();
        rng.shuffle(&mut round);
        out.extend(round);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_kind_once_per_round_in_a_seeded_order() {
        let a = schedule(&mut fastrand::Rng::with_seed(7), 3);
        let b = schedule(&mut fastrand::Rng::with_seed(7), 3);
        assert_eq!(a, b, "the seed reproduces the schedule");
        let kinds = Fault::all().len();
        assert_eq!(kinds, 19);
        assert_eq!(a.len(), 3 * kinds);
        let mut counts = BTreeMap::new();
        for f in &a {
            *counts.entry(*f).or_insert(0) += 1;
        }
        assert!(counts.values().all(|n| *n == 3), "{counts:?}");
        assert_ne!(a[..kinds], a[kinds..2 * kinds], "rounds are shuffled");
        assert!(!a.contains(&Fault::Close(4004)), "4004 is fatal");
    }

    #[test]
    fn session_ending_faults_need_a_new_session() {
        let reidentify: Vec<Fault> = Fault::all()
            .into_iter()
            .filter(|f| f.recovery() == Recovery::Reidentify)
            .collect();
        assert_eq!(
            reidentify,
            [
                Fault::InvalidSession { resumable: false },
                Fault::Close(4007),
                Fault::Close(4009),
                Fault::SessionExpired
            ]
        );
    }
}
