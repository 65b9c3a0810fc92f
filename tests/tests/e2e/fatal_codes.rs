//! Fatal close codes (the README's Gateway behaviour): 4004, 4010, 4011, 4012, 4013 and 4014
//! stop the shard for good with an error naming the code and the setting to
//! fix; the process exits 1 once no shard is left.

use std::time::Duration;

use discord_bridge::RunError;
use discord_bridge::gateway::Intents;
use discord_bridge::secret::Secret;
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT, test_sim_config};
use discord_bridge_schemas::{ShardState, StatusEvent};
use discord_gateway_sim::{Outcome, SimConfig};

/// The setting each fatal code's error must name.
fn setting_for(code: u16) -> &'static str {
    match code {
        4004 => "DISCORD_BOT_TOKEN",
        4010 | 4011 => "DISCORD_SHARDS",
        4012 => "DISCORD_GATEWAY_URL",
        4013 | 4014 => "DISCORD_GATEWAY_INTENTS",
        other => panic!("{other} is not fatal"),
    }
}

/// Waits for the bridge to stop by itself and returns its fatal close code
/// and message.
async fn fatal_stop(stack: &mut Stack) -> (u16, String) {
    match stack.join_bridge(WAIT).await {
        Err(e @ RunError::Fatal { code, .. }) => {
            assert_eq!(e.exit_code(), 1);
            (code, e.to_string())
        }
        other => panic!("expected RunError::Fatal, got {other:?}"),
    }
}

/// The fatal `error` status of shard `[id, total]`.
async fn fatal_status(stack: &Stack, shard: [u32; 2]) -> StatusEvent {
    stack
        .wait_status("a fatal error status", |e| {
            e.state == ShardState::Error && e.fatal == Some(true) && e.shard == shard
        })
        .await
}

async fn fatal_close(code: u16) {
    let mut stack = Stack::start().await;
    stack.wait_session(0).await;
    stack.guild_message("before");
    stack.wait_contents(&["before"]).await;

    assert!(stack.sim.close(0, code, "test"));
    let (stopped_with, message) = fatal_stop(&mut stack).await;
    assert_eq!(stopped_with, code);
    assert!(message.contains(&code.to_string()), "{code}: {message}");
    assert!(message.contains(setting_for(code)), "{code}: {message}");

    let status = fatal_status(&stack, [0, 1]).await;
    assert_eq!(status.close_code, Some(code), "{status:?}");
    let text = status.message.clone().unwrap_or_default();
    assert!(text.contains(setting_for(code)), "{code}: {status:?}");
    assert_eq!(
        stack.sim.connections().len(),
        1,
        "{code}: no reconnect after a fatal close"
    );
    assert!(stack.sim.resumes().is_empty());
    assert_eq!(stack.sim.identifies().len(), 1);
}

#[tokio::test]
async fn close_4004_authentication_failed_is_fatal() {
    fatal_close(4004).await;
}

#[tokio::test]
async fn close_4010_invalid_shard_is_fatal() {
    fatal_close(4010).await;
}

#[tokio::test]
async fn close_4011_sharding_required_is_fatal() {
    fatal_close(4011).await;
}

#[tokio::test]
async fn close_4012_invalid_api_version_is_fatal() {
    fatal_close(4012).await;
}

#[tokio::test]
async fn close_4013_invalid_intents_is_fatal() {
    fatal_close(4013).await;
}

#[tokio::test]
async fn close_4014_disallowed_intents_is_fatal() {
    fatal_close(4014).await;
}

/// MESSAGE_CONTENT is privileged; the simulated Developer Portal does not
/// allow it, so Discord refuses IDENTIFY with 4014.
#[tokio::test]
async fn privileged_intent_not_enabled_is_fatal_4014() {
    let mut stack = Stack::start_with(StackOptions::with(|c| {
        c.discord.intents = Intents::parse("GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT").unwrap();
    }))
    .await;
    let (_, message) = fatal_stop(&mut stack).await;
    assert!(message.contains("4014"), "{message}");
    assert!(message.contains("DISCORD_GATEWAY_INTENTS"), "{message}");
    let identifies = stack.sim.identifies();
    assert_eq!(identifies.len(), 1, "{identifies:#?}");
    assert_eq!(identifies[0].outcome, Outcome::Closed(4014));
    assert_eq!(stack.sim.connections().len(), 1, "no retry");
    assert_eq!(fatal_status(&stack, [0, 1]).await.close_code, Some(4014));
}

