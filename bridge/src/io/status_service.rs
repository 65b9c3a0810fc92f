//! The `discord-bridge` NATS service (the README's Operations): `nats micro ls`, `info`
//! and `stats` list every bridge process, and the `status` endpoint on
//! `{prefix}.bridge.status` answers with the state of each shard.
//!
//! Every process joins the endpoint with its own queue group, so a request
//! with several replies (`nats req --replies 0 …`) collects every process;
//! `nats micro stats discord-bridge` shows the same reports as endpoint data.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use async_nats::service::ServiceExt as _;
use discord_bridge_schemas::{BridgeStatus, ShardReport, ShardState, StatusEvent};
use futures_util::StreamExt as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::gateway::ShardId;
use crate::gateway::machine::Stats;

/// One shard's report (lifecycle fields) and its counters (atomics).
type Entry = (ShardReport, Arc<Counters>);

/// The reports of all shards of this process, shared with the shard tasks.
/// Lifecycle fields change rarely and sit behind one lock; the counters
/// change with every frame and are per-shard atomics, read on request, so a
/// busy shard never takes a process-wide lock.
#[derive(Debug, Clone)]
pub(crate) struct Reports {
    inner: Arc<Mutex<Vec<Entry>>>,
    publish: &'static str,
}

/// One shard's counters; `NONE` stands for an absent value.
#[derive(Debug, Default)]
struct Counters {
    reconnects: AtomicU64,
    relayed: AtomicU64,
    own_messages: AtomicU64,
    malformed: AtomicU64,
    oversized: AtomicU64,
    lost: AtomicU64,
    one_pass_messages: AtomicU64,
    read_pauses: AtomicU64,
    nats_closes: AtomicU64,
    last_seq: AtomicU64,
    rtt_ms: AtomicU64,
    buffered: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Counters {
    fn new() -> Arc<Self> {
        let c = Self::default();
        c.last_seq.store(NONE, Relaxed);
        c.rtt_ms.store(NONE, Relaxed);
        Arc::new(c)
    }

    fn fill(&self, r: &mut ShardReport) {
        let opt = |v: u64| (v != NONE).then_some(v);
        r.reconnects = self.reconnects.load(Relaxed);
        r.events_relayed = self.relayed.load(Relaxed);
        r.own_messages = self.own_messages.load(Relaxed);
        r.malformed = self.malformed.load(Relaxed);
        r.oversized = self.oversized.load(Relaxed);
        r.lost = self.lost.load(Relaxed);
        r.one_pass_messages = self.one_pass_messages.load(Relaxed);
        r.read_pauses = self.read_pauses.load(Relaxed);
        r.nats_closes = self.nats_closes.load(Relaxed);
        r.last_seq = opt(self.last_seq.load(Relaxed));
        r.heartbeat_rtt_ms = opt(self.rtt_ms.load(Relaxed));
        r.buffered = usize::try_from(self.buffered.load(Relaxed)).unwrap_or(usize::MAX);
    }
}

/// One shard's handle on its report.
#[derive(Debug, Clone)]
pub(crate) struct ShardReporter {
    reports: Reports,
    index: usize,
    counters: Arc<Counters>,
}

impl Reports {
    /// Empty reports for `shards`.
    #[must_use]
    pub(crate) fn new(shards: &[ShardId], publish: &'static str) -> Self {
        let reports = shards
            .iter()
            .map(|s| {
                let report = ShardReport {
                    shard: s.pair(),
                    ..ShardReport::default()
                };
                (report, Counters::new())
            })
            .collect();
        Self {
            inner: Arc::new(Mutex::new(reports)),
            publish,
        }
    }

    /// The handle of `shard`'s report, added when the shard is new.
    #[must_use]
    pub(crate) fn reporter(&self, shard: ShardId) -> ShardReporter {
        let mut all = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match all.iter().position(|(r, _)| r.shard == shard.pair()) {
            Some(i) => i,
            None => {
                let report = ShardReport {
                    shard: shard.pair(),
                    ..ShardReport::default()
                };
                all.push((report, Counters::new()));
                all.len() - 1
            }
        };
        let counters = Arc::clone(&all[index].1);
        ShardReporter {
            reports: self.clone(),
            index,
            counters,
        }
    }

