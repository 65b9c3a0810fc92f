//! JetStream durability (the README's Delivery guarantees): no event is lost or stored twice when
//! NATS dies mid-stream, stays away longer than the buffer holds, or when
//! Discord replays a session; what cannot be saved is reported.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use discord_bridge::RunError;
use discord_bridge_e2e::jetstream::header;
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT};
use discord_bridge_schemas::{ShardState, header as h};
use discord_gateway_sim::events::{self, User};
use discord_gateway_sim::{Closer, Endpoint};

fn message(stack: &Stack, text: &str) -> u64 {
    let guild = stack.sim.config().guilds[0];
    let alice = User::new(4242, "alice");
    let d = events::message_create(events::snowflake(), Some(guild), &alice, text);
    stack
        .sim
        .dispatch_to_guild(Some(guild), "MESSAGE_CREATE", d)
        .expect("the shard has a session")
        .1
}

/// Exactly once, in order: every expected seq once, no duplicate message id.
fn assert_exactly_once(stored: &[StreamMessage], expected: &[u64]) {
    let seqs: Vec<u64> = stored
        .iter()
        .map(|m| {
            header(m, h::SEQ)
                .expect("Discord-Seq")
                .parse()
                .expect("a number")
        })
        .collect();
    let ids: BTreeSet<&str> = stored
        .iter()
        .map(|m| header(m, h::MSG_ID).expect("Nats-Msg-Id"))
        .collect();
    assert_eq!(ids.len(), stored.len(), "duplicate Nats-Msg-Id in {seqs:?}");
    assert_eq!(seqs, expected, "every event exactly once, in order");
}

