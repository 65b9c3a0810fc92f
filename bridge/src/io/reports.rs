//! What each shard of this process is doing, kept in one place for the two
//! that read it: the NATS status endpoint ([`super::status_service`]) and
//! the Prometheus metrics and probes ([`super::metrics`]).
//!
//! Lifecycle fields change rarely and sit behind one lock. Counters change
//! with every frame and are per-shard atomics with one writer each: the
//! gateway task copies its machine's [`Stats`] after each batch of actions,
//! and the publisher counts what it published. Readers load them at
//! request or scrape time, so a busy shard never takes a process-wide lock
//! and nothing is counted twice.
//!
//! Counters add up over every run of a shard in this process (a shard
//! stopped and taken again starts a new machine whose stats start at zero):
//! each run's writer starts from what the previous runs left, so a
//! Prometheus counter never goes backwards while the process lives.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use discord_bridge_schemas::{BridgeStatus, ShardReport, ShardState, StatusEvent};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::histogram::{Histogram, HistogramSnapshot};
use crate::gateway::ShardId;
use crate::gateway::machine::{EndReason, ReasonCounts, Stats};
use crate::health::ShardHealth;

/// One shard: its report's lifecycle fields, why its last connection
/// ended, and its counters.
#[derive(Debug)]
struct Entry {
    id: ShardId,
    report: ShardReport,
    last_end: Option<(String, Option<u16>)>,
    counters: Arc<Counters>,
}

/// The reports of all shards of this process, shared with the shard tasks.
#[derive(Debug, Clone)]
pub(crate) struct Reports {
    inner: Arc<Mutex<Vec<Entry>>>,
    publish: &'static str,
}

/// One shard's counters; `NONE` stands for an absent value.
#[derive(Debug, Default)]
struct Counters {
    /// Whether this process runs the shard now (set by its unit).
    running: AtomicBool,
    // The machine's counters, over every run (the gateway task writes).
    reconnects: [AtomicU64; EndReason::ALL.len()],
    relayed: AtomicU64,
    own_messages: AtomicU64,
    malformed: AtomicU64,
    oversized: AtomicU64,
    unknown_opcodes: AtomicU64,
    lost: AtomicU64,
    one_pass_messages: AtomicU64,
    read_pauses: AtomicU64,
    nats_closes: AtomicU64,
    identifies: AtomicU64,
    resumes: AtomicU64,
    // Gauges (the gateway task writes).
    last_seq: AtomicU64,
    rtt_us: AtomicU64,
    buffered: AtomicU64,
    buffered_bytes: AtomicU64,
    // The publisher's counters (the publisher and, for raw, the gateway
    // task add to them).
    published: AtomicU64,
    raw_published: AtomicU64,
    publish_errors: AtomicU64,
    too_large: AtomicU64,
    bad_headers: AtomicU64,
    ack_latency: Histogram,
}

const NONE: u64 = u64::MAX;

/// One shard's numbers, read at once for a scrape.
#[derive(Debug, Clone)]
pub(crate) struct ShardMetrics {
    pub health: ShardHealth,
    /// Its machine's counters, summed over every run here.
    pub stats: Stats,
    pub heartbeat_rtt: Option<Duration>,
    pub buffered: u64,
    pub buffered_bytes: u64,
    pub published: u64,
    pub raw_published: u64,
    pub publish_errors: u64,
    pub too_large: u64,
    pub bad_headers: u64,
    pub ack_latency: HistogramSnapshot,
}

impl Counters {
    fn new() -> Arc<Self> {
        let c = Self::default();
        c.last_seq.store(NONE, Relaxed);
        c.rtt_us.store(NONE, Relaxed);
        Arc::new(c)
    }

