//! Bad input from the gateway (the README's Gateway behaviour): malformed payloads are logged
//! and skipped without killing the session; a corrupt compressed stream
//! resets the connection and RESUMEs without losing events.

use discord_bridge::codec::Compression;
use discord_bridge_e2e::stack::{Stack, StackOptions};
use discord_bridge_schemas::ShardState;
use discord_gateway_sim::{Closer, Endpoint, Outcome, RawFrame};
use serde_json::{Value, json};

/// Payloads that are not a usable gateway payload, sent through the
/// connection's compressor.
const JUNK: &[&str] = &[
    "this is not json",
    "{\"op\":0,",
    "[1,2,3]",
    "42",
    "\"a string\"",
    "null",
    "{}",
    "{\"op\":\"zero\"}",
    "{\"op\":-1}",
    // Opcodes Discord does not document.
    r#"{"op":99,"d":null,"s":null,"t":null}"#,
    r#"{"op":12,"d":{"x":1},"s":null,"t":null}"#,
    // A dispatch without d (and without seq), and one without t.
    r#"{"op":0,"t":"MESSAGE_CREATE","s":null}"#,
    r#"{"op":0,"s":null,"d":{"content":"no t"}}"#,
    // A second HELLO mid-session.
    r#"{"op":10,"d":{"heartbeat_interval":"soon"},"s":null,"t":null}"#,
    "",
];

async fn malformed_input_is_skipped(compression: Compression) {
    let stack = Stack::start_with(StackOptions::with(move |c| {
        c.discord.compression = compression;
    }))
    .await;
    stack.wait_session(0).await;
    stack.guild_message("first");
    stack.wait_contents(&["first"]).await;

    for junk in JUNK {
        assert!(stack.sim.send_payload_text(0, junk), "{junk:?}");
    }
    // Frames that bypass the compressor: text frames are never compressed.
    assert!(
        stack
            .sim
            .send_raw(0, RawFrame::Text("not json either".into()))
    );
    assert!(stack.sim.send_raw(0, RawFrame::Text(String::new())));
    if compression == Compression::None {
        assert!(
            stack
                .sim
                .send_raw(0, RawFrame::Binary(vec![0xff, 0xfe, 0x00, 0x80]))
        );
        assert!(stack.sim.send_raw(0, RawFrame::Binary(Vec::new())));
    }
    // Sequenced dispatches whose body is broken: they take a seq and must
    // not hold back the resume point or the events behind them.
    // A message nested deeper than consumers parse (serde_json stops at
    // 128 levels; the bridge publishes at most 64): not published either.
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let broken: [(&str, Value); 6] = [
        (
            "MESSAGE_CREATE",
            json!({"id": "7", "channel_id": "8", "author": {"id": "9", "username": "u"},
                   "content": "too deep", "timestamp": "t", "member": {"x": deep}}),
        ),
        ("MESSAGE_CREATE", Value::Null),
        ("MESSAGE_CREATE", json!("not an object")),
        (
            "MESSAGE_CREATE",
            json!({"id": 1, "content": 5, "author": "nobody"}),
        ),
        ("MESSAGE_CREATE", json!({})),
        ("INTERACTION_CREATE", json!([1, 2])),
    ];
    for (t, d) in broken {
        assert!(stack.sim.dispatch(0, t, d).is_some());
    }
    stack.guild_message("second");
    stack.wait_contents(&["first", "second"]).await;

    // Still the same connection and session.
    assert_eq!(
        stack.sim.connections().len(),
        1,
        "{:#?}",
        stack.sim.connections()
    );
    assert!(stack.sim.connections()[0].closed.is_none());
    assert_eq!(stack.sim.identifies().len(), 1);
    assert!(stack.sim.resumes().is_empty());
    let states: Vec<ShardState> = stack.statuses().iter().map(|e| e.state).collect();
    assert!(
        !states.contains(&ShardState::Disconnected),
        "no reconnect: {states:?}"
    );

    // The session still resumes from the right place afterwards.
    let last = stack.guild_message("third");
    stack.wait_contents(&["first", "second", "third"]).await;
    assert!(stack.sim.reconnect(0));
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(
        resume.seq, last,
        "broken dispatches do not hold back the resume point"
    );
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

#[tokio::test]
async fn malformed_payloads_are_skipped_zlib_stream() {
    malformed_input_is_skipped(Compression::ZlibStream).await;
}

#[tokio::test]
async fn malformed_payloads_are_skipped_zstd_stream() {
    malformed_input_is_skipped(Compression::ZstdStream).await;
}

#[tokio::test]
async fn malformed_payloads_are_skipped_without_compression() {
    malformed_input_is_skipped(Compression::None).await;
}

/// A binary message that is not a continuation of the compressed stream
/// (for both formats: a block of the reserved type 3) corrupts the
/// decompression context: the connection must be reset and resumed.
async fn corrupt_stream_resets_and_resumes(compression: Compression) {
    let stack = Stack::start_with(StackOptions::with(move |c| {
        c.discord.compression = compression;
    }))
    .await;
    let session = stack.wait_session(0).await;
    let seq = stack.guild_message("before");
    stack.wait_contents(&["before"]).await;

    let mut garbage = vec![0x07, 0xff, 0xff, 0x13, 0x37, 0xde, 0xad];
    garbage.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let first = stack.wait_sim(|s| s.connection_of(0).map(|c| c.id)).await;
    assert!(stack.sim.send_raw(0, RawFrame::Binary(garbage)));
    stack
        .wait_sim(|s| s.connections.get(&first).and_then(|c| c.closed.clone()))
        .await;
    // Buffered by Discord until the RESUME replays it.
    stack.guild_message("during");

    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session);
    assert_eq!(resume.seq, seq);
    assert_eq!(resume.outcome, Outcome::Resumed { replayed: 1 });
    stack.wait_session(0).await;
    stack.guild_message("after");
    stack.wait_contents(&["before", "during", "after"]).await;

    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 2, "{conns:#?}");
    let closed = conns[0]
        .closed
        .clone()
        .expect("the corrupt connection ended");
    assert_eq!(closed.by, Closer::Client, "{closed:?}");
    assert!(!matches!(closed.code, Some(1000 | 1001)), "{closed:?}");
    assert_eq!(conns[1].endpoint, Endpoint::Resume);
    assert_eq!(
        conns[1].compression.query_value(),
        compression.query_value(),
        "a fresh compressed stream"
    );
    let status = stack
        .wait_status("disconnected", |e| e.state == ShardState::Disconnected)
        .await;
    assert_eq!(status.reason.as_deref(), Some("corrupt_stream"));
    assert_eq!(status.will_resume, Some(true));
    assert_eq!(stack.sim.identifies().len(), 1);
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

#[tokio::test]
async fn corrupt_zlib_stream_resets_and_resumes() {
    corrupt_stream_resets_and_resumes(Compression::ZlibStream).await;
}

#[tokio::test]
async fn corrupt_zstd_stream_resets_and_resumes() {
    corrupt_stream_resets_and_resumes(Compression::ZstdStream).await;
}
