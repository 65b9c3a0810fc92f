//! The soak itself: a 3-node NATS cluster (stream and KV at 3 replicas),
//! the simulator with two shards, two bridge processes configured for both
//! (one runs them, the other stands by), the event generator, and the
//! faults of the seeded schedule injected one after another. Each fault
//! waits for its recovery — the simulator sees the RESUME (or, where
//! Discord ended the session, the new IDENTIFY), and events sent after it
//! reach the stream — before the next; the only fixed pace is the
//! generator's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use discord_bridge_schemas::subject;
use discord_gateway_sim::{SimConfig, Simulator};

use super::audit::{SentEvent, audit};
use super::faults::{Fault, Recovery, schedule};
use super::fleet::Fleet;
use super::inject::{live, ready};
use super::observe::{Statuses, Tail, read_all};
use super::report::{FaultRow, Report};
use super::traffic::Traffic;
use crate::nats::{NatsCluster, connect_any};
use crate::wait::POLL_INTERVAL;

/// The bridge's default stream and subject prefix.
pub(super) const STREAM: &str = "ASTRID_DISCORD";
const PREFIX: &str = subject::DEFAULT_PREFIX;
/// Shards of the simulated bot.
pub(super) const SHARDS: u32 = 2;
/// Most recoveries take a second or two; a loaded machine, much longer.
pub(super) const RECOVERY: Duration = Duration::from_secs(90);
/// How long the stream may take to hold the last events once traffic stopped.
const SETTLE: Duration = Duration::from_secs(180);
/// A binary message that is not a continuation of either compressed stream
/// (a deflate block of the reserved type, and no valid zstd block either),
/// ending with the zlib flush marker so that it is decoded at once.
pub(super) const GARBAGE: [u8; 11] = [
    0x07, 0xff, 0xff, 0x13, 0x37, 0xde, 0xad, 0x00, 0x00, 0xff, 0xff,
];

/// How a soak runs; [`from_env`](Self::from_env) reads the `CHAOS_*`
/// variables.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Seeds the fault schedule, targets and process settings (`CHAOS_SEED`).
    pub seed: u64,
    /// Events to send in all (`CHAOS_EVENTS`).
    pub events: u64,
    /// Rounds of every fault kind (`CHAOS_ROUNDS`).
    pub rounds: u32,
    /// Events per second the generator sends at most (`CHAOS_RATE`).
    pub rate: u32,
    /// Where to write the report as JSON (`CHAOS_REPORT`).
    pub report: Option<PathBuf>,
    /// A directory for every bridge process's and NATS node's log
    /// (`CHAOS_LOGS`), written when the soak ends or fails a wait.
    pub logs: Option<PathBuf>,
}

impl SoakOptions {
    /// These defaults, overridden by `CHAOS_SEED`, `CHAOS_EVENTS`,
    /// `CHAOS_ROUNDS`, `CHAOS_RATE` and `CHAOS_REPORT`. Without a seed, one
    /// is drawn from the clock (the report prints it).
    ///
    /// # Panics
    ///
    /// When a variable is set but not a number.
    #[must_use]
    pub fn from_env(events: u64, rounds: u32, rate: u32) -> Self {
        fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
            let value = std::env::var(name).ok()?;
            Some(
                value
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
            )
        }
        let seed = var("CHAOS_SEED").unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            u64::from(now.subsec_nanos()) ^ now.as_secs().rotate_left(32)
        });
        Self {
            seed,
            events: var("CHAOS_EVENTS").unwrap_or(events),
            rounds: var("CHAOS_ROUNDS").unwrap_or(rounds).max(1),
            rate: var("CHAOS_RATE").unwrap_or(rate).max(1),
            report: std::env::var_os("CHAOS_REPORT").map(PathBuf::from),
            logs: std::env::var_os("CHAOS_LOGS").map(PathBuf::from),
        }
    }
}

