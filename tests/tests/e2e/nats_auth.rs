//! Every NATS authentication and TLS option (the README's TLS and
//! authentication), each against a real `nats-server` configured to demand
//! it: the bridge runs (`run`, in process) and an event goes from the
//! simulator into JetStream; then the same option, wrong, makes the real
//! binary exit 2 with an error naming the problem and the setting, and
//! without the secret in any form.
//!
//! Servers are shared where nats-server allows it: password and nkey users
//! in one `users` list; token with a plain WebSocket listener; TLS with a TLS
//! WebSocket listener.

use std::time::Duration;

use discord_bridge_e2e::NatsServer;
use discord_bridge_e2e::nats::jwt::Operator;
use discord_bridge_e2e::stack::{Stack, StackOptions};
use discord_bridge_e2e::tls::TestCa;

use crate::secrets::assert_clean;

/// Stores `content` through the running bridge and checks the stream holds
/// `so_far` (earlier runs' events) then it.
async fn relays(stack: &Stack, so_far: &mut Vec<&'static str>, content: &'static str) {
    stack.wait_session(0).await;
    stack.guild_message(content);
    so_far.push(content);
    stack.wait_contents(so_far).await;
}

/// Restarts the in-process bridge with a changed NATS configuration.
async fn rerun(stack: &mut Stack, change: impl FnOnce(&mut discord_bridge::config::NatsConfig)) {
    stack.stop_bridge().await.expect("clean shutdown");
    change(&mut stack.config.nats);
    stack.start_bridge();
}

/// The binary with `extra` settings exits 2; its error line says each of
/// `expected`, and no output contains any of `secrets`.
async fn refused(
    stack: &Stack,
    what: &str,
    extra: &[(&str, &str)],
    expected: &[&str],
    secrets: &[&str],
) {
    let mut bridge = stack.spawn_binary(&[], extra);
    let status = bridge.wait_exit(Duration::from_secs(30)).await;
    let output = bridge.output();
    assert_eq!(status.code(), Some(2), "{what}: exit code:\n{output}");
    let error = bridge
        .stderr_lines()
        .into_iter()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{what}: no error line:\n{output}"));
    for needle in expected {
        assert!(
            error.contains(needle),
            "{what}: {needle:?} missing from {error}"
        );
    }
    assert_clean(what, &output, secrets);
}

#[tokio::test]
async fn password_and_nkey_users() {
    const PASSWORD: &str = "Pa55-users-Distinctive-31f0";
    const WRONG_PASSWORD: &str = "Wr0ng-users-Distinctive-9a2e";
    let nkey = nkeys::KeyPair::new_user().seed().unwrap();
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let mut stack = Stack::start_with(StackOptions {
        nats: NatsServer::builder()
            .user_password("bridge", PASSWORD)
            .nkey_user(&nkey),
        ..StackOptions::default()
    })
    .await;
    let mut stored = Vec::new();
    relays(&stack, &mut stored, "with a password").await;
    let seed = nkey.clone();
    rerun(&mut stack, move |n| {
        n.user = None;
        n.password = None;
        n.nkey_seed = Some(discord_bridge::secret::Secret::new(seed));
    })
    .await;
    relays(&stack, &mut stored, "with an nkey").await;

    let secrets = [PASSWORD, WRONG_PASSWORD, nkey.as_str(), stranger.as_str()];
    refused(
        &stack,
        "a wrong password",
        &[("NATS_PASSWORD", WRONG_PASSWORD)],
        &["refused", "nats.password", "authorization violation"],
        &secrets,
    )
    .await;
    refused(
        &stack,
        "an nkey the server does not list",
        &[
            ("NATS_USER", ""),
            ("NATS_PASSWORD", ""),
            ("NATS_NKEY_SEED", &stranger),
        ],
        &["refused", "nats.nkey_seed", "NATS_NKEY_SEED"],
        &secrets,
    )
    .await;
    refused(
        &stack,
        "no credentials",
        &[("NATS_USER", ""), ("NATS_PASSWORD", "")],
        &["refused", "without credentials", "NATS_TOKEN"],
        &secrets,
    )
    .await;
}

