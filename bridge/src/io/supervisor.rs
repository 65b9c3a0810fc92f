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
//!
//! With JetStream, which shards run here is not the configuration's alone:
//! the configured shards are the ones this process *may* run, and it runs
//! each only while it holds that shard's lease in NATS KV
//! ([`ownership`](super::ownership)). [`Bridge::wait`] renews the leases it
//! holds, takes the ones that lapsed (a standby taking over a dead owner's
//! shard), and starts a shard it took from the checkpoint its previous
//! owner wrote, so the new connection RESUMEs. Shards are taken first come,
//! first served: with `auto` in several processes the first one runs every
//! shard and the others stand by.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use discord_bridge_schemas::{ShardState, StatusEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::checkpoint::{self, Handover};
use super::commands::Routes;
use super::core_sink::CoreSink;
use super::http::HttpServer;
use super::identify::IdentifyQueue;
use super::observe::Observed;
use super::outbox::Outbox;
use super::ownership::{self, Checkpoint, Lease, Owner, ShardStore};
use super::publisher::{self, PublisherConfig, Target};
use super::reports::{Reports, ShardReporter};
use super::shard::{self, ShardEnd, ShardIo};
use super::tasks::{TaskError, TaskId, Tasks};
use crate::config::Config;
use crate::error::RunError;
use crate::gateway::machine::Resume;
use crate::gateway::{Machine, ShardId};
use crate::health::Stage;
use crate::secret::Secret;
use crate::tls::DiscordTls;

/// How long a shutdown may spend flushing buffered events to NATS.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect + WebSocket handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long tasks that are still running after every shard stopped (close
/// handshakes, the status publisher) may delay the end of the process.
const STRAGGLERS: Duration = Duration::from_secs(5);
/// A KV operation of the lease loop that takes longer counts as failed.
pub(super) const KV_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Where the command listener finds each running shard.
    pub(crate) routes: Routes,
    /// The TLS client configuration of every Discord connection.
    pub(crate) discord_tls: DiscordTls,
}

struct Running {
    /// Tells this unit's end from that of an earlier unit of the shard.
    generation: u64,
    cancel: CancellationToken,
    /// Cleared when the lease was lost: the unit then writes no final
    /// checkpoint over its successor's.
    keep_checkpoint: Arc<AtomicBool>,
    unit: JoinHandle<Option<ShardEnd>>,
}

/// Shard ownership of this process, when NATS KV coordinates it.
pub(crate) struct Coordination {
    pub(crate) store: ShardStore,
    pub(crate) owner: Owner,
    pub(crate) owner_id: Arc<str>,
    /// The shards this process may run.
    pub(crate) wanted: Vec<ShardId>,
    pub(crate) leases: HashMap<ShardId, Lease>,
}

