//! `log.format = "json"` on the real binary (the README's Configuration):
//! at `RUST_LOG=trace`, through a session, a reconnect and a shutdown,
//! every stderr line is one JSON object, a shard's lines carry the shard
//! and connection spans, and no secret appears, in the logs or in the
//! metrics the same process serves. A bad `log.format` is a configuration
//! error with a suggestion.

use std::time::Duration;

use discord_bridge_e2e::scrape::{self, free_port};
use discord_bridge_e2e::stack::{Stack, StackOptions, test_sim_config};
use discord_bridge_e2e::{NatsServer, Signal};
use discord_gateway_sim::SimConfig;
use serde_json::Value;

use crate::secrets::assert_clean;

const BOT_TOKEN: &str = "MTE0NDA2MDkyNDM0MzY3Mjg5Mw.GQx7Zk.JsonLogs_b0t-T0ken_5m1q";
const NATS_USER: &str = "bridge-user";
const NATS_PASSWORD: &str = "nats-Pa55word-JsonLogs-8b2e";

/// The span named `name` among a line's spans.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

#[tokio::test]
async fn json_logs_at_trace_carry_shard_spans_and_no_secret() {
    let stack = Stack::start_idle(StackOptions {
        sim: SimConfig {
            token: BOT_TOKEN.to_owned(),
            ..test_sim_config()
        },
        nats: NatsServer::builder().user_password(NATS_USER, NATS_PASSWORD),
        ..StackOptions::default()
    })
    .await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut bridge = stack.spawn_binary(
        &[],
        &[
            ("BRIDGE_LOG_FORMAT", "json"),
            ("RUST_LOG", "trace"),
            ("BRIDGE_HTTP_LISTEN", &listen),
        ],
    );
    let session = stack.wait_session(0).await;
    stack.guild_message("before");
    stack.wait_contents(&["before"]).await;
    assert!(stack.sim.reconnect(0));
    stack
        .wait_sim(|s| s.resumes.first().map(|r| r.session_id.clone()))
        .await;
    stack.wait_session(0).await;
    stack.guild_message("after");
    stack.wait_contents(&["before", "after"]).await;
    let metrics = scrape::metrics(&format!("http://{listen}")).await;
    assert_eq!(
        metrics.expect("discord_bridge_shard_up", &[("shard", "0")]),
        1.0
    );
    bridge.signal(Signal::Term);
    let status = bridge.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", bridge.output());

    let lines: Vec<Value> = bridge
        .stderr_lines()
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
        })
        .collect();
    assert!(lines.len() > 10, "{}", bridge.output());
    for line in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
        assert!(line["fields"].is_object(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l["level"] == "TRACE"),
        "RUST_LOG=trace is in effect"
    );
    // The shard's lines name the shard and the connection, as spans.
    let ready = lines
        .iter()
        .find(|l| l["fields"]["message"] == "gateway session ready")
        .expect("a 'gateway session ready' line");
    assert_eq!(
        span(ready, "shard").map(|s| &s["shard"]),
        Some(&Value::from("0/1"))
    );
    assert!(
        span(ready, "conn").is_some_and(|c| c["n"].is_u64()),
        "{ready}"
    );
    assert_eq!(ready["span"]["name"], "conn", "the innermost span: {ready}");
    let in_a_connection: Vec<&Value> = lines.iter().filter(|l| span(l, "conn").is_some()).collect();
    assert!(in_a_connection.len() > 2);
    for line in in_a_connection {
        assert!(
            span(line, "shard").is_some(),
            "a connection's line names its shard: {line}"
        );
    }
    let serving = lines
        .iter()
        .find(|l| l["fields"]["message"] == "serving /metrics, /healthz and /readyz")
        .expect("the endpoint's address is logged");
    assert_eq!(serving["fields"]["address"], listen.as_str());

    let secrets = [BOT_TOKEN, NATS_PASSWORD];
    assert_clean("the JSON logs", &bridge.output(), &secrets);
    assert_clean(
        "/metrics",
        &metrics.text,
        &[BOT_TOKEN, NATS_PASSWORD, &session],
    );
}

#[tokio::test]
async fn a_bad_log_format_is_a_configuration_error_with_a_suggestion() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = discord_bridge_e2e::bridge_command();
    command
        .current_dir(dir.path())
        .args(["check-config"])
        .env("BRIDGE_LOG_FORMAT", "jsno");
    let mut check = discord_bridge_e2e::ChildProcess::spawn(&mut command);
    let status = check.wait_exit(Duration::from_secs(10)).await;
    let output = check.output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("log.format (BRIDGE_LOG_FORMAT): \"jsno\" is not a log format: use text or json (did you mean json?)"),
        "{output}"
    );
}
