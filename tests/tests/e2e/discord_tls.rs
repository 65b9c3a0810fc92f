//! Discord over real TLS (the README's TLS and authentication): the
//! simulator serves `https://` and `wss://` with a certificate signed by a
//! CA made for the test, and the bridge trusts it through `discord.tls_ca`.
//! Discovery, the gateway and a RESUME at READY's `resume_gateway_url` all
//! run over rustls, with no event lost. Without the setting, the unknown
//! certificate stops the bridge (exit 2) with an error naming
//! `discord.api_base` and `discord.tls_ca`; a refused gateway certificate
//! is retried, each warning naming the setting.
//!
//! `allow_insecure_gateway` stays on: the simulator's host is 127.0.0.1, not
//! discord.gg, and TLS does not lift the host rule.

use std::time::Duration;

use discord_bridge_e2e::stack::{Stack, StackOptions, test_sim_config};
use discord_bridge_e2e::tls::TestCa;
use discord_gateway_sim::{Endpoint, Outcome, SimConfig, SimTls};

/// A stack whose simulator speaks TLS; the CA's directory lives as long.
async fn tls_stack(trust: bool) -> (Stack, TestCa, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(dir.path(), "discord");
    let cert = ca.server_cert("sim");
    let ca_file = ca.cert.clone();
    let stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            tls: Some(SimTls {
                cert_pem: cert.cert_pem,
                key_pem: cert.key_pem,
            }),
            ..test_sim_config()
        },
        tweak: Box::new(move |c| {
            if trust {
                c.discord.tls_ca = Some(ca_file);
            }
        }),
        ..StackOptions::default()
    })
    .await;
    (stack, ca, dir)
}

#[tokio::test]
async fn discovery_gateway_and_resume_over_tls() {
    let (mut stack, _ca, _dir) = tls_stack(true).await;
    assert!(stack.sim.api_base().starts_with("https://"));
    assert!(stack.sim.gateway_url().starts_with("wss://"));
    assert!(stack.sim.resume_url().starts_with("wss://"));
    stack.start_bridge();
    let session = stack.wait_session(0).await;
    assert_eq!(
        stack.sim.gateway_bot_requests(),
        1,
        "GET /gateway/bot over https"
    );
    stack.guild_message("before");
    stack.wait_contents(&["before"]).await;

    assert!(stack.sim.reconnect(0), "op 7 to the live connection");
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session);
    assert!(
        matches!(resume.outcome, Outcome::Resumed { .. }),
        "{resume:?}"
    );
    let conns = stack.sim.connections();
    let endpoints: Vec<Endpoint> = conns.iter().map(|c| c.endpoint).collect();
    assert_eq!(endpoints, [Endpoint::Gateway, Endpoint::Resume]);
    stack.wait_session(0).await;
    stack.guild_message("after");
    stack.wait_contents(&["before", "after"]).await;
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
    stack.stop_bridge().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unknown_certificate_stops_discovery_naming_the_settings() {
    let (stack, ca, _dir) = tls_stack(false).await;
    let mut bridge = stack.spawn_binary(&[], &[]);
    let status = bridge.wait_exit(Duration::from_secs(30)).await;
    let output = bridge.output();
    assert_eq!(status.code(), Some(2), "{output}");
    let error = bridge
        .stderr_lines()
        .into_iter()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{output}"));
    for needle in [
        "certificate",
        "discord.api_base",
        "discord.tls_ca",
        "DISCORD_TLS_CA",
    ] {
        assert!(error.contains(needle), "{needle:?} missing from {error}");
    }
    assert_eq!(
        stack.sim.gateway_bot_requests(),
        0,
        "no request got through"
    );
    assert!(stack.sim.connections().is_empty());

    // A fixed gateway URL skips discovery: the refused wss:// handshake is
    // retried, each warning naming the setting.
    let gateway = stack.sim.gateway_url();
    // (Core mode: no shard lease is left behind for the next run to wait out.)
    let mut retrying = stack.spawn_binary(
        &[],
        &[
            ("DISCORD_GATEWAY_URL", &gateway),
            ("BRIDGE_PUBLISH_MODE", "core"),
        ],
    );
    let line = retrying
        .wait_for_stderr("DISCORD_TLS_CA", Duration::from_secs(20))
        .await;
    assert!(
        line.contains("certificate") || line.contains("UnknownIssuer"),
        "{line}"
    );
    assert!(
        retrying.try_exit().is_none(),
        "still retrying:\n{}",
        retrying.output()
    );
    drop(retrying);
    assert!(
        stack.sim.connections().is_empty(),
        "no WebSocket got through"
    );

    // The same binary with the setting gets its session.
    let ca_file = ca.cert.display().to_string();
    let _bridge = stack.spawn_binary(&[], &[("DISCORD_TLS_CA", &ca_file)]);
    stack.wait_session(0).await;
    stack.guild_message("trusted");
    stack.wait_contents(&["trusted"]).await;
}
