//! Continuity: shard leases and session hand-off in NATS KV. A restart, a
//! standby taking over a killed owner, several processes sharing shards and
//! a process that cannot renew its lease — each without losing or doubling
//! an event, and without a new IDENTIFY while Discord can still resume.

use std::time::Duration;

use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT, test_sim_config};
use discord_bridge_e2e::{ChildProcess, Signal};
use discord_gateway_sim::{Closer, Outcome, SimConfig};

/// Short leases keep the takeovers quick.
const LEASE: &str = "2";
/// A lapsed lease is taken within a lease plus a tick; the RESUME follows.
const TAKEOVER: Duration = Duration::from_secs(8);

fn spawn(stack: &Stack) -> ChildProcess {
    stack.spawn_binary(&[], &[("DISCORD_SHARD_LEASE_SECS", LEASE)])
}

/// Waits until `bridge` took part in coordination (its first lease round
/// ran).
async fn coordinated(bridge: &ChildProcess) {
    bridge
        .wait_for_stderr("shard ownership coordinated in NATS KV", WAIT)
        .await;
}

fn messages(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test]
async fn sigterm_then_restart_resumes_the_session_and_loses_nothing() {
    let stack = Stack::start_idle(StackOptions::default()).await;
    let mut first = spawn(&stack);
    let session = stack.wait_session(0).await;
    stack.guild_message("before the restart");
    stack.wait_contents(&["before the restart"]).await;

    first.signal(Signal::Term);
    let status = first.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", first.output());
    let closed = stack.sim.connections()[0].closed.clone().expect("closed");
    assert_eq!(
        (closed.by, closed.code),
        (Closer::Client, Some(4000)),
        "the session stays resumable: {closed:?}"
    );

    // Discord keeps dispatching while no process is connected.
    let gap = messages("while no bridge runs", 20);
    for m in &gap {
        stack.guild_message(m);
    }
    let mut second = spawn(&stack);
    let resume = tokio::time::timeout(TAKEOVER, stack.wait_sim(|s| s.resumes.first().cloned()))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no RESUME:\nfirst:\n{}\nsecond:\n{}",
                first.output(),
                second.output()
            )
        });
    assert_eq!(resume.session_id, session, "{}", second.output());
    assert!(
        matches!(resume.outcome, Outcome::Resumed { .. }),
        "{resume:?}"
    );
    stack.wait_session(0).await;
    stack.guild_message("after the restart");
    let mut expected = vec!["before the restart".to_owned()];
    expected.extend(gap);
    expected.push("after the restart".to_owned());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    stack.wait_contents(&expected).await;
    assert_eq!(stack.sim.identifies().len(), 1, "no second IDENTIFY");
    second.signal(Signal::Term);
    assert_eq!(second.wait_exit(WAIT).await.code(), Some(0));
}

#[tokio::test]
async fn a_standby_takes_over_a_killed_owner_and_resumes_its_session() {
    let stack = Stack::start_idle(StackOptions::default()).await;
    let mut owner = spawn(&stack);
    let session = stack.wait_session(0).await;
    let mut standby = spawn(&stack);
    coordinated(&standby).await;
    stack.guild_message("before the crash");
    stack.wait_contents(&["before the crash"]).await;
    assert_eq!(
        stack.sim.connections().len(),
        1,
        "the standby does not connect while the owner holds the lease"
    );

    owner.signal(Signal::Kill);
    owner.wait_exit(WAIT).await;
    let gap = messages("while the owner is dead", 20);
    for m in &gap {
        stack.guild_message(m);
    }
    let resume = tokio::time::timeout(TAKEOVER, stack.wait_sim(|s| s.resumes.first().cloned()))
        .await
        .unwrap_or_else(|_| panic!("no takeover within {TAKEOVER:?}:\n{}", standby.output()));
    assert_eq!(resume.session_id, session);
    stack.wait_session(0).await;
    stack.guild_message("after the takeover");
    let mut expected = vec!["before the crash".to_owned()];
    expected.extend(gap);
    expected.push("after the takeover".to_owned());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    stack.wait_contents(&expected).await;
    assert_eq!(
        stack.sim.identifies().len(),
        1,
        "the session was handed over"
    );
    let took = stack
        .wait_status("the takeover", |e| {
            e.reason.as_deref() == Some("lease_acquired") && e.detail.contains("resuming")
        })
        .await;
    assert!(took.owner.is_some(), "{took:?}");
    standby.signal(Signal::Term);
    assert_eq!(standby.wait_exit(WAIT).await.code(), Some(0));
}