    /// A snapshot for the endpoint.
    #[must_use]
    pub(crate) fn snapshot(&self) -> BridgeStatus {
        BridgeStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            publish: self.publish.to_owned(),
            shards: self
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(report, counters)| {
                    let mut r = report.clone();
                    counters.fill(&mut r);
                    r
                })
                .collect(),
        }
    }
}

impl ShardReporter {
    fn with(&self, f: impl FnOnce(&mut ShardReport)) {
        let mut all = self
            .reports
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((r, _)) = all.get_mut(self.index) {
            f(r);
        }
    }

    /// Applies a lifecycle transition.
    pub(crate) fn transition(&self, ev: &StatusEvent) {
        self.with(|r| {
            r.state = Some(ev.state);
            if ev.session_id.is_some() {
                r.session_id.clone_from(&ev.session_id);
            }
            match ev.state {
                ShardState::Connected => {
                    r.connected_since = OffsetDateTime::now_utc().format(&Rfc3339).ok();
                }
                ShardState::Disconnected | ShardState::ShuttingDown => r.connected_since = None,
                ShardState::Error => {
                    r.last_error = ev.message.clone().or_else(|| Some(ev.detail.clone()))
                }
                _ => {}
            }
        });
    }

    /// Records that `owner` (this process) took the shard over now.
    pub(crate) fn owned_by(&self, owner: &str) {
        self.with(|r| {
            r.owner = Some(owner.to_owned());
            r.owned_since = OffsetDateTime::now_utc().format(&Rfc3339).ok();
        });
    }

    /// Copies the counters: relaxed stores, no lock.
    pub(crate) fn counters(
        &self,
        stats: &Stats,
        last_seq: Option<u64>,
        rtt_ms: Option<u64>,
        buffered: usize,
    ) {
        let c = &self.counters;
        c.reconnects.store(stats.reconnects, Relaxed);
        c.relayed.store(stats.relayed, Relaxed);
        c.own_messages.store(stats.own_messages, Relaxed);
        c.malformed.store(stats.malformed, Relaxed);
        c.oversized.store(stats.oversized, Relaxed);
        c.lost.store(stats.lost, Relaxed);
        c.one_pass_messages.store(stats.one_pass_messages, Relaxed);
        c.read_pauses.store(stats.read_pauses, Relaxed);
        c.nats_closes.store(stats.nats_closes, Relaxed);
        c.last_seq.store(last_seq.unwrap_or(NONE), Relaxed);
        c.rtt_ms
            .store(rtt_ms.map_or(NONE, |v| v.min(NONE - 1)), Relaxed);
        c.buffered
            .store(u64::try_from(buffered).unwrap_or(NONE - 1), Relaxed);
    }
}

/// Serves the status endpoint until `cancel`. A server that refuses the
/// service leaves the bridge without it (warned), not stopped.
///
/// # Errors
/// None: the type is the supervisor's contract.
pub(crate) async fn serve(
    client: async_nats::Client,
    prefix: String,
    reports: Reports,
    cancel: CancellationToken,
) -> Result<(), super::tasks::TaskError> {
    let stats_reports = reports.clone();
    let service = client
        .service_builder()
        .description("Discord Gateway to NATS bridge: per-shard session status")
        .queue_group(format!("discord-bridge-{:016x}", fastrand::u64(..)))
        .stats_handler(move |_endpoint, _stats| {
            serde_json::to_value(stats_reports.snapshot()).unwrap_or_default()
        })
        .start("discord-bridge", env!("CARGO_PKG_VERSION"))
        .await;
    let service = match service {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register the discord-bridge NATS service; status endpoint unavailable");
            return Ok(());
        }
    };
    let subject = format!("{prefix}.bridge.status");
    let mut endpoint = match service.endpoint(subject.clone()).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, subject, "cannot add the status endpoint");
            return Ok(());
        }
    };
    tracing::info!(subject, "status endpoint ready");
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            request = endpoint.next() => {
                let Some(request) = request else { break };
                let body = serde_json::to_vec(&reports.snapshot()).unwrap_or_default();
                if let Err(e) = request.respond(Ok(body.into())).await {
                    tracing::debug!(error = %e, "status reply failed");
                }
            }
        }
    }
    let _ = endpoint.stop().await;
    let _ = service.stop().await;
    Ok(())
}