/// A wrong token with a fixed gateway URL (no `GET /gateway/bot` to answer
/// 401 first) reaches IDENTIFY, which Discord closes with 4004.
#[tokio::test]
async fn wrong_token_at_the_gateway_is_fatal_4004() {
    const WRONG: &str = "wrong-token-4004-0123456789";
    let mut stack = Stack::start_idle(StackOptions::default()).await;
    stack.config.discord.token = Some(Secret::new(WRONG.to_owned()));
    stack.config.discord.gateway_url = Some(stack.sim.gateway_url());
    stack.start_bridge();
    let (_, message) = fatal_stop(&mut stack).await;
    assert!(message.contains("4004"), "{message}");
    assert!(message.contains("DISCORD_BOT_TOKEN"), "{message}");
    assert!(
        !message.contains(WRONG),
        "the error repeats the token: {message}"
    );
    assert_eq!(stack.sim.gateway_bot_requests(), 0);
    let identifies = stack.sim.identifies();
    assert_eq!(identifies.len(), 1, "{identifies:#?}");
    assert_eq!(identifies[0].outcome, Outcome::Closed(4004));
    let status = fatal_status(&stack, [0, 1]).await;
    assert_eq!(status.close_code, Some(4004));
    let json = serde_json::to_string(&status).unwrap();
    assert!(!json.contains(WRONG), "{json}");
}

/// With two shards, a fatal close stops only its own shard: the other keeps
/// relaying, and `run` ends with the error once both have stopped.
#[tokio::test]
async fn fatal_close_stops_only_its_shard() {
    let mut stack = Stack::start_with(StackOptions {
        sim: SimConfig {
            shards: 2,
            max_concurrency: 2,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    stack.wait_session(0).await;
    stack.wait_session(1).await;
    assert!(stack.sim.close(1, 4013, "test"));
    let status = fatal_status(&stack, [1, 2]).await;
    assert_eq!(status.close_code, Some(4013));

    stack.message(None, "shard 0 lives on");
    stack.wait_contents(&["shard 0 lives on"]).await;
    assert!(!stack.bridge_finished(), "shard 0 is still running");
    // A refused shard is never taken up again, not at the next lease round
    // either: let shard 0 heartbeat a few times (half a second each, so
    // several lease rounds pass), then shard 1 still has its one connection.
    let beats = stack.sim.heartbeats(0).len();
    stack
        .wait_sim(|s| (s.heartbeats_of(0).count() >= beats + 5).then_some(()))
        .await;
    let refused: Vec<_> = stack
        .sim
        .connections()
        .into_iter()
        .filter(|c| c.shard == Some(1) || c.shard.is_none())
        .collect();
    assert_eq!(refused.len(), 1, "shard 1 is not retried: {refused:#?}");

    assert!(stack.sim.close(0, 4013, "test"));
    let (_, message) = fatal_stop(&mut stack).await;
    assert!(message.contains("4013"), "{message}");
    let shard_conns = |shard: u32| {
        stack
            .sim
            .connections()
            .iter()
            .filter(|c| c.shard == Some(shard))
            .count()
    };
    assert_eq!((shard_conns(0), shard_conns(1)), (1, 1), "no reconnect");
}

/// The real binary: exit code 1 and an error on stderr naming the code and
/// the setting.
#[tokio::test]
async fn binary_exits_1_naming_the_code_and_the_setting() {
    let stack = Stack::start_idle(StackOptions::default()).await;
    let mut bridge = stack.spawn_binary(
        &[],
        &[(
            "DISCORD_GATEWAY_INTENTS",
            "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT",
        )],
    );
    let status = bridge.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "{}", bridge.output());
    let error = bridge
        .stderr_lines()
        .into_iter()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {}", bridge.output()));
    assert!(error.contains("4014"), "{error}");
    assert!(error.contains("DISCORD_GATEWAY_INTENTS"), "{error}");
    assert_eq!(stack.sim.identifies()[0].outcome, Outcome::Closed(4014));
}

/// The real binary with a wrong token and `DISCORD_GATEWAY_URL`: Discord's
/// 4004 ends it with exit code 1 naming DISCORD_BOT_TOKEN.
#[tokio::test]
async fn binary_exits_1_on_4004() {
    const WRONG: &str = "wrong-token-binary-4004-abcdef";
    let stack = Stack::start_idle(StackOptions::default()).await;
    let gateway = stack.sim.gateway_url();
    let mut bridge = stack.spawn_binary(
        &["run"],
        &[
            ("DISCORD_BOT_TOKEN", WRONG),
            ("DISCORD_GATEWAY_URL", gateway.as_str()),
        ],
    );
    let status = bridge.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "{}", bridge.output());
    let output = bridge.output();
    let error = bridge
        .stderr_lines()
        .into_iter()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {output}"));
    assert!(error.contains("4004"), "{error}");
    assert!(error.contains("DISCORD_BOT_TOKEN"), "{error}");
    assert!(
        !output.contains(WRONG),
        "the output repeats the token: {output}"
    );
    assert_eq!(stack.sim.gateway_bot_requests(), 0);
    assert_eq!(stack.sim.identifies()[0].outcome, Outcome::Closed(4004));
}
