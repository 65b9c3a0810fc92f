//! `GET /gateway/bot` (the README's Gateway behaviour): server errors and rate limits are
//! retried, a refused token stops the bridge (exit 1) naming
//! DISCORD_BOT_TOKEN, and `DISCORD_GATEWAY_URL` skips the request. Gateway
//! URLs that are not `wss://` on discord.gg are refused unless
//! `allow_insecure_gateway` is set (the README's Configuration).

use std::time::Duration;

use discord_bridge::RunError;
use discord_bridge::error::DiscoveryError;
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT};
use discord_gateway_sim::{Endpoint, HttpFault};

#[tokio::test]
async fn gateway_bot_failures_are_retried() {
    let mut stack = Stack::start_idle(StackOptions::default()).await;
    stack.sim.fail_gateway_bot(1, HttpFault::status(500));
    stack.sim.fail_gateway_bot(1, HttpFault::status(502));
    stack.sim.fail_gateway_bot(1, HttpFault::rate_limited(0.2));
    stack.start_bridge();
    stack.wait_session(0).await;
    assert_eq!(
        stack.sim.gateway_bot_requests(),
        4,
        "three failures, then the answer"
    );
    let statuses: Vec<u16> = stack
        .sim
        .read(|s| s.http.iter().map(|r| r.status).collect());
    assert_eq!(statuses, [500, 502, 429, 200]);
    stack.guild_message("discovered");
    stack.wait_contents(&["discovered"]).await;
    assert!(!stack.bridge_finished());
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn refused_token_at_gateway_bot_exits_1_naming_the_setting() {
    const WRONG: &str = "wrong-token-401-discovery-zyx";
    let stack = Stack::start_idle(StackOptions::default()).await;
    let mut bridge = stack.spawn_binary(&[], &[("DISCORD_BOT_TOKEN", WRONG)]);
    let status = bridge.wait_exit(Duration::from_secs(20)).await;
    let output = bridge.output();
    assert_eq!(status.code(), Some(1), "{output}");
    let error = bridge
        .stderr_lines()
        .into_iter()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {output}"));
    assert!(error.contains("DISCORD_BOT_TOKEN"), "{error}");
    assert!(error.contains("401"), "{error}");
    assert!(
        !output.contains(WRONG),
        "the output repeats the token: {output}"
    );
    assert_eq!(stack.sim.gateway_bot_requests(), 1, "a 401 is not retried");
    let http = stack
        .sim
        .read(|s| s.http.iter().cloned().collect::<Vec<_>>());
    assert!(!http[0].authorized);
    assert!(stack.sim.connections().is_empty(), "no gateway connection");
}

#[tokio::test]
async fn fixed_gateway_url_skips_gateway_bot() {
    let mut stack = Stack::start_idle(StackOptions::default()).await;
    stack.config.discord.gateway_url = Some(stack.sim.gateway_url());
    stack.start_bridge();
    stack.wait_session(0).await;
    stack.guild_message("no discovery");
    stack.wait_contents(&["no discovery"]).await;
    assert_eq!(stack.sim.gateway_bot_requests(), 0);
    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].endpoint, Endpoint::Gateway);
    // Resuming still goes to READY's resume URL.
    assert!(stack.sim.reconnect(0));
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    let conns = stack.sim.connections();
    let conn = conns.iter().find(|c| c.id == resume.conn).unwrap();
    assert_eq!(conn.endpoint, Endpoint::Resume);
    assert_eq!(stack.sim.gateway_bot_requests(), 0);
}

/// The real binary: a `ws://` gateway URL without the insecure switch is a
/// configuration error (exit 2) naming the settings, before any connection.
#[tokio::test]
async fn insecure_gateway_url_is_refused() {
    let stack = Stack::start_idle(StackOptions::default()).await;
    let gateway = stack.sim.gateway_url();
    assert!(gateway.starts_with("ws://"), "{gateway}");
    let mut bridge = stack.spawn_binary(
        &[],
        &[
            ("DISCORD_GATEWAY_URL", gateway.as_str()),
            ("DISCORD_ALLOW_INSECURE_GATEWAY", "false"),
        ],
    );
    let status = bridge.wait_exit(Duration::from_secs(20)).await;
    let output = bridge.output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("DISCORD_GATEWAY_URL"), "{output}");
    assert!(
        output.contains("DISCORD_ALLOW_INSECURE_GATEWAY")
            || output.contains("allow_insecure_gateway"),
        "{output}"
    );
    assert!(stack.sim.connections().is_empty());
    assert_eq!(stack.sim.gateway_bot_requests(), 0);
}

/// `GET /gateway/bot` answering with a `ws://` URL is refused the same way
/// when the insecure switch is off: the token is never sent there.
#[tokio::test]
async fn insecure_url_from_gateway_bot_is_refused() {
    let mut stack = Stack::start_idle(StackOptions::with(|c| {
        c.discord.allow_insecure_gateway = false;
    }))
    .await;
    stack.start_bridge();
    let error = stack.join_bridge(WAIT).await.expect_err("refused");
    assert!(
        matches!(
            error,
            RunError::Discovery(DiscoveryError::UnusableGatewayUrl { .. })
        ),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 2);
    assert!(
        error.to_string().contains("allow_insecure_gateway"),
        "{error}"
    );
    assert!(stack.sim.connections().is_empty(), "no gateway connection");
}