    /// The machine counters as they stand: where the next run starts from.
    fn stats(&self) -> Stats {
        let reconnects = ReasonCounts::from_fn(|r| self.reconnects[r.index()].load(Relaxed));
        Stats {
            relayed: self.relayed.load(Relaxed),
            own_messages: self.own_messages.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            unknown_opcodes: self.unknown_opcodes.load(Relaxed),
            replays_skipped: 0,
            reconnects,
            read_pauses: self.read_pauses.load(Relaxed),
            nats_closes: self.nats_closes.load(Relaxed),
            lost: self.lost.load(Relaxed),
            sessions: 0,
            identifies: self.identifies.load(Relaxed),
            resumes: self.resumes.load(Relaxed),
            one_pass_messages: self.one_pass_messages.load(Relaxed),
        }
    }

    fn fill(&self, r: &mut ShardReport) {
        let opt = |v: u64| (v != NONE).then_some(v);
        r.reconnects = self.reconnects.iter().map(|c| c.load(Relaxed)).sum();
        r.events_relayed = self.relayed.load(Relaxed);
        r.own_messages = self.own_messages.load(Relaxed);
        r.malformed = self.malformed.load(Relaxed);
        r.oversized = self.oversized.load(Relaxed);
        r.lost = self.lost.load(Relaxed);
        r.one_pass_messages = self.one_pass_messages.load(Relaxed);
        r.read_pauses = self.read_pauses.load(Relaxed);
        r.nats_closes = self.nats_closes.load(Relaxed);
        r.last_seq = opt(self.last_seq.load(Relaxed));
        r.heartbeat_rtt_ms = opt(self.rtt_us.load(Relaxed)).map(|us| us / 1000);
        r.buffered = usize::try_from(self.buffered.load(Relaxed)).unwrap_or(usize::MAX);
    }
}

/// One shard's handle on its report.
#[derive(Debug, Clone)]
pub(crate) struct ShardReporter {
    reports: Reports,
    index: usize,
    counters: Arc<Counters>,
    /// What earlier runs of the shard counted: this run's machine starts
    /// from zero.
    base: Stats,
}

impl Reports {
    /// Empty reports for `shards`.
    #[must_use]
    pub(crate) fn new(shards: &[ShardId], publish: &'static str) -> Self {
        let reports = Self {
            inner: Arc::new(Mutex::new(Vec::with_capacity(shards.len()))),
            publish,
        };
        for s in shards {
            let _ = reports.reporter(*s);
        }
        reports
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handle of `shard`'s report, added when the shard is new. Its
    /// counters start from what earlier runs of the shard counted.
    #[must_use]
    pub(crate) fn reporter(&self, shard: ShardId) -> ShardReporter {
        let mut all = self.lock();
        let index = match all.iter().position(|e| e.id == shard) {
            Some(i) => i,
            None => {
                all.push(Entry {
                    id: shard,
                    report: ShardReport {
                        shard: shard.pair(),
                        ..ShardReport::default()
                    },
                    last_end: None,
                    counters: Counters::new(),
                });
                all.len() - 1
            }
        };
        let counters = Arc::clone(&all[index].counters);
        drop(all);
        ShardReporter {
            reports: self.clone(),
            index,
            base: counters.stats(),
            counters,
        }
    }

    /// A snapshot for the status endpoint.
    #[must_use]
    pub(crate) fn snapshot(&self) -> BridgeStatus {
        BridgeStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            publish: self.publish.to_owned(),
            shards: self
                .lock()
                .iter()
                .map(|e| {
                    let mut r = e.report.clone();
                    e.counters.fill(&mut r);
                    r
                })
                .collect(),
        }
    }

    /// Every shard as readiness sees it.
    #[must_use]
    pub(crate) fn health(&self) -> Vec<ShardHealth> {
        self.lock().iter().map(Entry::health).collect()
    }

