//! Heartbeats (the README's Gateway behaviour): every beat carries the last sequence number; a
//! beat Discord asks for (op 1) goes out at once; a connection whose beat
//! was never acknowledged is a zombie, closed with 4000 and resumed.

use std::time::Duration;

use discord_bridge_e2e::stack::{Stack, StackOptions, test_sim_config};
use discord_bridge_schemas::ShardState;
use discord_gateway_sim::{Closer, Endpoint, Outcome, SimConfig};
use serde_json::json;

#[tokio::test]
async fn missing_heartbeat_acks_close_the_zombie_with_4000_and_resume() {
    let stack = Stack::start().await;
    let session = stack.wait_session(0).await;
    let seq = stack.guild_message("before the zombie");
    stack.wait_contents(&["before the zombie"]).await;

    stack.sim.set_heartbeat_ack(0, false);
    let first = stack.wait_sim(|s| s.connection_of(0).map(|c| c.id)).await;
    let closed = stack
        .wait_sim(|s| s.connections.get(&first).and_then(|c| c.closed.clone()))
        .await;
    // The ACK pause lasts across connections: lift it for the RESUME.
    stack.sim.set_heartbeat_ack(0, true);
    assert_eq!(
        closed.by,
        Closer::Client,
        "the bridge closed it: {closed:?}"
    );
    assert_eq!(closed.code, Some(4000), "{closed:?}");

    let unacked: Vec<_> = stack
        .sim
        .heartbeats(0)
        .into_iter()
        .filter(|h| h.conn == first && !h.acked)
        .collect();
    assert_eq!(
        unacked.len(),
        1,
        "one beat without an ACK is enough: the next deadline closes instead of beating again"
    );
    assert_eq!(unacked[0].d, json!(seq), "heartbeats carry the last seq");
    let interval = stack.sim.config().heartbeat_interval;
    let waited = closed.at.duration_since(unacked[0].at);
    assert!(
        waited <= interval * 3,
        "zombie detected {waited:?} after the unacknowledged beat (interval {interval:?})"
    );

    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session);
    assert_eq!(resume.seq, seq);
    assert!(
        matches!(resume.outcome, Outcome::Resumed { .. }),
        "{resume:?}"
    );
    let conn = stack.sim.connections()[1].clone();
    assert_eq!(conn.endpoint, Endpoint::Resume);

    stack.wait_session(0).await;
    stack.guild_message("after the zombie");
    stack
        .wait_contents(&["before the zombie", "after the zombie"])
        .await;

    let status = stack
        .wait_status("disconnected: zombie", |e| {
            e.state == ShardState::Disconnected
        })
        .await;
    assert_eq!(status.reason.as_deref(), Some("zombie_connection"));
    assert_eq!(status.close_code, Some(4000));
    assert_eq!(status.will_resume, Some(true));
    assert_eq!(stack.sim.identifies().len(), 1);
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

/// Discord's op 1: the bridge answers at once, not at its next scheduled
/// beat, and the answer carries the last sequence number.
#[tokio::test]
async fn server_heartbeat_request_is_answered_at_once() {
    // A long interval: only the jittered first beat and the requested ones.
    let interval = Duration::from_secs(60);
    let stack = Stack::start_with(StackOptions {
        sim: SimConfig {
            heartbeat_interval: interval,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    stack.wait_session(0).await;
    for round in 0..3 {
        let seq = stack.guild_message(&format!("message {round}"));
        stack.wait_stored(round + 1).await;
        let before = stack.sim.heartbeats(0).len();
        assert!(stack.sim.request_heartbeat(0));
        let asked = tokio::time::Instant::now();
        let beat = stack
            .wait_sim(|s| s.heartbeats_of(0).nth(before).cloned())
            .await;
        let delay = beat.at.duration_since(asked);
        assert!(
            delay < Duration::from_secs(2),
            "round {round}: answered after {delay:?} (interval {interval:?})"
        );
        assert_eq!(beat.d, json!(seq), "round {round}: carries the last seq");
    }
    assert_eq!(stack.sim.connections().len(), 1, "no reconnect");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

/// Regular beats keep a connection alive on a simulator that, like Discord,
/// closes connections that stop heartbeating.
#[tokio::test]
async fn heartbeats_keep_pace_with_the_interval() {
    let interval = Duration::from_millis(200);
    let stack = Stack::start_with(StackOptions {
        sim: SimConfig {
            heartbeat_interval: interval,
            heartbeat_timeout: Some(interval * 5),
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    stack.wait_session(0).await;
    let seq = stack.guild_message("hello");
    stack.wait_stored(1).await;
    let beats = stack
        .wait_sim(|s| {
            let beats: Vec<_> = s.heartbeats_of(0).cloned().collect();
            (beats.len() >= 8).then_some(beats)
        })
        .await;
    assert!(beats.iter().all(|b| b.acked));
    assert_eq!(beats.last().unwrap().d, json!(seq));
    for pair in beats.windows(2).skip(1) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= interval / 2 && gap <= interval * 4,
            "beats {gap:?} apart with a {interval:?} interval"
        );
    }
    assert_eq!(stack.sim.connections().len(), 1, "no reconnect");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}
