//! Proves the end-to-end harness itself: if these fail, every other
//! end-to-end test is suspect.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use discord_bridge_e2e::jetstream::{
    header, payload_json, read_stream, stream_info, wait_for_messages,
};
use discord_bridge_e2e::{ChildProcess, NatsServer, Signal, eventually};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `pid` is a live process: a missing `/proc` entry or a zombie
/// (exited, waiting to be reaped by whoever adopted it) counts as gone.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

async fn create_events_stream(js: &jetstream::Context) -> stream::Stream {
    js.create_stream(stream::Config {
        name: "EVENTS".to_owned(),
        subjects: vec!["events.>".to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create stream EVENTS")
}

/// Publishes `payload` with a `Nats-Msg-Id` and waits for JetStream's ack.
async fn publish(
    js: &jetstream::Context,
    msg_id: &str,
    payload: &str,
) -> jetstream::publish::PublishAck {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers("events.test", headers, payload.to_owned().into())
        .await
        .expect("publish")
        .await
        .expect("publish ack")
}

#[tokio::test]
async fn server_starts_with_jetstream_on_a_free_port() {
    let mut server = NatsServer::start().await;
    assert!(server.is_running());
    assert_ne!(server.port(), 0);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert!(server.store_dir().is_dir());

    let client = server.client().await;
    assert_eq!(client.server_info().port, server.port());
    let account = jetstream::new(client)
        .query_account()
        .await
        .expect("JetStream answers account info");
    assert_eq!(account.streams, 0);
    assert!(server.log().contains("Starting JetStream"));
}

#[tokio::test]
async fn published_messages_read_back_in_order_with_headers() {
    let server = NatsServer::start().await;
    let js = server.jetstream().await;
    create_events_stream(&js).await;

    for (id, payload) in [
        ("s:1", r#"{"n":1}"#),
        ("s:2", r#"{"n":2}"#),
        ("s:3", r#"{"n":3}"#),
    ] {
        publish(&js, id, payload).await;
    }
    let duplicate = publish(&js, "s:2", r#"{"n":2}"#).await;
    assert!(duplicate.duplicate, "the same Nats-Msg-Id is de-duplicated");

    let messages = wait_for_messages(&js, "EVENTS", 3, TIMEOUT).await;
    let sequences: Vec<u64> = messages.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|m| header(m, "Nats-Msg-Id"))
        .collect();
    assert_eq!(ids, ["s:1", "s:2", "s:3"]);
    assert_eq!(payload_json(&messages[2])["n"], 3);
    assert_eq!(messages[0].subject.as_str(), "events.test");
    assert_eq!(stream_info(&js, "EVENTS").await.state.messages, 3);
}

#[tokio::test]
async fn kill9_then_restart_keeps_port_store_and_messages() {
    let mut server = NatsServer::start().await;
    let (port, store) = (server.port(), server.store_dir());
    let js = server.jetstream().await;
    create_events_stream(&js).await;
    publish(&js, "a", "one").await;
    publish(&js, "b", "two").await;

    let pid = server.pid().expect("running server has a pid");
    server.kill9();
    assert!(!server.is_running());
    assert!(!alive(pid), "kill9 reaps the process");

    server.restart().await;
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(server.store_dir(), store);

    let fresh = server.jetstream().await;
    let payloads: Vec<_> = read_stream(&fresh, "EVENTS")
        .await
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(payloads, ["one", "two"]);
    assert_eq!(publish(&fresh, "c", "three").await.sequence, 3);

    // A client from before the crash reconnects to the same URL by itself.
    eventually(TIMEOUT, "the old client to publish again", || async {
        let ack = js.publish("events.test", "four".into()).await.ok()?;
        ack.await.ok()
    })
    .await;
    assert_eq!(stream_info(&fresh, "EVENTS").await.state.messages, 4);
}

#[tokio::test]
async fn stop_then_restart_keeps_messages() {
    let mut server = NatsServer::start().await;
    let js = server.jetstream().await;
    create_events_stream(&js).await;
    publish(&js, "a", "one").await;

    server.stop().await;
    assert!(!server.is_running());
    assert!(
        server.log().contains("Server Exiting"),
        "SIGTERM shuts down gracefully"
    );

    server.restart().await;
    let messages = read_stream(&server.jetstream().await, "EVENTS").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, "one");
}

#[tokio::test]
async fn without_jetstream_jetstream_requests_fail() {
    let server = NatsServer::builder().without_jetstream().start().await;
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    js.query_account()
        .await
        .expect_err("no JetStream API on a server without -js");

    // Core NATS still works.
    let mut sub = client.subscribe("core.test").await.expect("subscribe");
    client
        .publish("core.test", "hi".into())
        .await
        .expect("publish");
    let message = tokio::time::timeout(TIMEOUT, futures_util::StreamExt::next(&mut sub))
        .await
        .expect("message within the timeout")
        .expect("subscription open");
    assert_eq!(message.payload, "hi");
}

#[tokio::test]
async fn max_payload_is_announced_to_clients() {
    let server = NatsServer::builder().max_payload(4096).start().await;
    assert_eq!(server.client().await.server_info().max_payload, 4096);
}

#[tokio::test]
#[should_panic(expected = "cannot be higher than max_pending")]
async fn a_server_that_cannot_start_fails_the_test_with_its_log() {
    // nats-server refuses a max_payload above its 64 MiB max_pending.
    let _server = NatsServer::builder().max_payload(128 << 20).start().await;
}

#[tokio::test]
async fn token_auth_admits_only_clients_with_the_token() {
    let server = NatsServer::builder().token("s3cret").start().await;
    assert_eq!(server.token(), Some("s3cret"));
    assert!(server.client().await.server_info().auth_required);
    async_nats::connect(server.url())
        .await
        .expect_err("a client without the token is refused");
}

#[tokio::test]
async fn user_password_auth_admits_only_matching_clients() {
    let server = NatsServer::builder()
        .user_password("bridge", "pw")
        .start()
        .await;
    assert_eq!(server.user_password(), Some(("bridge", "pw")));
    server
        .jetstream()
        .await
        .query_account()
        .await
        .expect("authenticated JetStream");
    async_nats::ConnectOptions::with_user_and_password("bridge".into(), "wrong".into())
        .connect(server.url())
        .await
        .expect_err("a wrong password is refused");
}

#[tokio::test]
async fn dropping_the_server_kills_it_and_removes_its_store() {
    let server = NatsServer::start().await;
    let pid = server.pid().expect("running server has a pid");
    let store = server.store_dir();
    assert!(alive(pid));
    drop(server);
    assert!(!alive(pid), "nats-server pid {pid} outlived its NatsServer");
    assert!(!store.exists(), "the temporary store is deleted");
}

#[test]
fn a_panicking_test_leaves_no_server_behind() {
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let server = NatsServer::start().await;
            pid_tx.send(server.pid().expect("pid")).expect("send pid");
            panic!("the test fails while its server runs");
        });
    });
    assert!(test.join().is_err(), "the thread panicked");
    let pid = pid_rx.recv().expect("the server had started");
    assert!(
        !alive(pid),
        "nats-server pid {pid} outlived a panicking test"
    );
}

#[tokio::test]
async fn eventually_returns_the_first_some() {
    let calls = AtomicUsize::new(0);
    let value = eventually(TIMEOUT, "the third call", || async {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        (n == 3).then_some(n * 10)
    })
    .await;
    assert_eq!(value, 30);
}

#[tokio::test]
#[should_panic(expected = "waiting for a condition that never holds")]
async fn eventually_panics_with_the_description_on_timeout() {
    eventually(
        Duration::from_millis(100),
        "a condition that never holds",
        || async { None::<()> },
    )
    .await;
}

#[tokio::test]
async fn child_process_captures_output_takes_signals_and_kills_its_group() {
    let script = r#"trap 'echo got-term; exit 3' TERM
echo to-stderr >&2
sleep 60 >/dev/null 2>&1 &
echo "ready $!"
wait $!"#;
    let mut child = ChildProcess::spawn(std::process::Command::new("sh").args(["-c", script]));
    let ready = child.wait_for_stdout("ready", TIMEOUT).await;
    let sleeper: u32 = ready
        .trim_start_matches("ready ")
        .parse()
        .expect("background pid");
    child.wait_for_stderr("to-stderr", TIMEOUT).await;

    child.signal(Signal::Term);
    let status = child.wait_exit(TIMEOUT).await;
    assert_eq!(status.code(), Some(3), "{}", child.output());
    assert!(child.stdout_lines().contains(&"got-term".to_owned()));

    assert!(alive(sleeper), "SIGTERM went to the shell only");
    drop(child);
    // The orphan is killed at once but reaped by whoever adopted it.
    eventually(
        TIMEOUT,
        format_args!("pid {sleeper} to be gone"),
        || async { (!alive(sleeper)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_bridge_binary_is_found_and_runs() {
    let binary = discord_bridge_e2e::bridge_binary();
    assert!(Path::new(&binary).is_file());
    let mut bridge = ChildProcess::bridge(&["--help"], [("RUST_LOG", "info")]);
    let status = bridge.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "discord-bridge --help: {status}\n{}",
        bridge.output()
    );
}
