//! Whether the process is ready, decided from a snapshot of its state: a
//! pure function, so every rule of `/readyz` and of
//! `discord_bridge_shard_up` is a plain test.
//!
//! Ready means NATS is connected and every shard this process *runs* is
//! connected to Discord (READY or RESUMED). Shards it does not run (a
//! standby's configured shards while another process holds their leases,
//! or a shard Discord refused for good) are not its to serve, so a standby
//! that runs none is ready as soon as NATS is connected: it is doing its
//! job, which is to be there to take over. An orchestrator that restarts
//! unready processes would otherwise restart every standby.

use std::fmt::Write as _;

use discord_bridge_schemas::ShardState;

use crate::gateway::ShardId;

/// How far the process got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Setting up; the text says what it waits for.
    Starting(&'static str),
    /// Shards run (or stand by).
    Running,
    /// Shutting down.
    Stopping,
}

/// The NATS connection as the process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsLink {
    /// Never connected yet (start-up).
    Connecting,
    /// Connected.
    Connected,
    /// Lost; the client reconnects on its own.
    Disconnected,
}

/// One shard, as readiness and the `shard_up` gauge see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHealth {
    /// The shard.
    pub shard: ShardId,
    /// Whether this process runs it now.
    pub running: bool,
    /// Its last lifecycle state, if it ever had one.
    pub state: Option<ShardState>,
    /// Why its last connection ended (a stable word such as
    /// `connect_failed`), if one did.
    pub last_reason: Option<String>,
    /// The close code of that end, if there was one.
    pub last_close: Option<u16>,
}

impl ShardHealth {
    /// Whether the shard is up here: run by this process and connected.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.running && self.state == Some(ShardState::Connected)
    }
}

/// The `/readyz` verdict, with its one-line text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// 200, with what it is ready for.
    Ready(String),
    /// 503, with why not.
    NotReady(String),
}

impl Readiness {
    /// Whether it is [`Readiness::Ready`].
    #[must_use]
    pub const fn is_ready(&self) -> bool {
        matches!(self, Self::Ready(_))
    }

    /// The one-line text.
    #[must_use]
    pub fn text(&self) -> &str {
        match self {
            Self::Ready(t) | Self::NotReady(t) => t,
        }
    }
}

/// At most this many shards are named in a not-ready reason; the rest are
/// counted, so the reason stays one short line for a process of 100 shards.
const NAMED: usize = 3;

/// The verdict for a snapshot.
#[must_use]
pub fn readiness(stage: Stage, nats: NatsLink, shards: &[ShardHealth]) -> Readiness {
    match stage {
        Stage::Stopping => return Readiness::NotReady("shutting down".to_owned()),
        Stage::Starting(what) if nats == NatsLink::Connected => {
            return Readiness::NotReady(format!("starting: {what}"));
        }
        Stage::Starting(_) | Stage::Running => {}
    }
    match nats {
        NatsLink::Connecting => return Readiness::NotReady("nats: connecting".to_owned()),
        NatsLink::Disconnected => return Readiness::NotReady("nats: disconnected".to_owned()),
        NatsLink::Connected => {}
    }
    let running: Vec<&ShardHealth> = shards.iter().filter(|s| s.running).collect();
    let down: Vec<&&ShardHealth> = running.iter().filter(|s| !s.is_up()).collect();
    if down.is_empty() {
        return Readiness::Ready(match running.len() {
            0 => "ready: standby, no shard runs here; nats connected".to_owned(),
            1 => "ready: 1 shard connected; nats connected".to_owned(),
            n => format!("ready: {n} shards connected; nats connected"),
        });
    }
    let mut text = String::new();
    for (i, s) in down.iter().take(NAMED).enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        text.push_str(&describe(s));
    }
    if down.len() > NAMED {
        let _ = write!(
            text,
            "; and {} more shards not connected",
            down.len() - NAMED
        );
    }
    Readiness::NotReady(text)
}

/// `shard 0: backoff (connect_failed)`, `shard 3: connecting`.
fn describe(s: &ShardHealth) -> String {
    let state = s.state.map_or("not started", ShardState::as_str);
    let mut text = format!("shard {}: {state}", s.shard.id);
    match (&s.last_reason, s.last_close) {
        (Some(reason), Some(code)) => {
            let _ = write!(text, " ({reason}, close {code})");
        }
        (Some(reason), None) => {
            let _ = write!(text, " ({reason})");
        }
        (None, Some(code)) => {
            let _ = write!(text, " (close {code})");
        }
        (None, None) => {}
    }
    text
}

