//! The `discord-bridge` NATS service: `nats micro` discovery and the
//! per-shard `status` endpoint, whose counters also show that the
//! simulator's MESSAGE_CREATEs (in Discord's key order) took the bridge's
//! one-pass decoder.

use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT};
use discord_bridge_schemas::{BridgeStatus, ShardState};
use discord_gateway_sim::events::{self, User};

#[tokio::test]
async fn status_endpoint_reports_every_shard() {
    let mut options = StackOptions::default();
    options.sim.shards = 2;
    options.sim.max_concurrency = 2;
    let mut stack = Stack::start_with(options).await;
    let s0 = stack.wait_session(0).await;
    stack.wait_session(1).await;
    // One message in every guild: both shards get some.
    let guilds = stack.sim.config().guilds.clone();
    let alice = User::new(7, "alice");
    let mut shards = Vec::new();
    for guild in &guilds {
        let (shard, _) = stack
            .sim
            .dispatch_to_guild(
                Some(*guild),
                "MESSAGE_CREATE",
                events::message_create(1, Some(*guild), &alice, "hi"),
            )
            .expect("a session for the guild's shard");
        shards.push(shard);
    }
    assert!(shards.contains(&0) && shards.contains(&1), "{shards:?}");
    let sent = guilds.len() as u64;
    stack.wait_stored(guilds.len()).await;

    let status: BridgeStatus =
        discord_bridge_e2e::eventually(WAIT, "both shards connected in the status reply", || {
            let client = stack.client.clone();
            async move {
                let reply = client
                    .request("astrid-discord.bridge.status", "".into())
                    .await
                    .ok()?;
                let status: BridgeStatus =
                    serde_json::from_slice(&reply.payload).expect("a BridgeStatus");
                let connected = status
                    .shards
                    .iter()
                    .all(|s| s.state == Some(ShardState::Connected));
                let relayed: u64 = status.shards.iter().map(|s| s.events_relayed).sum();
                (connected && relayed == sent).then_some(status)
            }
        })
        .await;
    assert_eq!(status.publish, "jetstream");
    assert_eq!(status.shards.len(), 2);
    let zero = status
        .shards
        .iter()
        .find(|s| s.shard == [0, 2])
        .expect("shard 0");
    assert_eq!(zero.session_id.as_deref(), Some(s0.as_str()));
    assert!(zero.connected_since.is_some());
    assert!(zero.last_seq.is_some());
    assert_eq!(zero.buffered, 0);
    // Every MESSAGE_CREATE was decoded in one pass, on each shard.
    for shard in &status.shards {
        let on_shard = shards.iter().filter(|s| **s == shard.shard[0]).count() as u64;
        assert_eq!(shard.events_relayed, on_shard, "{shard:?}");
        assert_eq!(shard.one_pass_messages, on_shard, "{shard:?}");
    }
    let one_pass: u64 = status.shards.iter().map(|s| s.one_pass_messages).sum();
    assert_eq!(one_pass, sent);

    // `nats micro info discord-bridge` asks $SRV.INFO.<name>.
    let info = stack
        .client
        .request("$SRV.INFO.discord-bridge", "".into())
        .await
        .expect("service info");
    let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("JSON");
    assert_eq!(info["name"], "discord-bridge");
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(subjects, ["astrid-discord.bridge.status"]);
    stack.stop_bridge().await.expect("clean shutdown");
}
