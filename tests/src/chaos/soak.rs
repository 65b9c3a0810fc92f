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
use discord_gateway_sim::{Outcome, RawFrame, SimConfig, SimState, Simulator};

use super::audit::{SentEvent, audit};
use super::faults::{Fault, Recovery, schedule};
use super::fleet::Fleet;
use super::observe::{Statuses, Tail, read_all};
use super::report::{FaultRow, Report};
use super::traffic::Traffic;
use crate::nats::{NatsCluster, connect_any};
use crate::wait::POLL_INTERVAL;

/// The bridge's default stream and subject prefix.
const STREAM: &str = "ASTRID_DISCORD";
const PREFIX: &str = subject::DEFAULT_PREFIX;
/// Shards of the simulated bot.
const SHARDS: u32 = 2;
/// Most recoveries take a second or two; a loaded machine, much longer.
const RECOVERY: Duration = Duration::from_secs(90);
/// How long the stream may take to hold the last events once traffic stopped.
const SETTLE: Duration = Duration::from_secs(180);
/// A binary message that is not a continuation of either compressed stream
/// (a deflate block of the reserved type, and no valid zstd block either),
/// ending with the zlib flush marker so that it is decoded at once.
const GARBAGE: [u8; 11] = [
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
    let target = options.events.max(soak.traffic.state().count());
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

/// IDENTIFYs answered with READY.
fn ready(s: &SimState) -> usize {
    s.identifies
        .iter()
        .filter(|i| matches!(i.outcome, Outcome::Ready { .. }))
        .count()
}

/// The session a shard runs now, and where: `(session, connection)`.
fn live(s: &SimState, shard: u32) -> Option<(String, discord_gateway_sim::ConnId)> {
    let session = s.session_of(shard)?;
    let conn = session.attached.filter(|_| !session.invalidated)?;
    Some((session.id.clone(), conn))
}

/// Whether `shard` runs `session` again after a RESUME (one later than the
/// first `after` RESUMEs) was accepted.
fn resumed(s: &SimState, shard: u32, session: &str, after: usize) -> bool {
    let accepted = s.resumes[after.min(s.resumes.len())..]
        .iter()
        .any(|r| r.session_id == session && matches!(r.outcome, Outcome::Resumed { .. }));
    accepted && live(s, shard).is_some_and(|(id, _)| id == session)
}

/// Whether `shard` runs a session other than `old`, READY after one of the
/// IDENTIFYs later than the first `after`.
fn reidentified(s: &SimState, shard: u32, old: &str, after: usize) -> bool {
    let ready = s.identifies[after.min(s.identifies.len())..]
        .iter()
        .any(|i| {
            i.shard.map(|x| x.id) == Some(shard) && matches!(i.outcome, Outcome::Ready { .. })
        });
    ready && live(s, shard).is_some_and(|(id, _)| id != old)
}

struct Soak {
    rng: fastrand::Rng,
    cluster: NatsCluster,
    sim: Arc<Simulator>,
    fleet: Fleet,
    js: Context,
    statuses: Statuses,
    tail: Tail,
    traffic: Traffic,
    rows: BTreeMap<Fault, Vec<Duration>>,
    expected_identifies: usize,
    surprises: Vec<String>,
    notes: Vec<String>,
    processes: u32,
}

impl Soak {
    /// Polls `f` until it holds, checking the bridge processes meanwhile.
    async fn wait<T>(
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

    fn diagnose(&self, what: &str, timeout: Duration) -> String {
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

    fn ready_identifies(&self) -> usize {
        self.sim.read(ready)
    }

    fn compression(&mut self) -> &'static str {
        if self.rng.bool() {
            "zlib-stream"
        } else {
            "zstd-stream"
        }
    }

    fn spawn(&mut self) -> String {
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
    async fn wait_flowing(&mut self, from: u64, what: &str) {
        self.wait(what, RECOVERY, |s| {
            let tail = s.tail.state();
            tail.max_id
                .iter()
                .all(|max| max.is_some_and(|m| m >= from))
                .then_some(())
        })
        .await;
    }

    async fn inject(&mut self, fault: Fault) {
        match fault {
            f if f.is_gateway() => {
                let shard = self.rng.u32(0..SHARDS);
                self.gateway_fault(f, shard).await;
            }
            Fault::NatsKill9 => self.nats_outage().await,
            Fault::NodeKill => self.node_loss().await,
            Fault::BridgeRestart => self.restart(None).await,
            Fault::SessionExpired => {
                let shard = self.rng.u32(0..SHARDS);
                self.restart(Some(shard)).await;
            }
            Fault::BridgeKill9 => self.takeover().await,
            _ => unreachable!("every fault kind is handled"),
        }
    }

    /// The current sessions of every shard, and the RESUME and IDENTIFY
    /// counts so far.
    async fn sessions(&mut self) -> (Vec<String>, usize, usize) {
        let mut sessions = Vec::new();
        for shard in 0..SHARDS {
            let (id, _) = self
                .wait("a live session", RECOVERY, |s| {
                    s.sim.read(|st| live(st, shard))
                })
                .await;
            sessions.push(id);
        }
        let (resumes, identifies) = self.sim.read(|s| (s.resumes.len(), s.identifies.len()));
        (sessions, resumes, identifies)
    }

    /// Waits until `shard` recovered from a fault as `how` says.
    async fn recovered(&mut self, shard: u32, how: Recovery, session: &str, after: (usize, usize)) {
        let what = format!("shard {shard} to {how:?} after session {session}");
        self.wait(&what, RECOVERY, |s| {
            s.sim
                .read(|st| match how {
                    Recovery::Resume => resumed(st, shard, session, after.0),
                    Recovery::Reidentify => reidentified(st, shard, session, after.1),
                })
                .then_some(())
        })
        .await;
    }

    async fn gateway_fault(&mut self, fault: Fault, shard: u32) {
        let (sessions, resumes, identifies) = self.sessions().await;
        let (_, conn) = self
            .wait("a live connection", RECOVERY, |s| {
                s.sim.read(|st| live(st, shard))
            })
            .await;
        let sim = Arc::clone(&self.sim);
        let sent = match fault {
            Fault::Zombie => {
                sim.set_heartbeat_ack(shard, false);
                true
            }
            Fault::Reconnect => sim.reconnect(shard),
            Fault::InvalidSession { resumable } => sim.invalidate_session(shard, resumable),
            Fault::TcpDrop => sim.drop_connection(shard),
            Fault::Close(code) => sim.close(shard, code, "chaos soak"),
            Fault::CorruptFrame => sim.send_raw(shard, RawFrame::Binary(GARBAGE.to_vec())),
            _ => unreachable!("not a gateway fault"),
        };
        assert!(sent, "{fault} could not be injected on shard {shard}");
        if fault == Fault::Zombie {
            self.wait("the zombie connection given up", RECOVERY, |s| {
                s.sim
                    .read(|st| st.connections.get(&conn).and_then(|c| c.closed.clone()))
            })
            .await;
            sim.set_heartbeat_ack(shard, true);
        }
        let session = &sessions[shard as usize];
        self.recovered(shard, fault.recovery(), session, (resumes, identifies))
            .await;
    }

    /// Every node killed; the owner must stop its shards before their
    /// leases can lapse, and RESUME them once NATS is back.
    async fn nats_outage(&mut self) {
        let (sessions, resumes, identifies) = self.sessions().await;
        let at = Instant::now();
        self.cluster.kill9_all();
        self.wait("every shard stopped while NATS is away", RECOVERY, |s| {
            s.sim
                .read(|st| (0..SHARDS).all(|shard| live(st, shard).is_none()))
                .then_some(())
        })
        .await;
        let stopped = at.elapsed();
        self.cluster.restart_all().await;
        let back = at.elapsed();
        for (shard, session) in (0..SHARDS).zip(&sessions) {
            self.recovered(shard, Recovery::Resume, session, (resumes, identifies))
                .await;
        }
        self.notes.push(format!(
            "NATS kill -9: shards stopped after {} ms, cluster back after {} ms, both resumed after {} ms",
            stopped.as_millis(),
            back.as_millis(),
            at.elapsed().as_millis()
        ));
    }

    /// One node killed; the bridge carries on through the others; the node
    /// comes back and catches up.
    async fn node_loss(&mut self) {
        let node = self.rng.usize(0..self.cluster.nodes.len());
        let name = format!("n{}", node + 1);
        let leader = tokio::time::timeout(Duration::from_secs(5), async {
            let info = self
                .js
                .get_stream(STREAM)
                .await
                .ok()?
                .get_info()
                .await
                .ok()?;
            info.cluster?.leader
        })
        .await
        .ok()
        .flatten();
        let at = Instant::now();
        self.cluster.nodes[node].kill9();
        let mark = self.traffic.state().count() + 1;
        self.wait_flowing(mark, "events stored without the killed node")
            .await;
        let flowing = at.elapsed();
        self.cluster.nodes[node].restart().await;
        let restarted = at.elapsed();
        let deadline = Instant::now() + RECOVERY;
        loop {
            self.fleet.check();
            let caught_up = async {
                let info = self
                    .js
                    .get_stream(STREAM)
                    .await
                    .ok()?
                    .get_info()
                    .await
                    .ok()?;
                let cluster = info.cluster?;
                let peers = &cluster.replicas;
                let current = cluster.leader.as_deref() == Some(name.as_str())
                    || peers
                        .iter()
                        .any(|p| p.name == name && p.current && !p.offline);
                (current && peers.len() == 2 && peers.iter().all(|p| p.current)).then_some(())
            };
            let attempt = tokio::time::timeout(Duration::from_secs(5), caught_up).await;
            if matches!(attempt, Ok(Some(()))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}",
                self.diagnose(&format!("node {name} to catch up"), RECOVERY)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let role = if leader.as_deref() == Some(name.as_str()) {
            "the stream leader"
        } else {
            "a stream follower"
        };
        self.notes.push(format!(
            "node {name} ({role}) killed: events stored again after {} ms, node restarted after {} ms, caught up after {} ms",
            flowing.as_millis(),
            restarted.as_millis(),
            at.elapsed().as_millis()
        ));
    }

    /// Every process stopped with SIGTERM, then two started again; with
    /// `expire`, Discord ends that shard's session while none runs, after
    /// it dispatched a few events there.
    async fn restart(&mut self, expire: Option<u32>) {
        let (sessions, resumes, identifies) = self.sessions().await;
        self.fleet.stop_all().await;
        if let Some(shard) = expire {
            let from = self.traffic.state().count() + 1;
            self.wait("events dispatched while no bridge runs", RECOVERY, |s| {
                (s.traffic.state().count_on(shard, from) >= 3).then_some(())
            })
            .await;
            assert!(
                self.sim.expire_session(shard),
                "shard {shard} had a session"
            );
        }
        let names = [self.spawn(), self.spawn()];
        for (shard, session) in (0..SHARDS).zip(&sessions) {
            let how = if expire == Some(shard) {
                Recovery::Reidentify
            } else {
                Recovery::Resume
            };
            self.recovered(shard, how, session, (resumes, identifies))
                .await;
        }
        for name in names {
            self.fleet.wait_coordinated(&name).await;
        }
    }

    /// The process owning a shard killed with SIGKILL: the standby takes
    /// every shard it ran and RESUMEs them; a new standby starts.
    async fn takeover(&mut self) {
        let shard = self.rng.u32(0..SHARDS);
        let (sessions, resumes, identifies) = self.sessions().await;
        let owners = self.lease_owners().await;
        let victim = owners[shard as usize];
        self.fleet.kill9(victim).await;
        for (s, session) in (0..SHARDS).zip(&sessions) {
            if owners[s as usize] == victim {
                self.recovered(s, Recovery::Resume, session, (resumes, identifies))
                    .await;
            }
        }
        let standby = self.spawn();
        self.fleet.wait_coordinated(&standby).await;
    }

    /// The pid holding each shard's lease, read from the KV bucket.
    async fn lease_owners(&mut self) -> Vec<u32> {
        let deadline = Instant::now() + RECOVERY;
        loop {
            self.fleet.check();
            let read = tokio::time::timeout(Duration::from_secs(5), read_leases(&self.js)).await;
            if let Ok(Some(owners)) = read {
                let pids: Vec<u32> = self
                    .fleet
                    .members()
                    .iter()
                    .map(|m| m.process.pid())
                    .collect();
                if owners.iter().all(|o| pids.contains(o)) {
                    return owners;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}",
                self.diagnose("the shard leases", RECOVERY)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The owner pid of each shard's lease (`lease.{bot}.{total}.{id}` in
/// `discord_bridge_shards`); `None` while one is missing.
async fn read_leases(js: &Context) -> Option<Vec<u32>> {
    use futures_util::TryStreamExt as _;
    let kv = js.get_key_value("discord_bridge_shards").await.ok()?;
    let keys: Vec<String> = kv.keys().await.ok()?.try_collect().await.ok()?;
    let mut owners = Vec::new();
    for shard in 0..SHARDS {
        let suffix = format!(".{SHARDS}.{shard}");
        let key = keys
            .iter()
            .find(|k| k.starts_with("lease.") && k.ends_with(&suffix))?;
        let value = kv.get(key.as_str()).await.ok()??;
        let owner: serde_json::Value = serde_json::from_slice(&value).ok()?;
        owners.push(u32::try_from(owner["pid"].as_u64()?).ok()?);
    }
    Some(owners)
}
