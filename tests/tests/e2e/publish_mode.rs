//! Publish modes (the README's Delivery guarantees and the adapter's README): core NATS publishing delivers events to
//! live subscribers and stores nothing; JetStream mode against a server
//! without JetStream is a deployment error (exit 2) that says how to fix it.

use std::time::Duration;

use discord_bridge::config::PublishMode;
use discord_bridge_e2e::jetstream::try_stream_info;
use discord_bridge_e2e::stack::{Stack, StackOptions};
use discord_bridge_e2e::{NatsServer, NatsServerBuilder};
use discord_bridge_schemas::{AgentEvent, header as h, subject};
use futures_util::StreamExt;

/// Starts a core-mode bridge on a server built by `nats`, and checks that a
/// subscriber receives an event with its headers; returns the stack.
async fn core_mode_delivers_to_subscribers(nats: NatsServerBuilder) -> Stack {
    let mut stack = Stack::start_idle(StackOptions {
        nats,
        ..StackOptions::with(|c| c.nats.publish = PublishMode::Core)
    })
    .await;
    let mut sub = stack
        .client
        .subscribe(subject::agent_events(&stack.config.nats.subject_prefix))
        .await
        .expect("subscribe to agent events");
    stack.client.flush().await.expect("flush the subscription");
    stack.start_bridge();
    stack.wait_session(0).await;

    let seq = stack.guild_message("over core NATS");
    let msg = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("an event within 20 s")
        .expect("the subscription is open");
    let json: serde_json::Value = serde_json::from_slice(&msg.payload).expect("JSON");
    discord_bridge_e2e::schema::assert_agent_event(&json);
    let event: AgentEvent = serde_json::from_value(json).expect("an agent event");
    let message = event.message().expect("a message event");
    assert_eq!(message.content, "over core NATS");
    let headers = msg.headers.expect("headers");
    let get = |name| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(get(h::SEQ), Some(seq.to_string()));
    assert_eq!(get(h::SHARD).as_deref(), Some("0/1"));
    assert_eq!(get(h::EVENT).as_deref(), Some("MESSAGE_CREATE"));
    stack
}

#[tokio::test]
async fn core_mode_publishes_without_creating_a_stream() {
    let mut stack = core_mode_delivers_to_subscribers(NatsServer::builder()).await;
    let js = stack.jetstream().await;
    assert!(
        try_stream_info(&js, &stack.config.nats.stream)
            .await
            .is_none()
    );
    let account = js.query_account().await.unwrap();
    assert_eq!(account.streams, 0, "core mode creates no stream");
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn core_mode_works_without_jetstream() {
    let mut stack =
        core_mode_delivers_to_subscribers(NatsServer::builder().without_jetstream()).await;
    stack.stop_bridge().await.expect("clean shutdown");
}

/// The real binary against `nats-server` without `-js`: exit 2, naming
/// both fixes, before it spends a session start on IDENTIFY.
#[tokio::test]
async fn missing_jetstream_exits_2_naming_the_fix() {
    let stack = Stack::start_idle(StackOptions {
        nats: NatsServer::builder().without_jetstream(),
        ..StackOptions::default()
    })
    .await;
    let mut bridge = stack.spawn_binary(&[], &[("BRIDGE_PUBLISH_MODE", "jetstream")]);
    let status = bridge.wait_exit(Duration::from_secs(30)).await;
    let output = bridge.output();
    assert_eq!(status.code(), Some(2), "{output}");
    let error = bridge
        .stderr_lines()
        .into_iter()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {output}"));
    assert!(error.contains("BRIDGE_PUBLISH_MODE"), "{error}");
    assert!(error.contains("-js"), "{error}");
    assert!(stack.sim.identifies().is_empty(), "no session start wasted");
}