/// The `shard` label of a shard's series: its id alone (`"0"`), as
/// dashboards group by it; the shard count is the same for every shard of
/// a process.
#[must_use]
pub fn shard_label(shard: ShardId) -> String {
    shard.id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: u32, running: bool, state: Option<ShardState>) -> ShardHealth {
        ShardHealth {
            shard: ShardId::new(id, 4),
            running,
            state,
            last_reason: None,
            last_close: None,
        }
    }

    fn connected(id: u32) -> ShardHealth {
        shard(id, true, Some(ShardState::Connected))
    }

    #[test]
    fn ready_when_nats_and_every_running_shard_are_connected() {
        let shards = [connected(0), connected(1), shard(2, false, None)];
        let r = readiness(Stage::Running, NatsLink::Connected, &shards);
        assert_eq!(
            r,
            Readiness::Ready("ready: 2 shards connected; nats connected".into())
        );
        assert!(r.is_ready());
    }

    #[test]
    fn a_standby_is_ready_with_nats_alone() {
        let shards = [shard(0, false, None), shard(1, false, None)];
        let r = readiness(Stage::Running, NatsLink::Connected, &shards);
        assert_eq!(
            r.text(),
            "ready: standby, no shard runs here; nats connected"
        );
        assert!(r.is_ready());
        assert!(readiness(Stage::Running, NatsLink::Connected, &[]).is_ready());
    }

    #[test]
    fn nats_comes_first() {
        let shards = [connected(0)];
        for (link, text) in [
            (NatsLink::Disconnected, "nats: disconnected"),
            (NatsLink::Connecting, "nats: connecting"),
        ] {
            assert_eq!(
                readiness(Stage::Running, link, &shards),
                Readiness::NotReady(text.into())
            );
        }
        assert_eq!(
            readiness(
                Stage::Starting("connecting to NATS"),
                NatsLink::Connecting,
                &[]
            ),
            Readiness::NotReady("nats: connecting".into())
        );
        assert_eq!(
            readiness(
                Stage::Starting("asking Discord for the gateway"),
                NatsLink::Connected,
                &[]
            ),
            Readiness::NotReady("starting: asking Discord for the gateway".into())
        );
    }

    #[test]
    fn a_shard_that_is_not_connected_is_named_with_why() {
        let mut backoff = shard(0, true, Some(ShardState::Backoff));
        backoff.last_reason = Some("closed_by_gateway".into());
        backoff.last_close = Some(4000);
        let mut failed = shard(2, true, Some(ShardState::Connecting));
        failed.last_reason = Some("connect_failed".into());
        let shards = [backoff, connected(1), failed, shard(3, true, None)];
        let r = readiness(Stage::Running, NatsLink::Connected, &shards);
        assert_eq!(
            r,
            Readiness::NotReady(
                "shard 0: backoff (closed_by_gateway, close 4000); \
                 shard 2: connecting (connect_failed); shard 3: not started"
                    .into()
            )
        );
    }

    #[test]
    fn many_shards_down_stay_one_short_line() {
        let shards: Vec<_> = (0..10)
            .map(|i| shard(i, true, Some(ShardState::Resuming)))
            .collect();
        let r = readiness(Stage::Running, NatsLink::Connected, &shards);
        assert_eq!(
            r.text(),
            "shard 0: resuming; shard 1: resuming; shard 2: resuming; \
             and 7 more shards not connected"
        );
        assert!(!r.text().contains('\n'));
    }

    #[test]
    fn stopping_is_never_ready() {
        assert_eq!(
            readiness(Stage::Stopping, NatsLink::Connected, &[connected(0)]),
            Readiness::NotReady("shutting down".into())
        );
    }

    #[test]
    fn up_means_run_here_and_connected() {
        assert!(connected(0).is_up());
        assert!(!shard(0, false, Some(ShardState::Connected)).is_up());
        for state in [
            ShardState::Connecting,
            ShardState::Identifying,
            ShardState::Resuming,
            ShardState::Disconnected,
            ShardState::Backoff,
            ShardState::Error,
            ShardState::ShuttingDown,
        ] {
            assert!(!shard(0, true, Some(state)).is_up(), "{state:?}");
        }
        assert!(!shard(0, true, None).is_up());
    }

    #[test]
    fn the_shard_label_is_the_id() {
        assert_eq!(shard_label(ShardId::new(0, 1)), "0");
        assert_eq!(shard_label(ShardId::new(17, 32)), "17");
    }
}
