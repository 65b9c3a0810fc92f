//! Secrets never leak (the README's Configuration): the bot token and the NATS password or
//! token appear in no output of the real binary — logs at `RUST_LOG=trace`
//! through a whole session with a reconnect and a shutdown, errors,
//! `check-config` — nor in status events or stored events, not even in
//! base64.

use std::time::Duration;

use discord_bridge_e2e::stack::{Stack, StackOptions, contents, test_sim_config};
use discord_bridge_e2e::{ChildProcess, NatsServer, Signal};
use discord_bridge_schemas::ShardState;
use discord_gateway_sim::{Outcome, SimConfig};

/// A token shaped like Discord's (three dot-separated parts), and unlike
/// anything else in the output.
const BOT_TOKEN: &str = "MTE0NDA2MDkyNDM0MzY3Mjg5Mw.GQx7Zk.Distinctive_b0t-T0ken_4q9w";
const NATS_USER: &str = "bridge-user";
const NATS_PASSWORD: &str = "nats-Pa55word-Distinctive-7c1e";
const NATS_TOKEN: &str = "nats-T0ken-Distinctive-52ab";

/// Standard base64 (RFC 4648 §4) with padding; the e2e crate has no base64
/// dependency.
fn base64(data: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The forms in which `secret` must not appear: itself, and base64 (standard
/// and URL-safe, without the padding so that any encoding of it matches).
fn forms(secret: &str) -> Vec<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut forms = vec![secret.to_owned()];
    for alphabet in [STD, URL] {
        let encoded = base64(secret.as_bytes(), alphabet);
        forms.push(encoded.trim_end_matches('=').to_owned());
    }
    forms
}

/// Panics if any secret, in any form, is in `text`; `what` names the text.
pub(crate) fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{what} contains a secret (as {form:?}):\n{text}"
            );
        }
    }
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes(), STD), encoded);
    }
}

fn secret_sim() -> SimConfig {
    SimConfig {
        token: BOT_TOKEN.to_owned(),
        ..test_sim_config()
    }
}

/// A whole session of the real binary at trace level: start, events, a
/// RESUME (which sends the token again), a server heartbeat request, and
/// SIGTERM. Then `check-config` with the same settings.
#[tokio::test]
async fn no_secret_in_logs_statuses_or_check_config() {
    let stack = Stack::start_idle(StackOptions {
        sim: secret_sim(),
        nats: NatsServer::builder().user_password(NATS_USER, NATS_PASSWORD),
        ..StackOptions::default()
    })
    .await;
    let env = [("RUST_LOG", "trace")];
    let mut bridge = stack.spawn_binary(&[], &env);
    let session = stack.wait_session(0).await;
    stack.guild_message("before");
    stack.wait_contents(&["before"]).await;
    assert!(stack.sim.reconnect(0));
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session);
    assert!(matches!(resume.outcome, Outcome::Resumed { .. }));
    stack.wait_session(0).await;
    assert!(stack.sim.request_heartbeat(0));
    stack.guild_message("after");
    let stored = stack.wait_contents(&["before", "after"]).await;
    bridge.signal(Signal::Term);
    let status = bridge.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", bridge.output());
    stack
        .wait_status("shutting_down", |e| e.state == ShardState::ShuttingDown)
        .await;

    let secrets = [BOT_TOKEN, NATS_PASSWORD];
    let output = bridge.output();
    assert!(
        output.contains("TRACE") || output.contains("DEBUG"),
        "RUST_LOG=trace is in effect:\n{output}"
    );
    assert_clean("the bridge's output", &output, &secrets);
    let statuses = serde_json::to_string(&stack.statuses()).unwrap();
    assert_clean("the status events", &statuses, &secrets);
    for m in &stored {
        let text = format!("{:?} {}", m.headers, String::from_utf8_lossy(&m.payload));
        assert_clean("a stored event", &text, &secrets);
    }
    assert_eq!(contents(&stored), ["before", "after"]);

    let mut check = stack.spawn_binary(&["check-config"], &env);
    let status = check.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", check.output());
    let output = check.output();
    assert!(output.contains("DISCORD_BOT_TOKEN"), "{output}");
    assert!(output.contains("NATS_PASSWORD"), "{output}");
    assert_clean("check-config", &output, &secrets);
}

/// `check-config` with a NATS token (one authentication method at a time;
/// the user and password case is covered above).
#[tokio::test]
async fn check_config_redacts_the_nats_token() {
    let stack = Stack::start_idle(StackOptions {
        sim: secret_sim(),
        nats: NatsServer::builder().token(NATS_TOKEN),
        ..StackOptions::default()
    })
    .await;
    let mut check = stack.spawn_binary(&["check-config"], &[("RUST_LOG", "trace")]);
    let status = check.wait_exit(Duration::from_secs(10)).await;
    let output = check.output();
    assert!(status.success(), "{output}");
    for key in ["DISCORD_BOT_TOKEN", "NATS_TOKEN"] {
        assert!(output.contains(key), "{key} is listed:\n{output}");
    }
    assert_clean("check-config", &output, &[BOT_TOKEN, NATS_TOKEN]);

    // An invalid configuration lists its problems, still without secrets.
    let mut check = stack.spawn_binary(
        &["check-config"],
        &[("NATS_USER", NATS_USER), ("NATS_PASSWORD", NATS_PASSWORD)],
    );
    let status = check.wait_exit(Duration::from_secs(10)).await;
    let output = check.output();
    assert_eq!(
        status.code(),
        Some(2),
        "two authentication methods: {output}"
    );
    assert_clean(
        "check-config errors",
        &output,
        &[BOT_TOKEN, NATS_TOKEN, NATS_PASSWORD],
    );
}

/// Errors caused by a secret being wrong do not repeat it: a bot token
/// Discord refuses, NATS credentials the server refuses.
#[tokio::test]
async fn errors_about_wrong_secrets_do_not_repeat_them() {
    const WRONG_TOKEN: &str = "MTE0NDA2MDkyNDM0MzY3Mjg5Mw.Wr0ng.Distinctive_wrong-t0ken";
    const WRONG_PASSWORD: &str = "nats-Wr0ng-Distinctive-99aa";
    let stack = Stack::start_idle(StackOptions {
        sim: secret_sim(),
        nats: NatsServer::builder().user_password(NATS_USER, NATS_PASSWORD),
        ..StackOptions::default()
    })
    .await;
    let mut outputs: Vec<(ChildProcess, &str)> = Vec::new();
    outputs.push((
        stack.spawn_binary(
            &[],
            &[("DISCORD_BOT_TOKEN", WRONG_TOKEN), ("RUST_LOG", "trace")],
        ),
        "a refused bot token",
    ));
    outputs.push((
        stack.spawn_binary(
            &[],
            &[("NATS_PASSWORD", WRONG_PASSWORD), ("RUST_LOG", "trace")],
        ),
        "a refused NATS password",
    ));
    for (bridge, what) in &mut outputs {
        let status = bridge.wait_exit(Duration::from_secs(20)).await;
        let output = bridge.output();
        assert!(
            matches!(status.code(), Some(1 | 2)),
            "{what}: exits with an error:\n{output}"
        );
        assert!(output.contains("error:"), "{what}:\n{output}");
        assert_clean(
            what,
            &output,
            &[WRONG_TOKEN, WRONG_PASSWORD, BOT_TOKEN, NATS_PASSWORD],
        );
    }
}
