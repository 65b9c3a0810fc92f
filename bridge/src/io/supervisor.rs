//! The supervisor: one owner for every task of the process, and the shard
//! task trees it starts and stops.
//!
//! Token tree: the process token (SIGINT/SIGTERM) → the supervisor's root →
//! one token per shard → the shard's gateway task and its connections. Each
//! shard is a unit of two tasks: the gateway task, and the publisher that
//! flushes what the gateway handed it. The publisher is told to drain only
//! after its gateway task has stopped, so no event handed over during the
//! stop can be left behind. Every task runs under [`Tasks`]: if one panics
//! or fails, the supervisor stops everything and [`Bridge::wait`] returns
//! [`RunError::Task`] (exit 1) naming it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::core_sink::CoreSink;
use super::identify::IdentifyQueue;
use super::outbox::Outbox;
use super::publisher::{self, PublisherConfig, Target};
use super::shard::{self, ShardEnd, ShardIo};
use super::status_service::Reports;
use super::tasks::{TaskError, TaskId, Tasks};
use crate::config::Config;
use crate::error::RunError;
use crate::gateway::{Machine, ShardId};
use crate::secret::Secret;

/// How long a shutdown may spend flushing buffered events to NATS.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect + WebSocket handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long tasks that are still running after every shard stopped (close
/// handshakes, the status publisher) may delay the end of the process.
const STRAGGLERS: Duration = Duration::from_secs(5);

/// Everything a shard needs that the process shares.
pub(crate) struct ShardContext {
    pub(crate) config: Config,
    pub(crate) token: Secret,
    pub(crate) gateway_url: String,
    pub(crate) target: Target,
    pub(crate) agent_subject: String,
    pub(crate) identify: Arc<IdentifyQueue>,
    pub(crate) sink: CoreSink,
    pub(crate) reports: Reports,
}

struct Running {
    cancel: CancellationToken,
    unit: JoinHandle<Option<ShardEnd>>,
}

/// A running bridge: its shards, and the tasks that serve them.
pub struct Bridge {
    ctx: Option<Arc<ShardContext>>,
    tasks: Tasks,
    root: CancellationToken,
    shutdown: CancellationToken,
    shards: HashMap<ShardId, Running>,
    done_tx: mpsc::UnboundedSender<(ShardId, ShardEnd)>,
    done_rx: mpsc::UnboundedReceiver<(ShardId, ShardEnd)>,
    client: async_nats::Client,
    status_stop: CancellationToken,
    services: Vec<JoinHandle<Option<()>>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("shards", &self.shard_ids())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    pub(crate) fn new(
        ctx: ShardContext,
        tasks: Tasks,
        client: async_nats::Client,
        shutdown: CancellationToken,
        status_stop: CancellationToken,
        services: Vec<JoinHandle<Option<()>>>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            ctx: Some(Arc::new(ctx)),
            tasks,
            root: CancellationToken::new(),
            shutdown,
            shards: HashMap::new(),
            done_tx,
            done_rx,
            client,
            status_stop,
            services,
        }
    }

    /// The shards running now.
    #[must_use]
    pub fn shard_ids(&self) -> Vec<ShardId> {
        let mut ids: Vec<_> = self.shards.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Starts `shard`'s task tree; `false` when it already runs or the
    /// bridge is stopping.
    pub fn start_shard(&mut self, shard: ShardId) -> bool {
        let Some(ctx) = &self.ctx else {
            return false;
        };
        if self.shards.contains_key(&shard) || self.root.is_cancelled() {
            return false;
        }
        let cancel = self.root.child_token();
        let unit = self.tasks.spawn(
            TaskId::shard("shard", shard),
            run_unit(
                Arc::clone(ctx),
                self.tasks.clone(),
                shard,
                cancel.clone(),
                self.done_tx.clone(),
            )
            .instrument(shard::span(shard)),
        );
        self.shards.insert(shard, Running { cancel, unit });
        true
    }

    /// Stops `shard`'s task tree and waits until its gateway connection is
    /// closed and its publisher flushed; `None` when it was not running.
    pub async fn stop_shard(&mut self, shard: ShardId) -> Option<ShardEnd> {
        let running = self.shards.remove(&shard)?;
        running.cancel.cancel();
        running.unit.await.ok().flatten()
    }

    /// Runs until the shutdown token is cancelled (`Ok`), a task fails
    /// ([`RunError::Task`]), or every shard stopped because Discord refused
    /// it ([`RunError::Fatal`]); then stops everything in order.
    ///
    /// # Errors
    /// See above.
    pub async fn wait(mut self) -> Result<(), RunError> {
        let mut fatal: Option<(ShardId, u16, String)> = None;
        let failed = self.tasks.failed_token();
        loop {
            if self.shards.is_empty() && fatal.is_some() {
                break;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = failed.cancelled() => break,
                Some((shard, end)) = self.done_rx.recv() => {
                    // A unit stopped with stop_shard has already been removed.
                    if self.shards.remove(&shard).is_none() {
                        continue;
                    }
                    match end {
                        ShardEnd::Fatal { code, message } => {
                            tracing::error!(shard = %shard, code, "shard stopped: {message}");
                            fatal.get_or_insert((shard, code, message));
                        }
                        ShardEnd::Stopped => {}
                    }
                }
            }
        }
        self.stop_all().await;
        if let Some(failure) = self.tasks.failure() {
            return Err(RunError::Task(failure));
        }
        match fatal {
            Some((shard, code, message)) if !self.shutdown.is_cancelled() => Err(RunError::Fatal {
                shard,
                code,
                message,
            }),
            _ => {
                tracing::info!("bridge stopped");
                Ok(())
            }
        }
    }

    /// Stops every shard, then the process-wide tasks, in order.
    async fn stop_all(&mut self) {
        self.root.cancel();
        for (_, running) in self.shards.drain() {
            let _ = running.unit.await;
        }
        // The shards are gone: the last handles on the status publisher go
        // with the context, so it flushes and ends.
        self.ctx = None;
        self.status_stop.cancel();
        for service in self.services.drain(..) {
            let _ = service.await;
        }
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "final NATS flush failed");
        }
        if tokio::time::timeout(STRAGGLERS, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tasks.len(),
                "tasks still running at exit; leaving them"
            );
        }
    }
}

