//! `discord-bridge demo` end to end, as a user runs it: the real binary, no
//! NATS running (the demo starts its own), a bounded duration.

use std::time::Duration;

use discord_bridge_e2e::nats::nats_server_bin;
use discord_bridge_e2e::process::{ChildProcess, bridge_command};

/// Processes whose command line mentions the demo's temporary store.
fn demo_nats_servers() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("discord-bridge-demo-"))
        .collect()
}

#[tokio::test]
async fn demo_shows_messages_interactions_and_a_resume_then_stops_cleanly() {
    // A port nothing listens on: the demo must start its own nats-server.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = bridge_command();
    cmd.args(["demo", "--duration", "12"])
        .env("NATS_URL", format!("nats://127.0.0.1:{unused}"))
        .env("NATS_SERVER_BIN", nats_server_bin());
    let mut demo = ChildProcess::spawn(&mut cmd);
    let status = demo.wait_exit(Duration::from_secs(90)).await;
    let out = demo.stdout_lines();
    let text = out.join("\n");
    assert!(status.success(), "exit {status:?}\n{}", demo.output());
    assert!(text.contains("(started for this demo)"), "{text}");
    assert!(
        out.iter()
            .any(|l| l.starts_with("message ") && l.contains("guild")),
        "{text}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("message ") && l.contains(" DM ")),
        "{text}"
    );
    assert!(out.iter().any(|l| l.starts_with("interaction ")), "{text}");
    assert!(
        out.iter()
            .any(|l| l.contains("connected") && l.contains("READY")),
        "{text}"
    );
    assert!(
        out.iter().any(|l| l.contains("resuming")),
        "the opening op 7 shows a RESUME: {text}"
    );
    assert!(out.iter().any(|l| l.contains("RESUMED")), "{text}");
    assert!(
        !text.contains("On it! Here is what I found."),
        "the bot's own message is filtered: {text}"
    );

    // The summary's counts agree: everything relayable arrived.
    let summary = out
        .iter()
        .find(|l| l.starts_with("demo: Discord sent"))
        .expect("a summary line");
    let sent: u64 = summary["demo: Discord sent ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    let received: u64 = summary
        .rsplit("the capsule received ")
        .next()
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(sent >= 3, "{summary}");
    assert_eq!(received, sent, "{summary}");
    let agent_lines = out
        .iter()
        .filter(|l| l.starts_with("message ") || l.starts_with("interaction "))
        .count();
    assert_eq!(u64::try_from(agent_lines).expect("count"), received);

    assert!(
        demo_nats_servers().is_empty(),
        "the demo's nats-server is gone: {:?}",
        demo_nats_servers()
    );
}