/// A running bridge: its shards, and the tasks that serve them.
pub struct Bridge {
    ctx: Option<Arc<ShardContext>>,
    tasks: Tasks,
    root: CancellationToken,
    shutdown: CancellationToken,
    shards: HashMap<ShardId, Running>,
    done_tx: mpsc::UnboundedSender<UnitEnd>,
    done_rx: mpsc::UnboundedReceiver<UnitEnd>,
    /// Units stopped because their lease was lost, still draining their
    /// publisher; the shard is not started again here before they end.
    draining: HashMap<ShardId, JoinHandle<Option<ShardEnd>>>,
    generations: u64,
    client: async_nats::Client,
    status_stop: CancellationToken,
    services: Vec<JoinHandle<Option<()>>>,
    coord: Option<Coordination>,
    /// What `/readyz` and `/metrics` read, and the endpoint serving them.
    observed: Option<Arc<Observed>>,
    http: Option<HttpServer>,
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
        coord: Option<Coordination>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            coord,
            ctx: Some(Arc::new(ctx)),
            tasks,
            root: CancellationToken::new(),
            shutdown,
            shards: HashMap::new(),
            done_tx,
            done_rx,
            draining: HashMap::new(),
            generations: 0,
            client,
            status_stop,
            services,
            observed: None,
            http: None,
        }
    }

    /// Serves `/metrics` and the probes from `observed` (with `http`, when
    /// `http.listen` is set) until the bridge has stopped.
    pub(crate) fn with_endpoint(
        mut self,
        observed: Arc<Observed>,
        http: Option<HttpServer>,
    ) -> Self {
        self.observed = Some(observed);
        self.http = http;
        self
    }

    /// Start-up is over: readiness now depends on NATS and the shards.
    pub(crate) fn running(&self) {
        if let Some(o) = &self.observed {
            o.set_stage(Stage::Running);
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
    /// bridge is stopping. With shard ownership in NATS KV the shard becomes
    /// one this process may run: it starts when the lease is won (`false`
    /// while another process holds it; it is taken when that lease lapses).
    pub async fn start_shard(&mut self, shard: ShardId) -> bool {
        if self.shards.contains_key(&shard) || self.root.is_cancelled() {
            return false;
        }
        let Some(c) = self.coord.as_mut() else {
            return self.start_shard_with(shard, None);
        };
        if !c.wanted.contains(&shard) {
            c.wanted.push(shard);
            c.wanted.sort_unstable();
        }
        self.coordinate().await;
        self.shards.contains_key(&shard)
    }

    pub(crate) fn start_shard_with(&mut self, shard: ShardId, resume: Option<Resume>) -> bool {
        let Some(ctx) = &self.ctx else {
            return false;
        };
        if self.shards.contains_key(&shard) || self.root.is_cancelled() {
            return false;
        }
        if self.draining.get(&shard).is_some_and(|u| !u.is_finished()) {
            return false;
        }
        self.draining.remove(&shard);
        self.generations += 1;
        let generation = self.generations;
        let cancel = self.root.child_token();
        let keep_checkpoint = Arc::new(AtomicBool::new(true));
        let handover = self.coord.as_ref().map(|c| Handover {
            store: c.store.clone(),
            owner: Arc::clone(&c.owner_id),
            keep: Arc::clone(&keep_checkpoint),
        });
        let unit = self.tasks.spawn(
            TaskId::shard("shard", shard),
            run_unit(
                Arc::clone(ctx),
                self.tasks.clone(),
                Unit {
                    shard,
                    generation,
                    cancel: cancel.clone(),
                    resume,
                    handover,
                },
                self.done_tx.clone(),
            )
            .instrument(shard::span(shard)),
        );
        self.shards.insert(
            shard,
            Running {
                generation,
                cancel,
                keep_checkpoint,
                unit,
            },
        );
        true
    }

    /// Stops `shard`'s task tree and waits until its gateway connection is
    /// closed and its publisher flushed; `None` when it was not running.
    pub async fn stop_shard(&mut self, shard: ShardId) -> Option<ShardEnd> {
        if let Some(c) = self.coord.as_mut() {
            c.wanted.retain(|s| *s != shard);
        }
        let running = self.shards.remove(&shard)?;
        running.cancel.cancel();
        let end = running.unit.await.ok().flatten();
        self.release(shard).await;
        end
    }

    /// Gives up `shard`'s lease, if held, so a successor starts at once.
    async fn release(&mut self, shard: ShardId) {
        let Some(c) = self.coord.as_mut() else {
            return;
        };
        let Some(lease) = c.leases.remove(&shard) else {
            return;
        };
        match tokio::time::timeout(KV_TIMEOUT, c.store.release(lease)).await {
            Ok(Ok(())) => tracing::info!(shard = %shard, "shard lease released"),
            Ok(Err(e)) => {
                tracing::warn!(shard = %shard, error = %e, "cannot release the shard lease; it expires on its own")
            }
            Err(_) => {
                tracing::warn!(shard = %shard, "releasing the shard lease timed out; it expires on its own")
            }
        }
    }

    /// One round of the lease loop: renew what is held (stopping what can
    /// no longer be held), take what lapsed.
    ///
    /// No KV request may hold the loop past the moment a held shard must
    /// stop: a request to a NATS that does not answer (gone, partitioned,
    /// paused) only fails at its timeout, and one per shard in a row, each
    /// as long as a short lease, would let the shards run on after their
    /// leases lapsed, while a standby may take them. So each request gets at
    /// most the time left until the earliest such moment
    /// ([`ownership::request_budget`]), renewals go before acquisitions, and
    /// the shards to stop are cancelled without waiting for them to drain.
    pub(crate) async fn coordinate(&mut self) {
        let Some(mut c) = self.coord.take() else {
            return;
        };
        let mut lost = Vec::new();
        let mut taken = Vec::new();
        let wanted = c.wanted.clone();
        for &shard in &wanted {
            let Some(lease) = c.leases.get_mut(&shard) else {
                continue;
            };
            if !c.store.renew_due(lease) {
                continue;
            }
            let budget = c.store.request_budget(lease, KV_TIMEOUT);
            if budget.is_zero() {
                tracing::error!(shard = %shard, "no time left to renew the shard lease before it expires; stopping the shard so it never runs twice");
                lost.push(shard);
                continue;
            }
            match tokio::time::timeout(budget, c.store.renew(lease, &c.owner)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::error!(shard = %shard, "another process holds this shard's lease; stopping the shard here");
                    lost.push(shard);
                }
                Ok(Err(e)) if c.store.must_stop(lease) => {
                    tracing::error!(shard = %shard, error = %e, "cannot renew the shard lease before it expires; stopping the shard so it never runs twice");
                    lost.push(shard);
                }
                Ok(Err(e)) => {
                    tracing::warn!(shard = %shard, error = %e, "cannot renew the shard lease; retrying")
                }
                Err(_) if c.store.must_stop(lease) => {
                    tracing::error!(shard = %shard, "renewing the shard lease timed out until it nearly expired; stopping the shard so it never runs twice");
                    lost.push(shard);
                }
                Err(_) => {
                    tracing::warn!(shard = %shard, "renewing the shard lease timed out; retrying")
                }
            }
        }
        for shard in &lost {
            c.leases.remove(shard);
        }
        // Their gateway connections close at once; their publishers drain
        // on their own (up to the drain timeout, with NATS away), so the
        // lease loop goes on renewing the other shards meanwhile.
        for shard in &lost {
            if let Some(running) = self.shards.remove(shard) {
                running.keep_checkpoint.store(false, Ordering::Relaxed);
                running.cancel.cancel();
                self.draining.insert(*shard, running.unit);
            }
        }
        for &shard in &lost {
            self.announce(
                &c,
                shard,
                "lease_lost",
                "this process lost the shard's lease and stopped it".to_owned(),
            );
        }
        for &shard in &wanted {
            let drained = self
                .draining
                .get(&shard)
                .is_none_or(JoinHandle::is_finished);
            if c.leases.contains_key(&shard)
                || self.shards.contains_key(&shard)
                || !drained
                || self.root.is_cancelled()
            {
                continue;
            }
            // The shards still held must be renewed in time next round.
            let budget = c
                .leases
                .values()
                .map(|lease| c.store.request_budget(lease, KV_TIMEOUT))
                .min()
                .unwrap_or(KV_TIMEOUT);
            if budget.is_zero() {
                break;
            }
            match tokio::time::timeout(budget, c.store.acquire(shard, &c.owner)).await {
                Ok(Ok(Some(lease))) => {
                    c.leases.insert(shard, lease);
                    taken.push(shard);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(shard = %shard, error = %e, "cannot take the shard lease")
                }
                Err(_) => tracing::warn!(shard = %shard, "taking the shard lease timed out"),
            }
        }
        let mut starts = Vec::with_capacity(taken.len());
        for shard in taken {
            let checkpoint = match tokio::time::timeout(KV_TIMEOUT, c.store.checkpoint(shard)).await
            {
                Ok(Ok(cp)) => cp,
                Ok(Err(e)) => {
                    tracing::warn!(shard = %shard, error = %e, "cannot read the shard's checkpoint; starting a new session");
                    None
                }
                Err(_) => {
                    tracing::warn!(shard = %shard, "reading the shard's checkpoint timed out; starting a new session");
                    None
                }
            };
            let allow_insecure = self
                .ctx
                .as_ref()
                .is_some_and(|ctx| ctx.config.discord.allow_insecure_gateway);
            let resume = checkpoint.as_ref().and_then(|cp| cp.resume(allow_insecure));
            let detail = describe_takeover(checkpoint.as_ref(), resume.as_ref());
            tracing::info!(shard = %shard, "{detail}");
            if let Some(ctx) = &self.ctx {
                ctx.reports.reporter(shard).owned_by(&c.owner_id);
            }
            self.announce(&c, shard, "lease_acquired", detail);
            starts.push((shard, resume));
        }
        // The shards' checkpoint writers need the coordination in place.
        self.coord = Some(c);
        for (shard, resume) in starts {
            self.start_shard_with(shard, resume);
        }
    }

    /// A status event about ownership.
    fn announce(&self, c: &Coordination, shard: ShardId, reason: &str, detail: String) {
        let Some(ctx) = &self.ctx else {
            return;
        };
        let mut ev = StatusEvent::new(ShardState::Connecting, shard.pair(), detail);
        ev.reason = Some(reason.to_owned());
        ev.owner = Some(c.owner_id.to_string());
        if reason == "lease_lost" {
            ev.state = ShardState::Disconnected;
        }
        ctx.sink.status(ev);
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
        let tick = self.coord.as_ref().map_or(Duration::from_secs(3600), |c| {
            ownership::tick(c.store.lease_period())
        });
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.shards.is_empty() && fatal.is_some() {
                break;
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                () = failed.cancelled() => break,
                _ = ticks.tick(), if self.coord.is_some() => self.coordinate().await,
                Some(UnitEnd { shard, generation, end }) = self.done_rx.recv() => {
                    // A unit stopped with stop_shard or for a lost lease has
                    // already been removed (and another may run the shard).
                    if self.shards.get(&shard).is_none_or(|r| r.generation != generation) {
                        continue;
                    }
                    self.shards.remove(&shard);
                    self.release(shard).await;
                    match end {
                        ShardEnd::Fatal { code, message } => {
                            // Never taken again: Discord refused it for good,
                            // and retrying a bad token or intents every tick
                            // would only hammer the gateway.
                            if let Some(c) = self.coord.as_mut() {
                                c.wanted.retain(|s| *s != shard);
                            }
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
        if let Some(o) = &self.observed {
            o.set_stage(Stage::Stopping);
        }
        self.root.cancel();
        let stopping: Vec<_> = self.shards.drain().collect();
        for (shard, running) in stopping {
            let _ = running.unit.await;
            self.release(shard).await;
        }
        for (_, unit) in self.draining.drain() {
            let _ = unit.await;
        }
        // The shards are gone: the last handles on the status publisher go
        // with the context, so it flushes and ends.
        self.ctx = None;
        self.status_stop.cancel();
        for service in self.services.drain(..) {
            let _ = service.await;
        }
        // Flush and close the connection now rather than when the last
        // handle is dropped: the server sees a clean close, and a server
        // stopped right after this process (the demo's) is not reported as
        // a lost connection.
        if let Err(e) = self.client.drain().await {
            tracing::warn!(error = %e, "final NATS flush failed");
        }
        // Last: probes and scrapes see the shutdown until the end.
        if let Some(http) = self.http.take() {
            http.stop().await;
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

/// Marks a shard as run by this process while it lives.
struct RunningMark(ShardReporter);

impl RunningMark {
    fn new(reporter: ShardReporter) -> Self {
        reporter.set_running(true);
        Self(reporter)
    }
}

impl Drop for RunningMark {
    fn drop(&mut self) {
        self.0.set_running(false);
    }
}

/// How a shard's unit ended, sent to [`Bridge::wait`].
struct UnitEnd {
    shard: ShardId,
    generation: u64,
    end: ShardEnd,
}

/// One shard to run.
struct Unit {
    shard: ShardId,
    generation: u64,
    cancel: CancellationToken,
    resume: Option<Resume>,
    handover: Option<Handover>,
}

/// One shard: its gateway task, its publisher and its checkpoint writer,
/// stopped in that order, so the last checkpoint holds the last ack.
async fn run_unit(
    ctx: Arc<ShardContext>,
    tasks: Tasks,
    unit: Unit,
    done: mpsc::UnboundedSender<UnitEnd>,
) -> Result<ShardEnd, TaskError> {
    let Unit {
        shard,
        generation,
        cancel,
        resume,
        handover,
    } = unit;
    // The shard counts as run here (metrics, readiness) from now until
    // the unit ends, also when it ends by a panic.
    let _running = RunningMark::new(ctx.reports.reporter(shard));
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
                reporter: ctx.reports.reporter(shard),
            },
            drain.clone(),
        )
        .in_current_span(),
    );
    let (marks, marks_rx) = watch::channel(None);
    let stop_checkpoints = CancellationToken::new();
    let owner = handover.as_ref().map(|h| Arc::clone(&h.owner));
    let checkpoints = handover.map(|h| {
        tasks.spawn(
            TaskId::shard("checkpoint", shard),
            checkpoint::write_checkpoints(h, shard, marks_rx, stop_checkpoints.clone())
                .in_current_span(),
        )
    });
    let mut machine = super::machine_config(
        &ctx.config,
        shard,
        ctx.token.clone(),
        ctx.gateway_url.clone(),
    );
    machine.resume = resume;
    // Commands reach the shard (and its subject is subscribed) while its
    // gateway task runs.
    let (route, commands) = ctx.routes.register(shard.id);
    let io = ShardIo {
        machine: Machine::new(machine),
        compression: ctx.config.discord.compression,
        max_payload: ctx.config.discord.max_frame_bytes,
        connect_timeout: CONNECT_TIMEOUT,
        tls: ctx.discord_tls.clone(),
        identify: Arc::clone(&ctx.identify),
        outbox: Arc::clone(&outbox),
        nats: ctx.target.client().clone(),
        sink: ctx.sink.clone(),
        reporter: ctx.reports.reporter(shard),
        tasks: tasks.clone(),
        session: marks.clone(),
        owner,
        commands,
    };
    let gateway = tasks.spawn(
        TaskId::shard("gateway", shard),
        shard::run(io, cancel).in_current_span(),
    );
    // A gateway task that died was recorded as the process's failure; the
    // unit still drains its publisher on the way out.
    let end = gateway.await.ok().flatten().unwrap_or(ShardEnd::Stopped);
    drop(route);
    drain.cancel();
    let _ = publisher.await;
    // What the publisher stored while draining moves the resume point once
    // more: the final checkpoint carries it.
    let (epoch, seq) = *outbox.acks().borrow();
    marks.send_modify(|m| {
        if let Some(m) = m.as_mut().filter(|m| m.epoch == epoch) {
            m.committed = m.committed.max(seq);
        }
    });
    stop_checkpoints.cancel();
    if let Some(task) = checkpoints {
        let _ = task.await;
    }
    let _ = done.send(UnitEnd {
        shard,
        generation,
        end: end.clone(),
    });
    Ok(end)
}

fn describe_takeover(checkpoint: Option<&Checkpoint>, resume: Option<&Resume>) -> String {
    match (checkpoint, resume) {
        (Some(cp), Some(r)) => format!(
            "took the shard's lease; resuming session {} from seq {} (checkpoint by {})",
            r.session_id,
            r.seq,
            crate::gateway::untrusted::printable(&cp.owner)
        ),
        (Some(cp), None) => format!(
            "took the shard's lease; its checkpoint (by {}) is not resumable, identifying",
            crate::gateway::untrusted::printable(&cp.owner)
        ),
        (None, _) => "took the shard's lease; no checkpoint, identifying".to_owned(),
    }
}