#[tokio::test]
async fn processes_sharing_auto_run_every_shard_exactly_once() {
    let stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            shards: 3,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let mut bridges: Vec<ChildProcess> = (0..3).map(|_| spawn(&stack)).collect();
    for shard in 0..3 {
        stack.wait_session(shard).await;
    }
    for b in &bridges {
        coordinated(b).await;
    }
    let conns = stack.sim.connections();
    let open: Vec<_> = conns.iter().filter(|c| c.closed.is_none()).collect();
    assert_eq!(open.len(), 3, "one connection per shard: {conns:#?}");
    let mut shards: Vec<_> = open.iter().filter_map(|c| c.shard).collect();
    shards.sort_unstable();
    assert_eq!(shards, [0, 1, 2]);
    assert_eq!(stack.sim.identifies().len(), 3, "one IDENTIFY per shard");
    assert!(
        stack.sim.violations().is_empty(),
        "identify buckets respected: {:?}",
        stack.sim.violations()
    );
    for b in &mut bridges {
        b.signal(Signal::Term);
    }
    for b in &mut bridges {
        assert_eq!(b.wait_exit(WAIT).await.code(), Some(0), "{}", b.output());
    }
}

/// A process that cannot renew its lease (NATS gone longer than the lease)
/// stops its shard before the lease can lapse, so no standby could ever run
/// it at the same time; once NATS is back it takes the lease again and
/// RESUMEs the session.
#[tokio::test]
async fn a_process_that_cannot_renew_its_lease_stops_the_shard_then_resumes() {
    let mut stack = Stack::start_idle(StackOptions::default()).await;
    let mut bridge = spawn(&stack);
    let session = stack.wait_session(0).await;
    stack.guild_message("before the outage");
    stack.wait_contents(&["before the outage"]).await;
    let first = stack.wait_sim(|s| s.connection_of(0).map(|c| c.id)).await;

    stack.nats.stop().await;
    let closed = stack
        .wait_sim(|s| s.connections.get(&first).and_then(|c| c.closed.clone()))
        .await;
    assert_eq!(
        (closed.by, closed.code),
        (Closer::Client, Some(4000)),
        "stopped resumably: {closed:?}\n{}",
        bridge.output()
    );
    stack.guild_message("during the outage");
    stack.nats.restart().await;

    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session, "{}", bridge.output());
    stack.wait_session(0).await;
    stack.guild_message("after the outage");
    stack
        .wait_contents(&["before the outage", "during the outage", "after the outage"])
        .await;
    assert_eq!(stack.sim.identifies().len(), 1);
    let err = bridge.stderr_lines().join("\n");
    assert!(err.contains("stopping the shard"), "{err}");
    bridge.signal(Signal::Term);
    assert_eq!(bridge.wait_exit(WAIT).await.code(), Some(0));
}

/// A NATS that stops answering (frozen: requests neither succeed nor fail
/// until they time out) must not keep shards running past their leases,
/// however many shards the process runs: both shards of this process close
/// their gateway connections before the lease (4 s) can lapse, counted from
/// the freeze (the last renewal was sent before it). Found by the chaos
/// soak: each renewal waited out a 2 s request timeout, one shard after the
/// other, so the shards ran on for several seconds past their leases.
#[tokio::test]
async fn a_frozen_nats_stops_every_shard_before_its_lease_lapses() {
    const LEASE_SECS: u64 = 4;
    let mut stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            shards: 2,
            max_concurrency: 2,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let mut bridge = stack.spawn_binary(&[], &[("DISCORD_SHARD_LEASE_SECS", "4")]);
    let sessions = [stack.wait_session(0).await, stack.wait_session(1).await];
    coordinated(&bridge).await;
    let conns: Vec<_> = stack.sim.read(|s| {
        (0..2)
            .map(|shard| s.connection_of(shard).map(|c| c.id))
            .collect()
    });
    let frozen = tokio::time::Instant::now();
    stack.nats.pause();
    for conn in conns.iter().map(|c| c.expect("a connection per shard")) {
        let closed = stack
            .wait_sim(|s| s.connections.get(&conn).and_then(|c| c.closed.clone()))
            .await;
        assert_eq!(
            (closed.by, closed.code),
            (Closer::Client, Some(4000)),
            "stopped resumably: {closed:?}"
        );
        let after = closed.at.duration_since(frozen);
        assert!(
            after < Duration::from_secs(LEASE_SECS),
            "{conn} closed {after:?} after NATS froze, past its {LEASE_SECS} s lease:\n{}",
            bridge.output()
        );
    }
    stack.nats.resume();
    for session in &sessions {
        let resumed = stack
            .wait_sim(|s| {
                s.resumes
                    .iter()
                    .find(|r| {
                        &r.session_id == session && matches!(r.outcome, Outcome::Resumed { .. })
                    })
                    .cloned()
            })
            .await;
        assert_eq!(&resumed.session_id, session);
    }
    assert_eq!(stack.sim.identifies().len(), 2, "no new session");
    bridge.signal(Signal::Term);
    assert_eq!(
        bridge.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        bridge.output()
    );
}