/// Runs a soak and returns its report (the caller asserts on it).
///
/// # Panics
///
/// When a fault is not recovered from in time, or a bridge process exits
/// unexpectedly (with the processes' last log lines).
pub async fn run(options: SoakOptions) -> Report {
    let started = Instant::now();
    tracing::info!(?options, "chaos soak");
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let faults = schedule(&mut rng, options.rounds);
    let chunk = (options.events / (faults.len() as u64 + 1)).max(20);
    let cluster = NatsCluster::start().await;
    let sim = Simulator::start(SimConfig {
        shards: SHARDS,
        // One bucket per shard: the two identify in parallel.
        max_concurrency: SHARDS,
        // Fast zombie detection, and still within 120 sends a minute.
        heartbeat_interval: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let sim = Arc::new(sim);
    let urls = cluster.urls();
    let js = async_nats::jetstream::new(connect_any(&urls).await);
    let statuses = Statuses::start(&urls, &subject::gateway_status(PREFIX)).await;
    let env: Vec<(String, String)> = [
        ("DISCORD_BOT_TOKEN", sim.config().token.clone()),
        ("DISCORD_API_BASE", sim.api_base()),
        ("DISCORD_ALLOW_INSECURE_GATEWAY", "true".to_owned()),
        ("DISCORD_SHARDS", format!("0-{}/{SHARDS}", SHARDS - 1)),
        ("DISCORD_SHARD_LEASE_SECS", "2".to_owned()),
        ("DISCORD_BACKOFF_BASE_MS", "20".to_owned()),
        ("DISCORD_BACKOFF_MAX_MS", "500".to_owned()),
        ("NATS_URL", urls.join(",")),
        ("BRIDGE_PUBLISH_MODE", "jetstream".to_owned()),
        ("BRIDGE_STREAM_REPLICAS", "3".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut soak = Soak {
        rng,
        cluster,
        sim: Arc::clone(&sim),
        fleet: Fleet::new(env),
        js: js.clone(),
        statuses,
        tail: Tail::start(js.clone(), STREAM.to_owned()),
        traffic: Traffic::start(Arc::clone(&sim), SHARDS, options.rate),
        rows: BTreeMap::new(),
        logs: options.logs.clone(),
        expected_identifies: 0,
        surprises: Vec::new(),
        notes: Vec::new(),
        processes: 0,
    };
    soak.start_fleet().await;
    let mut mark = 1;
    for (i, &fault) in faults.iter().enumerate() {
        let base = soak.traffic.state().count();
        soak.traffic.allow(base + chunk);
        soak.wait("traffic before the fault", RECOVERY, |s| {
            (s.traffic.state().count() >= base + chunk / 2).then_some(())
        })
        .await;
        soak.wait_flowing(mark, "events sent after the last recovery stored")
            .await;
        let identifies = soak.ready_identifies();
        let at = Instant::now();
        soak.inject(fault).await;
        let took = at.elapsed();
        let expected = usize::from(fault.recovery() == Recovery::Reidentify);
        let seen = soak.ready_identifies() - identifies;
        if seen != expected {
            soak.surprises.push(format!(
                "{fault}: {seen} IDENTIFY where {expected} was due (no other fault ended a session)"
            ));
        }
        soak.expected_identifies += expected;
        soak.rows.entry(fault).or_default().push(took);
        mark = soak.traffic.state().count() + 1;
        tracing::info!(step = i + 1, of = faults.len(), %fault, ?took, "chaos: recovered");
    }
    soak.traffic.allow(options.events);
    // Faults waiting for new traffic may have let it run a little past
    // `events`: the generator stops at its allowance.
    let target = soak.traffic.state().allowed;
    soak.wait("every event sent", SETTLE, |s| {
        (s.traffic.state().count() >= target).then_some(())
    })
    .await;
    let sent: Vec<SentEvent> = soak.traffic.state().sent.clone();
    soak.wait("every sent event stored or refused", SETTLE, |s| {
        let refusals = s.sim.read(|st| st.refusals.clone());
        let tail = s.tail.state();
        sent.iter()
            .all(|e| {
                tail.copies.contains_key(&e.id)
                    || refusals.iter().any(|r| r.covers(&e.session_id, e.seq))
            })
            .then_some(())
    })
    .await;
    soak.fleet.stop_all().await;
    soak.write_logs();
    let stored = read_all(&soak.js, STREAM).await;
    let (refusals, violations, identifies) = soak.sim.read(|s| {
        (
            s.refusals.clone(),
            s.violations
                .iter()
                .map(|v| format!("{:?}", v.violation))
                .collect(),
            ready(s),
        )
    });
    let reports = soak.statuses.loss_reports();
    let audit = audit(&sent, &stored, &refusals, &reports);
    let report = Report {
        seed: options.seed,
        events: options.events,
        rounds: options.rounds,
        rate: options.rate,
        wall_secs: started.elapsed().as_secs(),
        processes: soak.processes,
        faults: soak
            .rows
            .iter()
            .map(|(fault, times)| FaultRow::new(&fault.to_string(), times))
            .collect(),
        identifies_expected: soak.expected_identifies,
        identifies,
        surprises: soak.surprises.clone(),
        notes: soak.notes.clone(),
        violations,
        malformed_statuses: soak.statuses.malformed(),
        audit,
    };
    if let Some(path) = &options.report {
        let json = serde_json::to_string_pretty(&report).expect("the report is JSON");
        std::fs::write(path, json)
            .unwrap_or_else(|e| panic!("writing the report to {}: {e}", path.display()));
    }
    report
}

pub(super) struct Soak {
    pub(super) rng: fastrand::Rng,
    pub(super) cluster: NatsCluster,
    pub(super) sim: Arc<Simulator>,
    pub(super) fleet: Fleet,
    pub(super) js: Context,
    pub(super) statuses: Statuses,
    pub(super) tail: Tail,
    pub(super) traffic: Traffic,
    pub(super) rows: BTreeMap<Fault, Vec<Duration>>,
    pub(super) logs: Option<PathBuf>,
    pub(super) expected_identifies: usize,
    pub(super) surprises: Vec<String>,
    pub(super) notes: Vec<String>,
    pub(super) processes: u32,
}

impl Soak {
    /// Polls `f` until it holds, checking the bridge processes meanwhile.
    pub(super) async fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            self.fleet.check();
            if let Some(value) = f(self) {
                return value;
            }
            if Instant::now() >= deadline {
                panic!("{}", self.diagnose(what, timeout));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// With `CHAOS_LOGS`, writes every process's and node's log there.
    fn write_logs(&self) {
        let Some(dir) = &self.logs else { return };
        self.fleet.write_logs(dir);
        for (i, node) in self.cluster.nodes.iter().enumerate() {
            let path = dir.join(format!("nats-n{}.log", i + 1));
            std::fs::write(&path, node.log())
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }

    pub(super) fn diagnose(&self, what: &str, timeout: Duration) -> String {
        self.write_logs();
        let sim = self.sim.read(|s| {
            let shards: Vec<String> = (0..SHARDS)
                .map(|shard| {
                    let session = s.session_of(shard).map(|x| {
                        format!(
                            "session {} seq {} attached {:?} invalidated {}",
                            x.id, x.seq, x.attached, x.invalidated
                        )
                    });
                    format!("shard {shard}: {session:?}")
                })
                .collect();
            let conns: Vec<String> = s
                .connections
                .values()
                .rev()
                .take(6)
                .map(|c| {
                    format!(
                        "{} {:?} shard {:?} closed {:?}",
                        c.id, c.endpoint, c.shard, c.closed
                    )
                })
                .collect();
            format!(
                "{}\nlast connections:\n{}\nlast resumes: {:?}\nlast identifies: {:?}",
                shards.join("\n"),
                conns.join("\n"),
                s.resumes.iter().rev().take(3).collect::<Vec<_>>(),
                s.identifies.iter().rev().take(3).collect::<Vec<_>>(),
            )
        });
        let (sent, allowed) = {
            let t = self.traffic.state();
            (t.count(), t.allowed)
        };
        let stored = self.tail.state().copies.len();
        format!(
            "chaos soak: timed out after {timeout:?} waiting for {what}\n\
             sent {sent} (allowed {allowed}), distinct stored {stored}\n{sim}\n{}",
            self.fleet.tails()
        )
    }

    pub(super) fn ready_identifies(&self) -> usize {
        self.sim.read(ready)
    }

    fn compression(&mut self) -> &'static str {
        if self.rng.bool() {
            "zlib-stream"
        } else {
            "zstd-stream"
        }
    }

    pub(super) fn spawn(&mut self) -> String {
        let compression = self.compression();
        self.processes += 1;
        self.fleet.spawn(compression)
    }

    /// One process takes both shards (two IDENTIFYs); a second stands by.
    async fn start_fleet(&mut self) {
        let first = self.spawn();
        self.fleet.wait_coordinated(&first).await;
        for shard in 0..SHARDS {
            self.wait("the first sessions", RECOVERY, |s| {
                s.sim.read(|st| live(st, shard))
            })
            .await;
        }
        self.expected_identifies = SHARDS as usize;
        let standby = self.spawn();
        self.fleet.wait_coordinated(&standby).await;
    }

    /// Waits until, on every shard, an event with an id of at least `from`
    /// is stored.
    pub(super) async fn wait_flowing(&mut self, from: u64, what: &str) {
        self.wait(what, RECOVERY, |s| {
            let tail = s.tail.state();
            tail.max_id
                .iter()
                .all(|max| max.is_some_and(|m| m >= from))
                .then_some(())
        })
        .await;
    }
}