    /// Every shard's numbers, for a scrape.
    #[must_use]
    pub(crate) fn metrics(&self) -> Vec<ShardMetrics> {
        self.lock()
            .iter()
            .map(|e| {
                let c = &e.counters;
                let rtt = c.rtt_us.load(Relaxed);
                ShardMetrics {
                    health: e.health(),
                    stats: c.stats(),
                    heartbeat_rtt: (rtt != NONE).then(|| Duration::from_micros(rtt)),
                    buffered: c.buffered.load(Relaxed),
                    buffered_bytes: c.buffered_bytes.load(Relaxed),
                    published: c.published.load(Relaxed),
                    raw_published: c.raw_published.load(Relaxed),
                    publish_errors: c.publish_errors.load(Relaxed),
                    too_large: c.too_large.load(Relaxed),
                    bad_headers: c.bad_headers.load(Relaxed),
                    ack_latency: c.ack_latency.snapshot(),
                }
            })
            .collect()
    }
}

impl Entry {
    fn health(&self) -> ShardHealth {
        let (last_reason, last_close) = self.last_end.clone().unzip();
        ShardHealth {
            shard: self.id,
            running: self.counters.running.load(Relaxed),
            state: self.report.state,
            last_reason,
            last_close: last_close.flatten(),
        }
    }
}

impl ShardReporter {
    fn with(&self, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.reports.lock().get_mut(self.index) {
            f(e);
        }
    }

