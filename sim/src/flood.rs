//! Floods: many dispatches written into one connection by its own task, as
//! fast as the client reads them (or at a fixed rate), so that a client's
//! flow control meets real TCP back-pressure: the task waits on the socket
//! exactly as Discord's sender would when a client stops reading.
//!
//! A flood's dispatches are ordinary dispatches of the session: they get
//! the next sequence numbers when they are written, are kept for RESUME
//! replay like any other, and queue behind (or ahead of) dispatches made
//! with [`Simulator::dispatch`](crate::Simulator::dispatch) in sequence
//! order. Their bodies are serialized once ([`FloodEvent`]) and cycled, so
//! the simulator spends its time compressing and writing, not building
//! JSON. A flood belongs to the connection it started on: if that
//! connection ends, the flood stops there ([`FloodReport::aborted`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Timeout;

/// One dispatch body of a flood, serialized once.
#[derive(Debug, Clone)]
pub struct FloodEvent {
    /// The event name (`t`).
    pub t: String,
    /// The event data (`d`), as JSON text.
    pub d: Arc<str>,
}

impl FloodEvent {
    /// Serializes `d` once.
    #[must_use]
    pub fn new(t: &str, d: &Value) -> Self {
        Self {
            t: t.to_owned(),
            d: Arc::from(d.to_string()),
        }
    }
}

/// What to flood a connection with.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Bodies, cycled in order.
    pub events: Arc<[FloodEvent]>,
    /// How many dispatches to write.
    pub count: u64,
    /// Dispatches per second; `None`: as fast as the client reads.
    pub rate: Option<u32>,
    /// Keep the time each dispatch was written ([`FloodReport::written_at`]),
    /// for latency measurements.
    pub record_times: bool,
}

/// What a flood did.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// Dispatches written.
    pub written: u64,
    /// The sequence number of the first and the last one.
    pub seqs: Option<(u64, u64)>,
    /// When the first was written.
    pub started: Option<Instant>,
    /// When the last was written.
    pub finished: Option<Instant>,
    /// Compressed bytes written for the flood's dispatches.
    pub wire_bytes: u64,
    /// The connection ended before the flood did.
    pub aborted: bool,
    /// With [`Flood::record_times`]: when each dispatch, in sequence order
    /// from `seqs.0`, was handed to the socket.
    pub written_at: Vec<Instant>,
}

/// Follows a running flood.
#[derive(Debug, Clone)]
pub struct FloodHandle {
    pub(crate) run: Arc<FloodRun>,
}

/// A flood's shared state: the plan, and its progress.
#[derive(Debug)]
pub(crate) struct FloodRun {
    pub(crate) flood: Flood,
    pub(crate) written: AtomicU64,
    pub(crate) wire_bytes: AtomicU64,
    pub(crate) aborted: AtomicBool,
    pub(crate) progress: watch::Sender<u64>,
    pub(crate) detail: Mutex<Detail>,
}

#[derive(Debug, Default)]
pub(crate) struct Detail {
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: u64,
    pub(crate) started: Option<Instant>,
    pub(crate) finished: Option<Instant>,
    pub(crate) times: Vec<Instant>,
}

impl FloodRun {
    pub(crate) fn new(flood: Flood) -> Arc<Self> {
        Arc::new(Self {
            flood,
            written: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            aborted: AtomicBool::new(false),
            progress: watch::Sender::new(0),
            detail: Mutex::new(Detail::default()),
        })
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Detail) -> R) -> R {
        f(&mut self.detail.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Dispatches still to write.
    pub(crate) fn remaining(&self) -> u64 {
        self.flood
            .count
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }

    /// The body of the `n`-th dispatch.
    pub(crate) fn event(&self, n: u64) -> &FloodEvent {
        let len = self.flood.events.len() as u64;
        let i = usize::try_from(n % len.max(1)).unwrap_or_default();
        &self.flood.events[i]
    }

    pub(crate) fn is_over(&self) -> bool {
        self.remaining() == 0 || self.aborted.load(Ordering::Relaxed)
    }

    pub(crate) fn abort(&self) {
        if self.remaining() > 0 {
            self.aborted.store(true, Ordering::Relaxed);
            self.progress.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

impl FloodHandle {
    /// Dispatches written so far.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.run.written.load(Ordering::Relaxed)
    }

    /// What the flood did so far.
    #[must_use]
    pub fn report(&self) -> FloodReport {
        let run = &self.run;
        run.with(|d| FloodReport {
            written: run.written.load(Ordering::Relaxed),
            seqs: d.first_seq.map(|first| (first, d.last_seq)),
            started: d.started,
            finished: d.finished,
            wire_bytes: run.wire_bytes.load(Ordering::Relaxed),
            aborted: run.aborted.load(Ordering::Relaxed),
            written_at: d.times.clone(),
        })
    }

    /// Waits until every dispatch was written (or the connection ended).
    ///
    /// # Errors
    /// [`Timeout`] when the flood is still running after `timeout`.
    pub async fn finished(&self, timeout: Duration) -> Result<FloodReport, Timeout> {
        let mut progress = self.run.progress.subscribe();
        let wait = async {
            loop {
                progress.borrow_and_update();
                if self.run.is_over() {
                    return;
                }
                if progress.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Timeout(timeout))?;
        Ok(self.report())
    }
}

/// A busy bot's traffic, `n` distinct bodies: 80 % MESSAGE_CREATE by
/// people, 10 % slash commands (INTERACTION_CREATE), 10 % PRESENCE_UPDATE,
/// in the guilds of `config` that route to `shard` of `shards`.
#[must_use]
pub fn busy_bot_mix(
    config: &crate::SimConfig,
    shard: u32,
    shards: u32,
    n: usize,
) -> Arc<[FloodEvent]> {
    use crate::events::{self, User};
    let guilds: Vec<u64> = config
        .guilds
        .iter()
        .copied()
        .filter(|g| crate::shard_for_guild(*g, shards) == shard)
        .collect();
    let guild = |i: usize| guilds.get(i % guilds.len().max(1)).copied();
    (0..n)
        .map(|i| {
            let user = User::new(1_144_060_924_343_000_000 + (i as u64 % 97), "member");
            let channel = 1_144_060_924_343_100_000 + (i as u64 % 7);
            match i % 10 {
                8 => FloodEvent::new(
                    "INTERACTION_CREATE",
                    &events::interaction_create(
                        config.application_id,
                        channel,
                        guild(i),
                        &user,
                        "ask",
                        serde_json::json!([{"type": 3, "name": "q", "value": format!("question {i}")}]),
                    ),
                ),
                9 => FloodEvent::new(
                    "PRESENCE_UPDATE",
                    &events::presence_update(guild(i).unwrap_or(1), &user, "online"),
                ),
                _ => FloodEvent::new(
                    "MESSAGE_CREATE",
                    &events::message_create(
                        channel,
                        guild(i),
                        &user,
                        &format!("message {i}: a line of chat as people write it, with a link https://example.com/{i}"),
                    ),
                ),
            }
        })
        .collect()
}
