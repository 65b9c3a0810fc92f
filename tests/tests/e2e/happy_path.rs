//! The whole pipeline on a real nats-server: simulated Discord traffic in,
//! normalized agent events with their headers out, for every compression.

use discord_bridge::codec::Compression;
use discord_bridge_e2e::jetstream::{header, payload_json};
use discord_bridge_e2e::stack::{Stack, StackOptions};
use discord_bridge_schemas::{AgentEvent, AgentEventKind, ShardState, header as h};
use discord_gateway_sim::events::{self, User};

async fn happy_path(compression: Compression) {
    let mut stack = Stack::start_with(StackOptions::with(move |c| {
        c.discord.compression = compression
    }))
    .await;
    let session = stack.wait_session(0).await;
    let guild = stack.sim.config().guilds[0];
    let alice = User::new(events::snowflake(), "alice");
    let bot = User::new(
        stack.sim.config().bot_user_id,
        &stack.sim.config().bot_username,
    );

    let channel = events::snowflake();
    let (_, msg_seq) = stack
        .sim
        .dispatch_to_guild(
            Some(guild),
            "MESSAGE_CREATE",
            events::message_create(channel, Some(guild), &alice, "hello bridge"),
        )
        .expect("dispatched");
    stack.sim.dispatch_to_guild(
        Some(guild),
        "MESSAGE_CREATE",
        events::message_create(channel, Some(guild), &bot, "my own echo"),
    );
    stack.sim.dispatch_to_guild(
        Some(guild),
        "TYPING_START",
        events::typing_start(channel, Some(guild), &alice),
    );
    let (_, dm_seq) = stack
        .sim
        .dispatch_to_guild(
            None,
            "MESSAGE_CREATE",
            events::message_create(channel, None, &alice, "a DM"),
        )
        .expect("dispatched");
    let app = stack.sim.config().application_id;
    let options = serde_json::json!([{"type": 3, "name": "prompt", "value": "hi"}]);
    let interaction =
        events::interaction_create(app, channel, Some(guild), &alice, "chat", options);
    let (_, int_seq) = stack
        .sim
        .dispatch_to_guild(Some(guild), "INTERACTION_CREATE", interaction.clone())
        .expect("dispatched");

    let stored = stack.wait_stored(3).await;
    assert_eq!(
        stored.len(),
        3,
        "own message and TYPING_START are not relayed"
    );
    let events: Vec<AgentEvent> = stored
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("agent event schema"))
        .collect();

    let msg = events[0].message().expect("a message event");
    assert_eq!(msg.content, "hello bridge");
    assert_eq!(msg.author.username, "alice");
    assert_eq!(msg.guild_id, Some(guild.to_string()));
    assert_eq!(msg.channel_id, channel.to_string());
    assert_eq!(
        header(&stored[0], h::MSG_ID),
        Some(format!("{session}:{msg_seq}").as_str())
    );
    assert_eq!(header(&stored[0], h::SHARD), Some("0/1"));
    assert_eq!(
        header(&stored[0], h::SEQ),
        Some(msg_seq.to_string().as_str())
    );
    assert_eq!(header(&stored[0], h::EVENT), Some("MESSAGE_CREATE"));
    assert_eq!(
        header(&stored[0], h::GUILD),
        Some(guild.to_string().as_str())
    );

    let dm = events[1].message().expect("a DM event");
    assert_eq!(
        (dm.content.as_str(), dm.guild_id.as_deref()),
        ("a DM", None)
    );
    assert_eq!(header(&stored[1], h::GUILD), None);
    assert_eq!(
        header(&stored[1], h::SEQ),
        Some(dm_seq.to_string().as_str())
    );

    assert_eq!(events[2].kind, AgentEventKind::Interaction);
    assert_eq!(
        payload_json(&stored[2])["payload"],
        interaction,
        "interaction payload is verbatim"
    );
    assert_eq!(header(&stored[2], h::EVENT), Some("INTERACTION_CREATE"));
    assert_eq!(
        header(&stored[2], h::SEQ),
        Some(int_seq.to_string().as_str())
    );

    // Status: connecting → identifying → connected, with the session.
    let connected = stack
        .wait_status("a connected status", |e| e.state == ShardState::Connected)
        .await;
    assert_eq!(connected.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(connected.shard, [0, 1]);
    let states: Vec<ShardState> = stack.statuses().iter().map(|e| e.state).collect();
    let pos = |s| {
        states
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("{s:?} in {states:?}"))
    };
    assert!(pos(ShardState::Connecting) < pos(ShardState::Identifying));
    assert!(pos(ShardState::Identifying) < pos(ShardState::Connected));

    // The simulator saw the documented query and a correct IDENTIFY.
    let conn = stack
        .sim
        .connections()
        .into_iter()
        .next()
        .expect("a connection");
    // The simulator spells the compression it saw as the bridge asked for it.
    assert_eq!(conn.compression.query_value(), compression.query_value());
    assert!(
        conn.query.contains("v=10") && conn.query.contains("encoding=json"),
        "{}",
        conn.query
    );
    let identify = &stack.sim.identifies()[0];
    assert_eq!(identify.intents, Some(4609));

    stack.stop_bridge().await.expect("clean shutdown");
    let bye = stack
        .wait_status("shutting_down", |e| e.state == ShardState::ShuttingDown)
        .await;
    assert_eq!(bye.shard, [0, 1]);
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

#[tokio::test]
async fn zlib_stream() {
    happy_path(Compression::ZlibStream).await;
}

#[tokio::test]
async fn zstd_stream() {
    happy_path(Compression::ZstdStream).await;
}

#[tokio::test]
async fn no_compression() {
    happy_path(Compression::None).await;
}