/// One shard: its gateway task and its publisher, stopped in that order.
async fn run_unit(
    ctx: Arc<ShardContext>,
    tasks: Tasks,
    shard: ShardId,
    cancel: CancellationToken,
    done: mpsc::UnboundedSender<(ShardId, ShardEnd)>,
) -> Result<ShardEnd, TaskError> {
    let nats = &ctx.config.nats;
    let outbox = Arc::new(Outbox::new(nats.buffer_events, nats.buffer_bytes));
    let drain = CancellationToken::new();
    let publisher = tasks.spawn(
        TaskId::shard("publisher", shard),
        publisher::run(
            ctx.target.clone(),
            Arc::clone(&outbox),
            ctx.sink.clone(),
            PublisherConfig {
                subject: ctx.agent_subject.clone(),
                shard,
                max_inflight: nats.max_inflight,
                drain_timeout: DRAIN_TIMEOUT,
            },
            drain.clone(),
        )
        .in_current_span(),
    );
    let io = ShardIo {
        machine: Machine::new(super::machine_config(
            &ctx.config,
            shard,
            ctx.token.clone(),
            ctx.gateway_url.clone(),
        )),
        compression: ctx.config.discord.compression,
        max_payload: ctx.config.discord.max_frame_bytes,
        connect_timeout: CONNECT_TIMEOUT,
        identify: Arc::clone(&ctx.identify),
        outbox,
        nats: ctx.target.client().clone(),
        sink: ctx.sink.clone(),
        reporter: ctx.reports.reporter(shard),
        tasks: tasks.clone(),
    };
    let gateway = tasks.spawn(
        TaskId::shard("gateway", shard),
        shard::run(io, cancel).in_current_span(),
    );
    // A gateway task that died was recorded as the process's failure; the
    // unit still drains its publisher on the way out.
    let end = gateway.await.ok().flatten().unwrap_or(ShardEnd::Stopped);
    drain.cancel();
    let _ = publisher.await;
    let _ = done.send((shard, end.clone()));
    Ok(end)
}
