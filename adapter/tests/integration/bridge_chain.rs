//! The whole chain: simulated Discord → discord-bridge → JetStream → adapter
//! → `EventBus` → a capsule-like subscriber.

use std::sync::Arc;

use crate::common::*;
use astrid_discord_adapter::Adapter;
use astrid_events::EventBus;
use discord_bridge_e2e::jetstream::payload_json;
use discord_bridge_e2e::stack::Stack;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_discord_message_reaches_the_capsule_as_the_bridge_published_it() {
    init_tracing();
    let stack = Stack::start().await;
    stack.wait_session(0).await;
    let bus = Arc::new(EventBus::new());
    let adapter = Adapter::new(stack.nats.client().await, Arc::clone(&bus), leased())
        .expect("the defaults match the bridge's");
    let mut capsule = capsule(adapter.listeners(), &bus);
    let handle = adapter.spawn(CancellationToken::new());

    stack.guild_message("hello adapter");
    let event = next_event(&mut capsule).await;
    let stored = stack.wait_stored(1).await;
    assert_eq!(
        data(&event),
        payload_json(&stored[0]),
        "exactly the published JSON"
    );
    assert_eq!(data(&event)["type"], "message");
    assert_eq!(data(&event)["payload"]["content"], "hello adapter");
    assert_eq!(ipc(&event).topic.as_str(), "astrid-discord.agent.events");
    wait_all_acked(&stack.jetstream().await, stored[0].sequence).await;
    handle.shutdown().await.expect("clean shutdown");
}
