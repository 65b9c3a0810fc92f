//! Injecting each fault and waiting for the bridge to recover from it:
//! what the simulator must see (a RESUME of the same session, or a new
//! session where Discord ended the old one) and, for NATS faults, events
//! stored again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use discord_gateway_sim::{ConnId, Outcome, RawFrame, SimState};

use super::faults::{Fault, Recovery};
use super::soak::{GARBAGE, RECOVERY, SHARDS, STREAM, Soak};
use crate::wait::POLL_INTERVAL;

/// Events a fault that waits for new traffic lets the generator send, if
/// the step's share is used up already.
const PROBE: u64 = 20;

/// IDENTIFYs answered with READY.
pub(super) fn ready(s: &SimState) -> usize {
    s.identifies
        .iter()
        .filter(|i| matches!(i.outcome, Outcome::Ready { .. }))
        .count()
}

/// The session a shard runs now, and where: `(session, connection)`.
pub(super) fn live(s: &SimState, shard: u32) -> Option<(String, ConnId)> {
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

impl Soak {
    /// Injects `fault` and returns once the bridge recovered from it.
    pub(super) async fn inject(&mut self, fault: Fault) {
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
        self.traffic.keep_going(PROBE);
        self.wait_flowing(mark, "events stored without the killed node")
            .await;
        let flowing = at.elapsed();
        self.cluster.nodes[node].restart().await;
        let restarted = at.elapsed();
        let deadline = Instant::now() + RECOVERY;
        loop {
            self.fleet.check();
            // The agent stream and the shards' KV bucket, each with a leader
            // and both other replicas current again.
            let caught_up = async {
                for stream in [STREAM, "KV_discord_bridge_shards"] {
                    let info = self
                        .js
                        .get_stream(stream)
                        .await
                        .ok()?
                        .get_info()
                        .await
                        .ok()?;
                    let cluster = info.cluster?;
                    let peers = &cluster.replicas;
                    let ready = cluster.leader.is_some()
                        && peers.len() == 2
                        && peers.iter().all(|p| p.current && !p.offline);
                    ready.then_some(())?;
                }
                Some(())
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
            self.traffic.keep_going(PROBE);
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