#[tokio::test]
async fn kill9_mid_stream_then_restart_loses_nothing() {
    let mut stack = Stack::start_with(StackOptions::with(|c| {
        c.nats.ack_timeout = Duration::from_millis(800);
    }))
    .await;
    stack.wait_session(0).await;
    let mut expected = Vec::new();
    for i in 0..10 {
        expected.push(message(&stack, &format!("before {i}")));
    }
    stack.wait_stored(5).await;
    stack.nats.kill9();
    for i in 0..10 {
        expected.push(message(&stack, &format!("during {i}")));
    }
    // The gateway session survives the outage: heartbeats go on.
    let beats = stack.sim.heartbeats(0).len();
    stack
        .wait_sim(|s| (s.heartbeats_of(0).filter(|b| b.acked).count() > beats + 1).then_some(()))
        .await;
    stack.nats.restart().await;
    for i in 0..10 {
        expected.push(message(&stack, &format!("after {i}")));
    }
    let stored = stack.wait_stored(expected.len()).await;
    assert_exactly_once(&stored, &expected);
    let closed_by_bridge = stack
        .sim
        .connections()
        .iter()
        .filter(|c| c.closed.as_ref().is_some_and(|x| x.by == Closer::Client))
        .count();
    assert_eq!(
        closed_by_bridge, 0,
        "the buffer held the outage: no reconnect needed"
    );
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn outage_longer_than_the_buffer_resumes_from_the_acked_seq() {
    let mut stack = Stack::start_with(StackOptions::with(|c| {
        c.nats.buffer_events = 4;
        c.nats.ack_timeout = Duration::from_millis(800);
    }))
    .await;
    let session = stack.wait_session(0).await;
    let mut expected = vec![message(&stack, "stored before the outage")];
    stack.wait_stored(1).await;
    stack.nats.kill9();
    for i in 0..12 {
        expected.push(message(&stack, &format!("during {i}")));
    }
    // The buffer (4) overflows: the bridge closes the gateway, resumably.
    let closed = stack
        .wait_sim(|s| {
            s.connections.values().find_map(|c| {
                c.closed
                    .as_ref()
                    .filter(|x| x.by == Closer::Client)
                    .map(|x| x.code)
            })
        })
        .await;
    assert_ne!(closed, Some(1000), "a resumable close code");
    assert_ne!(closed, Some(1001));
    // Discord keeps dispatching into the session while the bridge is away.
    for i in 0..3 {
        expected.push(message(&stack, &format!("while away {i}")));
    }
    stack.nats.restart().await;
    let resume = stack
        .wait_sim(|s| s.resumes.iter().find(|r| r.session_id == session).cloned())
        .await;
    assert!(
        resume.seq >= expected[0],
        "resumes from what JetStream stored: {resume:?}"
    );
    assert!(
        resume.seq < *expected.last().expect("events"),
        "not from the last received: {resume:?}"
    );
    let conn = stack
        .wait_sim(|s| s.connections.get(&resume.conn).cloned())
        .await;
    assert_eq!(conn.endpoint, Endpoint::Resume);
    for i in 0..3 {
        expected.push(message(&stack, &format!("after {i}")));
    }
    let stored = stack.wait_stored(expected.len()).await;
    assert_exactly_once(&stored, &expected);
    let backpressure = stack
        .wait_status("a nats_backpressure status", |e| {
            e.reason.as_deref() == Some("nats_backpressure")
        })
        .await;
    assert_eq!(backpressure.will_resume, Some(true));
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_session_lost_during_the_outage_is_reported_with_its_range() {
    let mut stack = Stack::start_with(StackOptions::with(|c| {
        c.nats.buffer_events = 2;
        c.nats.ack_timeout = Duration::from_millis(800);
        // The outage must not outlast the shard lease: a process that can
        // no longer renew stops its shard, and a successor starting from the
        // checkpoint cannot know which dispatches were received unstored.
        c.discord.shard_lease = Duration::from_secs(600);
    }))
    .await;
    let first_session = stack.wait_session(0).await;
    message(&stack, "stored");
    stack.wait_stored(1).await;
    stack.nats.kill9();
    let mut dispatched = Vec::new();
    for i in 0..6 {
        dispatched.push(message(&stack, &format!("lost? {i}")));
    }
    stack
        .wait_sim(|s| {
            s.connections
                .values()
                .any(|c| c.closed.as_ref().is_some_and(|x| x.by == Closer::Client))
                .then_some(())
        })
        .await;
    // Discord gives up on the session before NATS is back.
    assert!(stack.sim.expire_session(0));
    stack.nats.restart().await;
    let lost = stack
        .wait_status("a loss report", |e| {
            e.state == ShardState::Error && e.lost.is_some()
        })
        .await;
    let range = lost.lost.expect("a range");
    assert_eq!(lost.fatal, Some(false));
    assert_eq!(lost.session_id.as_deref(), Some(first_session.as_str()));
    assert!(
        dispatched.contains(&range.from) && range.to <= *dispatched.last().expect("events"),
        "{range:?} within {dispatched:?}"
    );
    assert!(
        lost.message
            .expect("a message")
            .contains(&format!("{}..={}", range.from, range.to))
    );
    // A new session starts and events flow again.
    let second = stack.wait_session(0).await;
    assert_ne!(second, first_session);
    let before = stack.stored().await.len();
    message(&stack, "new session");
    let stored = stack.wait_stored(before + 1).await;
    assert_eq!(
        header(stored.last().expect("stored"), h::SESSION),
        Some(second.as_str())
    );
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_stream_drops_a_republished_message_id() {
    let mut stack = Stack::start().await;
    stack.wait_session(0).await;
    message(&stack, "once");
    let stored = stack.wait_stored(1).await;
    let js = stack.jetstream().await;
    let mut stream = js
        .get_stream(&stack.config.nats.stream)
        .await
        .expect("the stream");
    let info = stream.info().await.expect("stream info");
    assert!(
        info.config.duplicate_window >= Duration::from_secs(120),
        "{:?}",
        info.config.duplicate_window
    );
    // What a RESUME replay or a retried publish looks like to JetStream.
    let ack = js
        .send_publish(
            stored[0].subject.to_string(),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(stored[0].payload.clone())
                .headers(stored[0].headers.clone()),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert!(
        ack.duplicate,
        "same Nats-Msg-Id within the window is a duplicate"
    );
    assert_eq!(stack.stored().await.len(), 1);
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_event_larger_than_max_payload_is_reported_and_skipped() {
    let mut options = StackOptions::default();
    options.nats = options.nats.max_payload(4096);
    let mut stack = Stack::start_with(options).await;
    stack.wait_session(0).await;
    let small = message(&stack, "fits");
    let big = message(&stack, &"x".repeat(8000));
    let after = message(&stack, "fits too");
    let stored = stack.wait_stored(2).await;
    let seqs: Vec<String> = stored
        .iter()
        .map(|m| header(m, h::SEQ).expect("seq").to_owned())
        .collect();
    assert_eq!(seqs, [small.to_string(), after.to_string()]);
    let report = stack
        .wait_status("an event_too_large status", |e| {
            e.reason.as_deref() == Some("event_too_large")
        })
        .await;
    let lost = report.lost.expect("the skipped seq");
    assert_eq!((lost.from, lost.to), (big, big));
    let message = report.message.expect("a message");
    assert!(
        message.contains("MESSAGE_CREATE") && message.contains(&big.to_string()),
        "{message}"
    );
    // The skipped event does not hold back the resume point.
    stack.sim.reconnect(0);
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert!(resume.seq >= after, "{resume:?}");
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_operators_stream_is_used_as_configured() {
    let mut stack = Stack::start().await;
    stack.wait_session(0).await;
    stack.stop_bridge().await.expect("stop");
    // The operator replaces the stream with settings of their own.
    let js = stack.jetstream().await;
    js.delete_stream("ASTRID_DISCORD")
        .await
        .expect("delete the bridge-made stream");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ASTRID_DISCORD".into(),
        subjects: vec!["astrid-discord.agent.>".into()],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        duplicate_window: Duration::from_secs(300),
        max_messages: 1000,
        ..Default::default()
    })
    .await
    .expect("operator's stream");
    stack.start_bridge();
    stack.wait_session(0).await;
    message(&stack, "into the operator's stream");
    stack.wait_stored(1).await;
    let mut stream = js.get_stream("ASTRID_DISCORD").await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::Memory
    );
    assert_eq!(info.config.duplicate_window, Duration::from_secs(300));
    assert_eq!(info.config.subjects, ["astrid-discord.agent.>"]);
    assert_eq!(info.config.max_messages, 1000);
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_stream_that_does_not_capture_the_subject_is_a_setup_error() {
    let mut stack = Stack::start().await;
    stack.wait_session(0).await;
    stack.stop_bridge().await.expect("stop");
    let js = stack.jetstream().await;
    js.delete_stream("ASTRID_DISCORD").await.expect("delete");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ASTRID_DISCORD".into(),
        subjects: vec!["something.else".into()],
        ..Default::default()
    })
    .await
    .expect("a stream on another subject");
    stack.start_bridge();
    let err = stack.join_bridge(WAIT).await.expect_err("refused");
    assert!(
        matches!(
            err,
            RunError::Nats(discord_bridge::error::NatsError::StreamMismatch { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("astrid-discord.agent.events") && text.contains("BRIDGE_STREAM"),
        "{text}"
    );
}

#[tokio::test]
async fn core_mode_delivers_at_most_once_without_a_stream() {
    let mut stack = Stack::start_with(StackOptions::with(|c| {
        c.nats.publish = discord_bridge::config::PublishMode::Core;
    }))
    .await;
    let mut sub = stack
        .client
        .subscribe("astrid-discord.agent.events")
        .await
        .expect("subscribe");
    stack.client.flush().await.expect("flush");
    stack.wait_session(0).await;
    let seq = message(&stack, "live only");
    let msg = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut sub))
        .await
        .expect("an event in time")
        .expect("an event");
    assert_eq!(
        msg.headers
            .as_ref()
            .and_then(|h| h.get(h::SEQ))
            .map(|v| v.as_str()),
        Some(seq.to_string().as_str())
    );
    let json: serde_json::Value = serde_json::from_slice(&msg.payload).expect("JSON");
    discord_bridge_e2e::schema::assert_agent_event(&json);
    let js = stack.jetstream().await;
    assert!(
        discord_bridge_e2e::jetstream::try_stream_info(&js, "ASTRID_DISCORD")
            .await
            .is_none(),
        "no stream in core mode"
    );
    stack.stop_bridge().await.expect("clean shutdown");
}
