//! Sharding (the README's Gateway behaviour): `auto` runs every shard Discord recommends, one
//! IDENTIFY per identify bucket every 5 s; guild events arrive on shard
//! `(guild_id >> 22) % total` and DMs on shard 0, and carry it in
//! `Discord-Shard`; `ID/TOTAL` runs one shard, so bridges can split a bot.

use std::time::Duration;

use discord_bridge::gateway::ShardSpec;
use discord_bridge_e2e::jetstream::header;
use discord_bridge_e2e::stack::{
    Stack, StackOptions, assert_exactly_once, bridge_config, contents, test_sim_config,
};
use discord_bridge_schemas::{ShardState, header as h};
use discord_gateway_sim::{Outcome, ShardId, SimConfig};

fn two_shards(max_concurrency: u32) -> SimConfig {
    SimConfig {
        shards: 2,
        max_concurrency,
        ..test_sim_config()
    }
}

/// The shard Discord routes a guild to, computed here rather than with the
/// bridge's own function.
fn shard_of(guild: u64) -> u32 {
    u32::try_from((guild >> 22) % 2).expect("below 2")
}

/// Dispatches a message in every configured guild and a DM, waits for all
/// of them, and checks each one's `Discord-Shard` and `Discord-Guild`.
async fn every_guild_routes_to_its_shard(stack: &Stack) {
    let guilds = stack.sim.config().guilds.clone();
    assert!(guilds.iter().any(|g| shard_of(*g) == 0) && guilds.iter().any(|g| shard_of(*g) == 1));
    let mut expected = Vec::new();
    for guild in &guilds {
        let content = format!("in guild {guild}");
        let (shard, _) = stack.message(Some(*guild), &content);
        assert_eq!(shard, shard_of(*guild), "the simulator routes like Discord");
        expected.push(content);
    }
    stack.message(None, "a DM");
    expected.push("a DM".to_owned());

    let stored = stack.wait_stored(expected.len()).await;
    let mut got = contents(&stored);
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "each event stored once");
    assert_exactly_once(&stored);
    for m in &stored {
        let content = &contents(std::slice::from_ref(m))[0];
        let guild = header(m, h::GUILD).map(|g| g.parse::<u64>().expect("a numeric guild id"));
        let want = format!("{}/2", guild.map_or(0, shard_of));
        assert_eq!(header(m, h::SHARD), Some(want.as_str()), "{content}");
        match guild {
            Some(g) => assert_eq!(content, &format!("in guild {g}")),
            None => assert_eq!(content, "a DM"),
        }
    }
}

/// The IDENTIFY of each shard, in order of arrival.
fn identify_times(stack: &Stack) -> Vec<(ShardId, tokio::time::Instant)> {
    stack
        .sim
        .identifies()
        .into_iter()
        .filter(|i| matches!(i.outcome, Outcome::Ready { .. }))
        .map(|i| (i.shard.expect("a shard"), i.at))
        .collect()
}

#[tokio::test]
async fn auto_runs_every_recommended_shard_through_the_identify_floor() {
    let stack = Stack::start_with(StackOptions {
        sim: two_shards(1),
        ..StackOptions::default()
    })
    .await;
    stack.wait_session(0).await;
    stack.wait_session(1).await;
    every_guild_routes_to_its_shard(&stack).await;

    let ids = identify_times(&stack);
    let mut shards: Vec<ShardId> = ids.iter().map(|(s, _)| *s).collect();
    shards.sort();
    assert_eq!(shards, [ShardId::new(0, 2), ShardId::new(1, 2)], "{ids:?}");
    let gap = ids[1].1.duration_since(ids[0].1);
    assert!(
        gap >= Duration::from_secs(5),
        "one identify bucket (max_concurrency 1): IDENTIFYs {gap:?} apart"
    );
    assert_eq!(
        stack.sim.identifies().len(),
        2,
        "{:#?}",
        stack.sim.identifies()
    );
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
    for shard in [[0, 2], [1, 2]] {
        stack
            .wait_status("connected", |e| {
                e.state == ShardState::Connected && e.shard == shard
            })
            .await;
    }
}