/// A shard stopped because its lease was lost must not hold up the lease
/// loop while its publisher drains: the other shards' leases still need
/// renewing. Shard 1's lease is taken from under the process while its
/// events cannot be stored (the agent stream is gone, so its publisher
/// retries until the 5 s drain timeout, longer than the 4 s lease); shard 0
/// must be renewed meanwhile and keep running. Found by the chaos soak: the
/// loop waited for the drain, shard 0's lease came due behind it, and shard
/// 0 ran on for seconds past its lease.
#[tokio::test]
async fn a_shard_stopped_for_its_lease_does_not_hold_up_the_others() {
    let stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            shards: 2,
            max_concurrency: 2,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let mut bridge = stack.spawn_binary(&[], &[("DISCORD_SHARD_LEASE_SECS", "4")]);
    let session_0 = stack.wait_session(0).await;
    stack.wait_session(1).await;
    coordinated(&bridge).await;
    let conn_0 = stack.wait_sim(|s| s.connection_of(0).map(|c| c.id)).await;
    let js = stack.jetstream().await;
    let kv = js
        .get_key_value("discord_bridge_shards")
        .await
        .expect("the shards bucket");
    let lease_key = |shard: u32| {
        let kv = kv.clone();
        async move {
            use futures_util::TryStreamExt as _;
            let keys: Vec<String> = kv.keys().await.ok()?.try_collect().await.ok()?;
            keys.into_iter()
                .find(|k| k.starts_with("lease.") && k.ends_with(&format!(".2.{shard}")))
        }
    };
    let key_0 = discord_bridge_e2e::eventually(WAIT, "shard 0's lease", || lease_key(0)).await;
    let key_1 = discord_bridge_e2e::eventually(WAIT, "shard 1's lease", || lease_key(1)).await;

    js.delete_stream(&stack.config.nats.stream)
        .await
        .expect("delete the agent stream");
    let guild_1 = stack
        .sim
        .config()
        .guilds
        .iter()
        .copied()
        .find(|g| discord_gateway_sim::shard_for_guild(*g, 2) == 1)
        .expect("a guild on shard 1");
    for _ in 0..3 {
        stack.message(Some(guild_1), "cannot be stored");
    }
    // Another owner takes shard 1's key: the next renewal finds it changed.
    kv.put(
        &key_1,
        r#"{"id":"thief","host":"elsewhere","pid":1,"since_ms":0}"#.into(),
    )
    .await
    .expect("overwrite shard 1's lease");
    bridge
        .wait_for_stderr("another process holds this shard's lease", WAIT)
        .await;
    bridge
        .wait_for_stderr("events still buffered were not stored", WAIT)
        .await;
    // The drain took longer than a lease: shard 0 must have been renewed
    // meanwhile, and be renewed still.
    let revision = |kv: async_nats::jetstream::kv::Store, key: String| async move {
        kv.entry(key).await.ok().flatten().map(|e| e.revision)
    };
    let before = revision(kv.clone(), key_0.clone())
        .await
        .unwrap_or_else(|| {
            panic!(
                "shard 0's lease lapsed while shard 1 drained:\n{}",
                bridge.output()
            )
        });
    discord_bridge_e2e::eventually(WAIT, "shard 0's lease renewed", || {
        let (kv, key) = (kv.clone(), key_0.clone());
        async move { (revision(kv, key).await? > before).then_some(()) }
    })
    .await;
    let closed = stack.sim.read(|s| s.connections[&conn_0].closed.clone());
    assert_eq!(closed, None, "shard 0 kept running:\n{}", bridge.output());
    assert!(
        stack
            .sim
            .resumes()
            .iter()
            .all(|r| r.session_id != session_0),
        "shard 0 was never stopped or taken over"
    );
    bridge.signal(Signal::Term);
    assert_eq!(
        bridge.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        bridge.output()
    );
}

