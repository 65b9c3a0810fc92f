//! A NATS URL the bridge cannot reach never hangs silently (the README's TLS
//! and authentication): nothing listening, a listener speaking another
//! protocol (`ws://` to the client port, `nats://` to a WebSocket port) and
//! a name that does not resolve are each logged with the URL within a few
//! seconds and retried, and the bridge connects once a server appears.
//! Credentials in a URL are refused at load time, without repeating them.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use discord_bridge_e2e::NatsServer;
use discord_bridge_e2e::jetstream::wait_for_messages;
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT, contents};

use crate::secrets::assert_clean;

/// How soon the first "cannot reach" line must appear: one connection
/// timeout (5 s) for a listener that never answers, plus slack.
const FIRST_WARNING: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

#[tokio::test]
async fn unreachable_urls_are_logged_retried_and_then_connect() {
    let stack = Stack::start_idle(StackOptions {
        nats: NatsServer::builder().websocket(),
        ..StackOptions::default()
    })
    .await;
    let later = free_port();
    let nothing = format!("nats://127.0.0.1:{later}");
    let wrong_for_client_port = format!("ws://127.0.0.1:{}", stack.nats.port());
    let wrong_for_ws_port = stack.nats.ws_url().replace("ws://", "nats://");
    let unresolvable = "nats://no-such-host.invalid:4222".to_owned();
    let mut bridges = Vec::new();
    for url in [
        &nothing,
        &wrong_for_client_port,
        &wrong_for_ws_port,
        &unresolvable,
    ] {
        let bridge = stack.spawn_binary(&[], &[("NATS_URL", url)]);
        bridges.push((url.clone(), bridge));
    }
    for (url, bridge) in &bridges {
        let line = bridge
            .wait_for_stderr("cannot reach NATS", FIRST_WARNING)
            .await;
        assert!(
            line.contains(url.as_str()),
            "{url}: the warning names it: {line}"
        );
        assert!(line.contains("WARN"), "{url}: at warn level: {line}");
    }
    for (url, bridge) in &mut bridges[1..] {
        assert!(
            bridge.try_exit().is_none(),
            "{url}: still retrying:\n{}",
            bridge.output()
        );
    }

    // A server appears where nothing listened: the first bridge connects
    // and relays into it.
    let late = NatsServer::builder().port(later).start().await;
    let (_, first) = &bridges[0];
    first.wait_for_stderr("connected to NATS", WAIT).await;
    stack.wait_session(0).await;
    stack.guild_message("after the server appeared");
    let js = late.jetstream().await;
    let stored = wait_for_messages(&js, &stack.config.nats.stream, 1, WAIT).await;
    assert_eq!(contents(&stored), ["after the server appeared"]);
}

#[tokio::test]
async fn credentials_in_a_url_are_refused_unrepeated() {
    const PASSWORD: &str = "Url-Pa55-Distinctive-d41c";
    let stack = Stack::start_idle(StackOptions::default()).await;
    let url = format!("nats://bob:{PASSWORD}@127.0.0.1:{}", stack.nats.port());
    let mut bridge = stack.spawn_binary(&[], &[("NATS_URL", &url)]);
    let status = bridge.wait_exit(Duration::from_secs(20)).await;
    let output = bridge.output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("nats.url"), "{output}");
    assert!(output.contains("<redacted>@127.0.0.1"), "{output}");
    assert_clean("a URL with a password", &output, &[PASSWORD]);
}