    /// Applies a lifecycle transition.
    pub(crate) fn transition(&self, ev: &StatusEvent) {
        self.with(|e| {
            let r = &mut e.report;
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
                    r.last_error = ev.message.clone().or_else(|| Some(ev.detail.clone()));
                }
                _ => {}
            }
            if ev.state == ShardState::Disconnected
                && let Some(reason) = &ev.reason
            {
                e.last_end = Some((reason.clone(), ev.close_code));
            }
        });
    }

    /// Records that `owner` (this process) took the shard over now.
    pub(crate) fn owned_by(&self, owner: &str) {
        self.with(|e| {
            e.report.owner = Some(owner.to_owned());
            e.report.owned_since = OffsetDateTime::now_utc().format(&Rfc3339).ok();
        });
    }

    /// Marks the shard as run by this process (its unit started) or not
    /// (the unit ended).
    pub(crate) fn set_running(&self, running: bool) {
        self.counters.running.store(running, Relaxed);
    }

    /// Copies the machine's counters and the gauges: relaxed stores, no
    /// lock. `buffered` is the outbox's events and bytes.
    pub(crate) fn counters(
        &self,
        stats: &Stats,
        last_seq: Option<u64>,
        rtt: Option<Duration>,
        buffered: (usize, usize),
    ) {
        let c = &self.counters;
        let b = &self.base;
        for reason in EndReason::ALL {
            c.reconnects[reason.index()].store(
                b.reconnects.get(reason) + stats.reconnects.get(reason),
                Relaxed,
            );
        }
        c.relayed.store(b.relayed + stats.relayed, Relaxed);
        c.own_messages
            .store(b.own_messages + stats.own_messages, Relaxed);
        c.malformed.store(b.malformed + stats.malformed, Relaxed);
        c.oversized.store(b.oversized + stats.oversized, Relaxed);
        c.unknown_opcodes
            .store(b.unknown_opcodes + stats.unknown_opcodes, Relaxed);
        c.lost.store(b.lost + stats.lost, Relaxed);
        c.one_pass_messages
            .store(b.one_pass_messages + stats.one_pass_messages, Relaxed);
        c.read_pauses
            .store(b.read_pauses + stats.read_pauses, Relaxed);
        c.nats_closes
            .store(b.nats_closes + stats.nats_closes, Relaxed);
        c.identifies.store(b.identifies + stats.identifies, Relaxed);
        c.resumes.store(b.resumes + stats.resumes, Relaxed);
        c.last_seq.store(last_seq.unwrap_or(NONE), Relaxed);
        c.rtt_us.store(
            rtt.map_or(NONE, |d| {
                u64::try_from(d.as_micros())
                    .unwrap_or(NONE - 1)
                    .min(NONE - 1)
            }),
            Relaxed,
        );
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(NONE - 1);
        c.buffered.store(as_u64(buffered.0), Relaxed);
        c.buffered_bytes.store(as_u64(buffered.1), Relaxed);
    }

    /// A raw dispatch was handed to the core publisher.
    pub(crate) fn raw_published(&self) {
        self.counters.raw_published.fetch_add(1, Relaxed);
    }

    /// An agent event was stored (JetStream acked it) or sent (core); with
    /// JetStream, `ack` is how long the ack took.
    pub(crate) fn published(&self, ack: Option<Duration>) {
        self.counters.published.fetch_add(1, Relaxed);
        if let Some(d) = ack {
            self.counters.ack_latency.observe(d);
        }
    }

    /// A publish failed and will be retried.
    pub(crate) fn publish_failed(&self) {
        self.counters.publish_errors.fetch_add(1, Relaxed);
    }

    /// An event was dropped: larger than the server's max_payload.
    pub(crate) fn too_large(&self) {
        self.counters.too_large.fetch_add(1, Relaxed);
    }

    /// An event was dropped: a header could not be built.
    pub(crate) fn bad_header(&self) {
        self.counters.bad_headers.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(relayed: u64, zombies: u64) -> Stats {
        let mut s = Stats {
            relayed,
            identifies: 1,
            ..Stats::default()
        };
        for _ in 0..zombies {
            s.reconnects.add(EndReason::ZombieConnection);
        }
        s
    }

    #[test]
    fn a_second_run_of_a_shard_counts_on_from_the_first() {
        let shard = ShardId::new(0, 1);
        let reports = Reports::new(&[shard], "jetstream");
        let first = reports.reporter(shard);
        first.counters(&stats(5, 2), Some(9), None, (0, 0));
        let second = reports.reporter(shard);
        second.counters(&stats(1, 1), Some(2), None, (0, 0));
        let m = &reports.metrics()[0];
        assert_eq!(m.stats.relayed, 6);
        assert_eq!(m.stats.identifies, 2);
        assert_eq!(m.stats.reconnects.get(EndReason::ZombieConnection), 3);
        let status = reports.snapshot();
        assert_eq!(status.shards[0].events_relayed, 6);
        assert_eq!(status.shards[0].reconnects, 3);
        assert_eq!(status.shards[0].last_seq, Some(2), "a gauge is not summed");
    }

    #[test]
    fn health_follows_running_and_the_last_end() {
        let shard = ShardId::new(3, 4);
        let reports = Reports::new(&[shard], "jetstream");
        let r = reports.reporter(shard);
        assert!(!reports.health()[0].running);
        r.set_running(true);
        let mut ev = StatusEvent::new(ShardState::Disconnected, shard.pair(), "gone");
        ev.reason = Some("closed_by_gateway".into());
        ev.close_code = Some(4000);
        r.transition(&ev);
        r.transition(&StatusEvent::new(ShardState::Backoff, shard.pair(), "wait"));
        let h = &reports.health()[0];
        assert!(h.running);
        assert_eq!(h.state, Some(ShardState::Backoff));
        assert_eq!(h.last_reason.as_deref(), Some("closed_by_gateway"));
        assert_eq!(h.last_close, Some(4000));
    }

    #[test]
    fn rtt_keeps_microseconds_and_the_report_milliseconds() {
        let shard = ShardId::new(0, 1);
        let reports = Reports::new(&[shard], "core");
        reports.reporter(shard).counters(
            &Stats::default(),
            None,
            Some(Duration::from_micros(41_700)),
            (3, 300),
        );
        let m = &reports.metrics()[0];
        assert_eq!(m.heartbeat_rtt, Some(Duration::from_micros(41_700)));
        assert_eq!((m.buffered, m.buffered_bytes), (3, 300));
        assert_eq!(reports.snapshot().shards[0].heartbeat_rtt_ms, Some(41));
    }
}