#[tokio::test]
async fn token_over_nats_and_websocket() {
    const TOKEN: &str = "T0ken-ws-Distinctive-77c1";
    const WRONG: &str = "Wr0ng-t0ken-Distinctive-0b3d";
    let mut stack = Stack::start_with(StackOptions {
        nats: NatsServer::builder().token(TOKEN).websocket(),
        ..StackOptions::default()
    })
    .await;
    let mut stored = Vec::new();
    relays(&stack, &mut stored, "over nats://").await;
    let ws = stack.nats.ws_url();
    assert!(ws.starts_with("ws://"), "{ws}");
    rerun(&mut stack, move |n| n.urls = vec![ws]).await;
    relays(&stack, &mut stored, "over ws://").await;

    let ws = stack.nats.ws_url();
    for (what, url) in [
        ("a wrong token", stack.nats.url()),
        ("a wrong token over ws://", ws),
    ] {
        refused(
            &stack,
            what,
            &[("NATS_URL", &url), ("NATS_TOKEN", WRONG)],
            &["refused", "nats.token", "NATS_TOKEN"],
            &[TOKEN, WRONG],
        )
        .await;
    }
}

#[tokio::test]
async fn server_tls_with_a_ca_over_tls_nats_and_wss() {
    let mut stack = Stack::start_with(StackOptions {
        nats: NatsServer::builder().tls().websocket(),
        ..StackOptions::default()
    })
    .await;
    let mut stored = Vec::new();
    // nats:// upgrades because the server's INFO demands TLS.
    relays(&stack, &mut stored, "over nats:// upgraded").await;
    let tls = stack.nats.tls_url();
    rerun(&mut stack, move |n| n.urls = vec![tls]).await;
    relays(&stack, &mut stored, "over tls://").await;
    let wss = stack.nats.ws_url();
    assert!(wss.starts_with("wss://"), "{wss}");
    rerun(&mut stack, move |n| n.urls = vec![wss]).await;
    relays(&stack, &mut stored, "over wss://").await;

    let other = TestCa::new(stack.nats.dir(), "other");
    let other_ca = other.cert.display().to_string();
    let tls = stack.nats.tls_url();
    let wss = stack.nats.ws_url();
    refused(
        &stack,
        "no CA for tls://",
        &[("NATS_URL", &tls), ("NATS_CA", "")],
        &["TLS", "certificate", "nats.tls_ca", "NATS_CA"],
        &[],
    )
    .await;
    refused(
        &stack,
        "another CA for wss://",
        &[("NATS_URL", &wss), ("NATS_CA", &other_ca)],
        &["TLS", "certificate", "nats.tls_ca", "NATS_CA"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn mutual_tls() {
    let stack = Stack::start_with(StackOptions {
        nats: NatsServer::builder().mutual_tls(),
        ..StackOptions::default()
    })
    .await;
    let mut stored = Vec::new();
    relays(&stack, &mut stored, "with a client certificate").await;

    let other = TestCa::new(stack.nats.dir(), "other");
    let stranger = other.client_cert("stranger");
    let (cert, key) = (
        stranger.cert.display().to_string(),
        stranger.key.display().to_string(),
    );
    refused(
        &stack,
        "no client certificate",
        &[("NATS_CERT", ""), ("NATS_KEY", "")],
        &["TLS", "nats.tls_cert", "NATS_CERT"],
        &[],
    )
    .await;
    refused(
        &stack,
        "a client certificate of another CA",
        &[("NATS_CERT", &cert), ("NATS_KEY", &key)],
        &["TLS", "nats.tls_cert", "NATS_KEY"],
        &[&stranger.key_pem],
    )
    .await;
}

/// Operator mode with a memory resolver: the account JWT enables
/// JetStream, so this runs in the default (JetStream) publish mode.
#[tokio::test]
async fn creds_file_in_operator_mode() {
    let operator = Operator::new();
    let expired = operator.user("expired", Some(-60));
    let stranger = Operator::stranger("stranger");
    let stack = Stack::start_with(StackOptions {
        nats: NatsServer::builder().operator(operator),
        ..StackOptions::default()
    })
    .await;
    let mut stored = Vec::new();
    relays(&stack, &mut stored, "with a creds file").await;

    let valid = stack
        .nats
        .creds()
        .expect("operator mode has creds")
        .seed
        .clone();
    let secrets = [
        valid.as_str(),
        expired.seed.as_str(),
        stranger.seed.as_str(),
    ];
    for (what, creds) in [
        ("expired creds", &expired),
        ("creds of an unknown account", &stranger),
    ] {
        let path = stack
            .nats
            .dir()
            .join(format!("{}.creds", what.replace(' ', "-")));
        std::fs::write(&path, &creds.text).unwrap();
        let path = path.display().to_string();
        refused(
            &stack,
            what,
            &[("NATS_CREDS", &path)],
            &["refused", "nats.creds_file", "NATS_CREDS"],
            &secrets,
        )
        .await;
    }
}
