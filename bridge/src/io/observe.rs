//! What the HTTP endpoint looks at: handles on the state other parts of
//! the process own, filled in as start-up gets that far.
//!
//! The HTTP server starts first, so that `/healthz` answers and `/readyz`
//! says what start-up waits for (NATS, Discord) while it waits. Nothing here
//! is a copy: the NATS client's own connection state, the shard reports,
//! the identify queue and the status sink's drop count are read when a
//! probe or a scrape asks. The identify queue is held weakly: it holds a
//! status sink, whose task must be able to end at shutdown.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use super::commands::CommandCounters;
use super::identify::IdentifyQueue;
use super::reports::{Reports, ShardMetrics};
use crate::config::Config;
use crate::health::{self, NatsLink, Readiness, Stage};

/// The process as the endpoint sees it.
#[derive(Debug)]
pub(crate) struct Observed {
    stage: Mutex<Stage>,
    nats: OnceLock<async_nats::Client>,
    shards: OnceLock<Shards>,
    /// The gateway command listener's answers, once it runs.
    commands: OnceLock<Arc<CommandCounters>>,
    /// `nats.buffer_events` and `nats.buffer_bytes`: each shard's limits.
    pub(crate) buffer_limits: (usize, usize),
}

/// What exists once the shards are known.
#[derive(Debug)]
struct Shards {
    reports: Reports,
    identify: Weak<IdentifyQueue>,
    core_drops: Arc<AtomicU64>,
}

/// A scrape's reading of the process.
#[derive(Debug)]
pub(crate) struct Reading {
    pub nats: NatsLink,
    /// Connections established (the first one and every reconnect).
    pub nats_connects: Option<u64>,
    pub shards: Vec<ShardMetrics>,
    pub session_starts_remaining: Option<u32>,
    pub core_drops: u64,
    pub buffer_limits: (usize, usize),
    /// Gateway commands answered: (op, result, count), non-zero only.
    pub commands: Vec<(&'static str, &'static str, u64)>,
}

impl Observed {
    /// Before anything started.
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            stage: Mutex::new(Stage::Starting("connecting to NATS")),
            nats: OnceLock::new(),
            shards: OnceLock::new(),
            commands: OnceLock::new(),
            buffer_limits: (config.nats.buffer_events, config.nats.buffer_bytes),
        }
    }

    /// Start-up moved on, or the process runs, or it stops.
    pub(crate) fn set_stage(&self, stage: Stage) {
        *self.stage.lock().unwrap_or_else(PoisonError::into_inner) = stage;
    }

    /// NATS is connected: its client.
    pub(crate) fn set_nats(&self, client: async_nats::Client) {
        let _ = self.nats.set(client);
    }

    /// The gateway command listener runs: its counters.
    pub(crate) fn set_commands(&self, counters: Arc<CommandCounters>) {
        let _ = self.commands.set(counters);
    }

    /// The shards are known.
    pub(crate) fn set_shards(
        &self,
        reports: Reports,
        identify: &Arc<IdentifyQueue>,
        core_drops: Arc<AtomicU64>,
    ) {
        let _ = self.shards.set(Shards {
            reports,
            identify: Arc::downgrade(identify),
            core_drops,
        });
    }

    fn nats_link(&self) -> NatsLink {
        match self.nats.get().map(async_nats::Client::connection_state) {
            None => NatsLink::Connecting,
            Some(async_nats::connection::State::Connected) => NatsLink::Connected,
            Some(_) => NatsLink::Disconnected,
        }
    }

    /// The `/readyz` verdict now.
    pub(crate) fn readiness(&self) -> Readiness {
        let stage = *self.stage.lock().unwrap_or_else(PoisonError::into_inner);
        let shards = self
            .shards
            .get()
            .map(|s| s.reports.health())
            .unwrap_or_default();
        health::readiness(stage, self.nats_link(), &shards)
    }

    /// Everything a scrape reports.
    pub(crate) fn read(&self) -> Reading {
        let shards = self.shards.get();
        Reading {
            nats: self.nats_link(),
            nats_connects: self.nats.get().map(|c| {
                c.statistics()
                    .connects
                    .load(std::sync::atomic::Ordering::Relaxed)
            }),
            shards: shards.map(|s| s.reports.metrics()).unwrap_or_default(),
            session_starts_remaining: shards
                .and_then(|s| s.identify.upgrade())
                .and_then(|q| q.session_starts_remaining()),
            core_drops: shards.map_or(0, |s| {
                s.core_drops.load(std::sync::atomic::Ordering::Relaxed)
            }),
            buffer_limits: self.buffer_limits,
            commands: self
                .commands
                .get()
                .map(|c| c.snapshot())
                .unwrap_or_default(),
        }
    }
}
