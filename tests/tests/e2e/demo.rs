//! `discord-bridge demo` end to end, as a user runs it: the real binary, no
//! NATS running (the demo starts its own), stopped by `--duration` or by
//! Ctrl-C.

use std::time::Duration;

use discord_bridge_e2e::Signal;
use discord_bridge_e2e::nats::nats_server_bin;
use discord_bridge_e2e::process::{ChildProcess, bridge_command};

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
    demo.wait_for_stdout("(started for this demo)", Duration::from_secs(60))
        .await;
    let server = demo_server(&demo);
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

    assert_gone(server);
}

/// The pids of the processes whose parent is `parent`, with their command
/// lines (from `/proc`).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces, so split
            // after its closing parenthesis.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            (ppid == parent).then(|| (pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

/// The pid of the nats-server the demo started (its child: other demos
/// may run on the same machine at the same time).
fn demo_server(demo: &ChildProcess) -> u32 {
    children_of(demo.pid())
        .into_iter()
        .find(|(_, cmd)| cmd.contains("discord-bridge-demo-"))
        .map(|(pid, _)| pid)
        .unwrap_or_else(|| panic!("the demo runs its own nats-server:\n{}", demo.output()))
}

/// `pid` is gone, or dead and not yet reaped by whoever inherited it.
fn assert_gone(pid: u32) {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_owned()));
    assert!(
        matches!(state.as_deref(), None | Some("Z" | "X")),
        "the demo's nats-server (pid {pid}) is still running ({state:?})"
    );
}

/// Ctrl-C in a terminal signals the whole foreground process group: the
/// demo and the nats-server it started must not both get it, or the bridge
/// and the adapter shut down against a dead server. The demo ends cleanly
/// (exit 0, no warning), its server last.
#[tokio::test]
async fn ctrl_c_to_the_process_group_stops_the_demo_cleanly_and_its_server_last() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = bridge_command();
    cmd.args(["demo"])
        .env("NATS_URL", format!("nats://127.0.0.1:{unused}"))
        .env("NATS_SERVER_BIN", nats_server_bin());
    // ChildProcess::spawn puts the demo in a group of its own, as a shell
    // does for a foreground job.
    let mut demo = ChildProcess::spawn(&mut cmd);
    demo.wait_for_stdout("RESUMED", Duration::from_secs(60))
        .await;
    let server = demo_server(&demo);

    let asked = std::time::Instant::now();
    demo.signal_group(Signal::Int);
    // A generous ceiling, only to catch a hang; the time is reported.
    let status = demo.wait_exit(Duration::from_secs(10)).await;
    let took = asked.elapsed();
    eprintln!("the demo stopped {took:?} after Ctrl-C");
    let output = demo.output();
    assert_eq!(status.code(), Some(0), "{output}");
    let noisy: Vec<String> = demo
        .stderr_lines()
        .into_iter()
        .chain(demo.stdout_lines())
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("error:"))
        .collect();
    assert!(noisy.is_empty(), "warnings on Ctrl-C: {noisy:#?}\n{output}");
    assert!(
        demo.stdout_lines()
            .iter()
            .any(|l| l.starts_with("demo: Discord sent")),
        "the summary is printed: {output}"
    );
    assert_gone(server);
}