#[tokio::test]
async fn separate_identify_buckets_identify_in_parallel() {
    let stack = Stack::start_with(StackOptions {
        sim: two_shards(2),
        ..StackOptions::default()
    })
    .await;
    stack.wait_session(0).await;
    stack.wait_session(1).await;
    let ids = identify_times(&stack);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let gap = ids[1].1.duration_since(ids[0].1);
    assert!(
        gap < Duration::from_secs(3),
        "max_concurrency 2: both buckets identify at once, not {gap:?} apart"
    );
    every_guild_routes_to_its_shard(&stack).await;
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

#[tokio::test]
async fn one_shard_of_two_runs_only_that_shard() {
    let stack = Stack::start_with(StackOptions {
        sim: two_shards(2),
        ..StackOptions::with(|c| {
            c.discord.shards = ShardSpec::parse("0/2").unwrap();
        })
    })
    .await;
    stack.wait_session(0).await;
    let guild0 = *stack
        .sim
        .config()
        .guilds
        .iter()
        .find(|g| shard_of(**g) == 0)
        .unwrap();
    let guild1 = *stack
        .sim
        .config()
        .guilds
        .iter()
        .find(|g| shard_of(**g) == 1)
        .unwrap();
    stack.message(Some(guild0), "guild on shard 0");
    stack.message(None, "a DM");
    let stored = stack.wait_contents(&["guild on shard 0", "a DM"]).await;
    assert!(stored.iter().all(|m| header(m, h::SHARD) == Some("0/2")));

    // Both shards would have identified together (two buckets): shard 1 was
    // not started.
    let identified: Vec<_> = stack.sim.identifies().iter().map(|i| i.shard).collect();
    assert_eq!(identified, [Some(ShardId::new(0, 2))]);
    assert!(stack.sim.session(1).is_none());
    assert!(
        stack
            .sim
            .dispatch_to_guild(Some(guild1), "MESSAGE_CREATE", serde_json::json!({}))
            .is_none(),
        "nobody serves shard 1"
    );
    assert!(stack.statuses().iter().all(|e| e.shard == [0, 2]));
}

#[tokio::test]
async fn two_bridges_split_the_shards_and_share_the_stream() {
    let stack = Stack::start_with(StackOptions {
        sim: two_shards(2),
        ..StackOptions::with(|c| {
            c.discord.shards = ShardSpec::parse("0/2").unwrap();
        })
    })
    .await;
    let mut other = bridge_config(&stack.sim, &stack.nats.url());
    other.discord.shards = ShardSpec::parse("1/2").unwrap();
    let other = stack.spawn_bridge(other);
    stack.wait_session(0).await;
    stack.wait_session(1).await;
    every_guild_routes_to_its_shard(&stack).await;

    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 2, "one connection per shard: {conns:#?}");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
    other.stop().await.expect("clean shutdown");
}

/// the README's Gateway behaviour: the identify floor holds "across all bridge processes
/// sharing the NATS server (coordinated in NATS KV)". Two bridges of one
/// bot in a single identify bucket must not IDENTIFY within 5 s of each
/// other.
#[tokio::test]
async fn two_bridges_share_the_identify_floor() {
    let stack = Stack::start_with(StackOptions {
        sim: two_shards(1),
        ..StackOptions::with(|c| {
            c.discord.shards = ShardSpec::parse("0/2").unwrap();
        })
    })
    .await;
    let mut other = bridge_config(&stack.sim, &stack.nats.url());
    other.discord.shards = ShardSpec::parse("1/2").unwrap();
    let _other = stack.spawn_bridge(other);
    stack.wait_session(0).await;
    stack.wait_session(1).await;

    assert!(
        stack.sim.violations().is_empty(),
        "{:#?}",
        stack.sim.violations()
    );
    let identifies = stack.sim.identifies();
    assert_eq!(identifies.len(), 2, "{identifies:#?}");
    let gap = identifies[1].at.duration_since(identifies[0].at);
    assert!(gap >= Duration::from_secs(5), "IDENTIFYs {gap:?} apart");
}