/// The session start budget is Discord's, shared in KV: with none left no
/// IDENTIFY is sent (the wait is reported with its reason), while a RESUME,
/// which costs nothing, still works.
#[tokio::test]
async fn an_exhausted_session_start_limit_stops_identifies_but_not_resumes() {
    let stack = Stack::start_with(StackOptions {
        sim: SimConfig {
            session_start_remaining: 1,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let session = stack.wait_session(0).await;
    assert!(stack.sim.reconnect(0));
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session);
    assert!(
        matches!(resume.outcome, Outcome::Resumed { .. }),
        "{resume:?}"
    );
    stack.wait_session(0).await;
    stack.guild_message("after the resume");
    stack.wait_contents(&["after the resume"]).await;

    assert!(stack.sim.invalidate_session(0, false));
    let waiting = stack
        .wait_status("the session start limit", |e| {
            e.reason.as_deref() == Some("session_start_limit")
        })
        .await;
    assert_eq!(waiting.state, discord_bridge_schemas::ShardState::Backoff);
    let text = waiting.message.unwrap_or_default();
    assert!(
        text.contains("session start limit") && text.contains("resets at"),
        "{text}"
    );
    assert_eq!(
        stack.sim.identifies().len(),
        1,
        "no IDENTIFY without a session start"
    );
}

/// `discord-bridge shards` shows the KV view: who owns each shard, and the
/// checkpointed session and seq.
#[tokio::test]
async fn the_shards_command_shows_owner_session_and_acked_seq() {
    let stack = Stack::start_idle(StackOptions::default()).await;
    let mut bridge = spawn(&stack);
    let session = stack.wait_session(0).await;
    let seq = stack.guild_message("checkpointed");
    stack.wait_contents(&["checkpointed"]).await;

    let view = discord_bridge_e2e::eventually(WAIT, "the checkpoint at the message", || {
        let mut shards = stack.spawn_binary(&["shards", "--json"], &[]);
        async move {
            let status = shards.wait_exit(WAIT).await;
            assert_eq!(status.code(), Some(0), "{}", shards.output());
            let json: serde_json::Value =
                serde_json::from_str(&shards.stdout_lines().join("\n")).expect("JSON");
            (json[0]["checkpoint"]["seq"].as_u64() >= Some(seq)).then_some(json)
        }
    })
    .await;
    let row = &view[0];
    assert_eq!(row["shard"], serde_json::json!([0, 1]));
    assert_eq!(row["owner"]["pid"].as_u64(), Some(u64::from(bridge.pid())));
    assert_eq!(
        row["checkpoint"]["session_id"].as_str(),
        Some(session.as_str())
    );
    assert!(row["lease_age_ms"].as_u64().is_some(), "{row}");

    let mut table = stack.spawn_binary(&["shards"], &[]);
    assert_eq!(table.wait_exit(WAIT).await.code(), Some(0));
    let out = table.stdout_lines().join("\n");
    assert!(out.contains("0/1") && out.contains(&session), "{out}");
    bridge.signal(Signal::Term);
    assert_eq!(bridge.wait_exit(WAIT).await.code(), Some(0));
}

/// Overlapping ranges: one process configured for 0-1/2, another for 1/2.
/// Each shard runs in exactly one of them; when the one running shard 1
/// stops, the other takes it over and RESUMEs.
#[tokio::test]
async fn overlapping_ranges_share_the_common_shard() {
    let stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            shards: 2,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let range = |shards: &'static str| {
        stack.spawn_binary(
            &[],
            &[
                ("DISCORD_SHARD_LEASE_SECS", LEASE),
                ("DISCORD_SHARDS", shards),
            ],
        )
    };
    let mut both = range("0-1/2");
    let mut one = range("1/2");
    let session_1 = stack.wait_session(1).await;
    stack.wait_session(0).await;
    coordinated(&both).await;
    coordinated(&one).await;
    let open = |shard: u32| {
        stack
            .sim
            .connections()
            .into_iter()
            .filter(|c| c.shard == Some(shard) && c.closed.is_none())
            .count()
    };
    assert_eq!((open(0), open(1)), (1, 1), "each shard runs once");
    assert_eq!(stack.sim.identifies().len(), 2);

    // Stop whichever process runs shard 1: the other one takes it over.
    let leases_of = |b: &ChildProcess| {
        b.stderr_lines()
            .iter()
            .filter(|l| l.contains("took the shard's lease"))
            .count()
    };
    assert_eq!(leases_of(&both) + leases_of(&one), 2, "two leases in all");
    let both_runs_1 = leases_of(&both) == 2;
    let (stopping, staying) = if both_runs_1 {
        (&mut both, &mut one)
    } else {
        (&mut one, &mut both)
    };
    stopping.signal(Signal::Term);
    assert_eq!(stopping.wait_exit(WAIT).await.code(), Some(0));
    let resume = tokio::time::timeout(
        TAKEOVER,
        stack.wait_sim(|s| {
            s.resumes
                .iter()
                .find(|r| r.session_id == session_1)
                .cloned()
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("no takeover of shard 1:\n{}", staying.output()));
    assert!(
        matches!(resume.outcome, Outcome::Resumed { .. }),
        "{resume:?}"
    );
    assert_eq!(
        stack.sim.identifies().len(),
        2,
        "shard 1 was handed over, not identified"
    );
    staying.signal(Signal::Term);
    assert_eq!(staying.wait_exit(WAIT).await.code(), Some(0));
}
