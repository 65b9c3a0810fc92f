//! SIGTERM and SIGINT on the real binary (the README's Running a real bot): a clean shutdown
//! within seconds — a resumable close frame to Discord, a `shutting_down` status,
//! every event the bridge had received stored — and exit code 0.

use std::time::{Duration, Instant};

use discord_bridge_e2e::Signal;
use discord_bridge_e2e::stack::{
    CHANNEL_ID, Stack, StackOptions, alice, assert_exactly_once, contents, test_sim_config,
};
use discord_bridge_schemas::ShardState;
use discord_gateway_sim::{Closer, SimConfig, events};

/// Pause between two bursts of traffic while waiting for the bridge to exit.
const TRAFFIC_PACE: Duration = Duration::from_millis(2);

/// How long a clean shutdown may take.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// Heartbeats only when Discord asks (op 1): with a scheduled beat every
/// half second, a loaded machine could delay one ACK past the next beat and
/// the bridge would rightly close the connection as a zombie (4000) just
/// before the signal — a close this test is not about.
const NO_SCHEDULED_BEATS: Duration = Duration::from_secs(3600);

async fn signal_stops_cleanly(signal: Signal) {
    let stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            heartbeat_interval: NO_SCHEDULED_BEATS,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let mut bridge = stack.spawn_binary(&[], &[]);
    let session = stack.wait_session(0).await;
    stack.guild_message("warm-up");
    stack.wait_contents(&["warm-up"]).await;

    // A burst, then ask for a heartbeat: Discord sends op 1 after the burst,
    // so the answer carries the last seq the bridge has received.
    let mut last = 0;
    for i in 0..300 {
        last = stack.guild_message(&format!("burst {i}"));
    }
    // (A scheduled beat may come first, with an earlier seq.)
    assert!(stack.sim.request_heartbeat(0));
    stack
        .wait_sim(|s| {
            s.heartbeats_of(0)
                .any(|h| h.d.as_u64() == Some(last))
                .then_some(())
        })
        .await;

    // Events keep flowing while the signal lands.
    for i in 0..50 {
        stack.sim.dispatch(
            0,
            "MESSAGE_CREATE",
            events::message_create(
                CHANNEL_ID,
                Some(stack.sim.config().guilds[0]),
                &alice(),
                &format!("flowing {i}"),
            ),
        );
    }
    let signalled = Instant::now();
    bridge.signal(signal);
    let mut i = 0;
    let status = loop {
        if let Some(status) = bridge.try_exit() {
            break status;
        }
        assert!(
            signalled.elapsed() < SHUTDOWN,
            "{signal:?}: still running after {SHUTDOWN:?}:\n{}",
            bridge.output()
        );
        // Dispatches fail once the session has ended; that is fine.
        for _ in 0..20 {
            let late = events::message_create(CHANNEL_ID, None, &alice(), &format!("late {i}"));
            let _ = stack.sim.dispatch(0, "MESSAGE_CREATE", late);
            i += 1;
        }
        // Paces the traffic above; the loop itself waits for the exit.
        tokio::time::sleep(TRAFFIC_PACE).await;
    };
    let took = signalled.elapsed();
    let _ = bridge.wait_exit(SHUTDOWN).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{signal:?} after {took:?}:\n{}",
        bridge.output()
    );

    let bye = stack
        .wait_status("shutting_down", |e| e.state == ShardState::ShuttingDown)
        .await;
    assert_eq!(bye.session_id.as_deref(), Some(session.as_str()));

    // Everything received before the signal is stored, once, in order.
    let stored = stack.stored().await;
    let got = contents(&stored);
    let mut expected = vec!["warm-up".to_owned()];
    expected.extend((0..300).map(|i| format!("burst {i}")));
    assert!(
        got.len() >= expected.len() && got[..expected.len()] == expected[..],
        "{signal:?}: stored {} events, the first {} must be the warm-up and the burst",
        got.len(),
        expected.len()
    );
    assert_exactly_once(&stored);
    let err = bridge.stderr_lines();
    assert!(
        !err.iter().any(|l| l.contains("panicked")),
        "{}",
        bridge.output()
    );

    // Discord saw the shutdown close: a resumable code (never 1000/1001,
    // which would end the session a successor RESUMEs), with its reason,
    // not a connection reset in the middle of its traffic.
    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 1, "{conns:#?}");
    let closed = stack
        .wait_sim(|s| s.connections.values().next().and_then(|c| c.closed.clone()))
        .await;
    assert_eq!(
        (closed.by, closed.code, closed.reason.as_str()),
        (Closer::Client, Some(4000), "shutdown"),
        "{signal:?}: {closed:?}"
    );
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    signal_stops_cleanly(Signal::Term).await;
}

#[tokio::test]
async fn sigint_shuts_down_cleanly() {
    signal_stops_cleanly(Signal::Int).await;
}

/// A signal while the bridge cannot reach Discord (waiting to reconnect)
/// still ends it at once with exit code 0.
#[tokio::test]
async fn sigterm_while_reconnecting_exits_0() {
    let stack = Stack::start_idle(StackOptions::default()).await;
    let mut bridge = stack.spawn_binary(&[], &[]);
    stack.wait_session(0).await;
    stack.sim.shutdown().await;
    stack
        .wait_status("reconnect attempts", |e| e.state == ShardState::Backoff)
        .await;
    let signalled = Instant::now();
    bridge.signal(Signal::Term);
    let status = bridge.wait_exit(SHUTDOWN).await;
    assert_eq!(status.code(), Some(0), "{}", bridge.output());
    assert!(signalled.elapsed() < SHUTDOWN);
    stack
        .wait_status("shutting_down", |e| e.state == ShardState::ShuttingDown)
        .await;
}
