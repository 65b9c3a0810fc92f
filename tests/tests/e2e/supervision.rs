//! The supervisor: a task that dies ends the process with exit code 1 and a
//! message naming the task and its shard — never a silent stall — and shards
//! can be stopped and started while the process runs.
//!
//! Faults are injected with the bridge's failpoints (the e2e crate builds it
//! with the `failpoints` feature), armed through the child's environment.

use std::time::Duration;

use discord_bridge::Bridge;
use discord_bridge::ShardEnd;
use discord_bridge::gateway::{ShardId, ShardSpec};
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT, test_sim_config};
use discord_gateway_sim::{Closer, SimConfig};
use tokio_util::sync::CancellationToken;

/// How long the process may take to notice the failure and shut down.
const EXIT: Duration = Duration::from_secs(20);

/// Runs the binary with failpoint `point` armed with `action`, makes it
/// publish, and returns its exit code and output.
async fn run_with_failpoint(point: &str, action: &str) -> (Option<i32>, String) {
    let stack = Stack::start_idle(StackOptions::default()).await;
    let armed = format!("{point}={action}");
    let mut bridge = stack.spawn_binary(&[], &[("DISCORD_BRIDGE_FAILPOINTS", armed.as_str())]);
    // The writer fails before IDENTIFY; the publisher at the first event.
    if point == "publisher" {
        stack.wait_session(0).await;
        stack.guild_message("the publisher never sees this");
    }
    let status = bridge.wait_exit(EXIT).await;
    (status.code(), bridge.output())
}

#[tokio::test]
async fn a_panicking_publisher_ends_the_process_with_exit_1() {
    let (code, output) = run_with_failpoint("publisher", "panic").await;
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("the publisher task of shard 0/1 panicked: failpoint publisher"),
        "{output}"
    );
}

#[tokio::test]
async fn a_failing_publisher_ends_the_process_with_exit_1() {
    let (code, output) = run_with_failpoint("publisher", "error").await;
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("the publisher task of shard 0/1 failed: failpoint publisher"),
        "{output}"
    );
}

#[tokio::test]
async fn a_panicking_connection_writer_ends_the_process_with_exit_1() {
    let (code, output) = run_with_failpoint("gateway-writer", "panic").await;
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("the gateway writer task of shard 0/1 panicked"),
        "{output}"
    );
}

/// One shard of two is stopped (its connection closed, the other shard
/// unaffected) and started again (a new session that relays), all in one
/// process.
#[tokio::test]
async fn a_single_shard_stops_and_starts_while_the_process_runs() {
    let stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            shards: 2,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let mut config = stack.config.clone();
    config.discord.shards = ShardSpec::Auto;
    let shutdown = CancellationToken::new();
    let mut bridge = Bridge::start(config, shutdown.clone())
        .await
        .expect("the bridge starts")
        .expect("not cancelled");
    let (zero, one) = (ShardId::new(0, 2), ShardId::new(1, 2));
    assert_eq!(bridge.shard_ids(), [zero, one]);
    let first = stack.wait_session(1).await;
    stack.wait_session(0).await;
    let conn = stack.wait_sim(|s| s.connection_of(1).map(|c| c.id)).await;

    assert_eq!(bridge.stop_shard(one).await, Some(ShardEnd::Stopped));
    assert_eq!(bridge.shard_ids(), [zero]);
    let closed = stack
        .wait_sim(|s| s.connections.get(&conn).and_then(|c| c.closed.clone()))
        .await;
    assert_eq!(closed.by, Closer::Client, "{closed:?}");
    // Shard 0 goes on relaying.
    let guild = stack.sim.config().guilds[0];
    let (on, _) = stack.message(Some(guild), "while shard 1 is stopped");
    assert_eq!(on, 0, "the first guild is served by shard 0");
    stack.wait_contents(&["while shard 1 is stopped"]).await;
    assert_eq!(bridge.stop_shard(one).await, None, "already stopped");

    assert!(bridge.start_shard(one).await);
    assert!(!bridge.start_shard(one).await, "already running");
    let second = stack
        .wait_sim(|s| {
            s.session_of(1)
                .filter(|sess| sess.attached.is_some() && sess.id != first)
                .map(|sess| sess.id.clone())
        })
        .await;
    assert_ne!(first, second);
    shutdown.cancel();
    tokio::time::timeout(WAIT, bridge.wait())
        .await
        .expect("stops in time")
        .expect("clean stop");
}
