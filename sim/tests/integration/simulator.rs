//! The gateway simulator driven by a plain WebSocket client (and plain HTTP),
//! checking that it behaves like Discord's documented Gateway v10.

use std::time::Duration;

use discord_bridge::codec::{Decoder, Frame};
use discord_gateway_sim::traffic::TrafficKind;
use discord_gateway_sim::{
    Closer, Compression, Endpoint, HttpFault, Outcome, RawFrame, SimConfig, Simulator,
    TrafficOptions, Violation, events, run_demo_traffic,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

/// Short heartbeats; no identify floor except where a test checks it.
fn config() -> SimConfig {
    SimConfig {
        heartbeat_interval: Duration::from_millis(250),
        identify_floor: Duration::ZERO,
        ..SimConfig::default()
    }
}

/// The bridge's name for a transport compression: the client side of these
/// tests decodes with the bridge's decoders, a check that the two crates
/// read Discord's compression the same way.
fn bridge_compression(compression: Compression) -> discord_bridge::codec::Compression {
    use discord_bridge::codec::Compression as Bridge;
    match compression {
        Compression::None => Bridge::None,
        Compression::ZlibStream => Bridge::ZlibStream,
        Compression::ZstdStream => Bridge::ZstdStream,
    }
}

/// What the client read.
#[derive(Debug)]
enum In {
    Payload(Value),
    Closed(Option<u16>),
    /// EOF or a transport error, without a close frame.
    Gone,
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    decoder: Decoder,
    binary: usize,
}

impl Client {
    async fn open(url: &str, query: &str, compression: Compression) -> Self {
        let (ws, _) = connect_async(format!("{url}/?{query}"))
            .await
            .expect("websocket handshake");
        let decoder = Decoder::new(bridge_compression(compression), 1 << 20).expect("decoder");
        Self {
            ws,
            decoder,
            binary: 0,
        }
    }

    async fn connect(sim: &Simulator) -> Self {
        Self::open(&sim.gateway_url(), "v=10&encoding=json", Compression::None).await
    }

    async fn recv(&mut self) -> In {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("nothing received");
            let bytes = match message {
                Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                Some(Ok(Message::Binary(b))) => {
                    self.binary += 1;
                    match self.decoder.binary(&b).expect("compressed stream") {
                        Some(Frame::Payload(p)) => p.to_vec(),
                        Some(Frame::Oversized { size }) => panic!("oversized {size}"),
                        None => continue,
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return In::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return In::Gone,
            };
            return In::Payload(serde_json::from_slice(&bytes).expect("JSON payload"));
        }
    }

    async fn payload(&mut self) -> Value {
        match self.recv().await {
            In::Payload(v) => v,
            other => panic!("expected a payload, got {other:?}"),
        }
    }

    async fn dispatch(&mut self, t: &str) -> Value {
        let p = self.payload().await;
        assert_eq!(
            (p["op"].as_u64(), p["t"].as_str()),
            (Some(0), Some(t)),
            "{p}"
        );
        p
    }

    async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.recv().await {
                In::Closed(code) => return code,
                In::Gone => panic!("connection dropped without a close frame"),
                In::Payload(_) => {}
            }
        }
    }

    async fn send(&mut self, payload: Value) {
        self.ws
            .send(Message::text(payload.to_string()))
            .await
            .expect("send");
    }

    async fn identify_as(&mut self, token: &str, shard: [u32; 2], intents: u64) {
        let properties = json!({"os": "linux", "browser": "test", "device": "test"});
        let d =
            json!({"token": token, "intents": intents, "shard": shard, "properties": properties});
        self.send(json!({"op": 2, "d": d})).await;
    }

    /// HELLO, IDENTIFY, READY; returns READY.
    async fn identify(&mut self, shard: [u32; 2]) -> Value {
        assert_eq!(self.payload().await["op"], 10);
        self.identify_as("sim-token", shard, 4609).await;
        self.dispatch("READY").await
    }
}

#[tokio::test]
async fn hello_identify_ready_and_the_shards_guild_creates() {
    let sim = Simulator::start(SimConfig {
        shards: 2,
        ..config()
    })
    .await
    .unwrap();
    let mut c = Client::connect(&sim).await;
    let hello = c.payload().await;
    assert_eq!(
        hello,
        json!({"op": 10, "d": {"heartbeat_interval": 250}, "s": null, "t": null})
    );
    c.identify_as("sim-token", [1, 2], 4609).await;
    let ready = c.dispatch("READY").await;
    assert_eq!(ready["s"], 1);
    let d = &ready["d"];
    assert_eq!(
        (d["v"].as_u64(), d["shard"].clone()),
        (Some(10), json!([1, 2]))
    );
    assert_eq!(d["user"]["bot"], true);
    assert_eq!(d["resume_gateway_url"], sim.resume_url());
    assert_eq!(d["session_id"].as_str().unwrap().len(), 32);
    let guilds: Vec<String> = sim
        .config()
        .guilds
        .iter()
        .filter(|g| discord_bridge::gateway::shard::shard_for_guild(**g, 2) == 1)
        .map(u64::to_string)
        .collect();
    assert_eq!(d["guilds"].as_array().unwrap().len(), guilds.len());
    for (i, guild) in guilds.iter().enumerate() {
        let create = c.dispatch("GUILD_CREATE").await;
        assert_eq!(
            (create["s"].as_u64(), create["d"]["id"].as_str()),
            (Some(i as u64 + 2), Some(guild.as_str()))
        );
    }
    let session = sim.session(1).unwrap();
    assert_eq!(session.id, d["session_id"]);
    assert_eq!(
        sim.identifies()[0].outcome,
        Outcome::Ready {
            session_id: session.id.clone()
        }
    );
    assert_eq!(sim.connections()[0].shard, Some(1));
    assert!(sim.session(0).is_none());
    // Dispatches take the session's next sequence numbers.
    let seq = sim
        .dispatch(1, "MESSAGE_CREATE", json!({"content": "x"}))
        .unwrap();
    assert_eq!(seq, guilds.len() as u64 + 2);
    assert_eq!(c.dispatch("MESSAGE_CREATE").await["s"], seq);
    assert_eq!(c.binary, 0, "uncompressed connections send text frames");
    assert!(sim.violations().is_empty());
}

#[tokio::test]
async fn zlib_and_zstd_streams_decode_with_the_bridge_decoder() {
    let sim = Simulator::start(config()).await.unwrap();
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let query = format!("v=10&encoding=json&compress={compression}");
        let mut c = Client::open(&sim.gateway_url(), &query, compression).await;
        c.identify([0, 1]).await;
        let guild = events::guild_create(41_771_983_423_143_937);
        for _ in 0..3 {
            sim.dispatch(0, "GUILD_CREATE", guild.clone()).unwrap();
        }
        let mut received = 0;
        while received < 3 {
            let p = c.payload().await;
            if p["d"] == guild {
                received += 1;
            }
        }
        assert!(
            c.binary >= 5,
            "{compression}: compressed connections send binary frames"
        );
        assert_eq!(sim.connections().last().unwrap().compression, compression);
    }
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_dispatches_then_resumed() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    let ready = c.identify([0, 1]).await;
    let session_id = ready["d"]["session_id"].as_str().unwrap().to_owned();
    let seen = sim.dispatch(0, "MESSAGE_CREATE", json!({"n": 0})).unwrap();
    while c.payload().await["s"] != seen {}
    let frame = CloseFrame {
        code: 4000.into(),
        reason: "resume".into(),
    };
    c.ws.close(Some(frame)).await.unwrap();
    sim.wait_for(WAIT, |s| s.session_of(0)?.attached.is_none().then_some(()))
        .await
        .unwrap();
    let missed: Vec<u64> = (1..=3)
        .map(|n| sim.dispatch(0, "MESSAGE_CREATE", json!({"n": n})).unwrap())
        .collect();

    let mut r = Client::open(&sim.resume_url(), "v=10&encoding=json", Compression::None).await;
    assert_eq!(r.payload().await["op"], 10);
    r.send(json!({"op": 6, "d": {"token": "sim-token", "session_id": session_id, "seq": seen}}))
        .await;
    let history = sim.session(0).unwrap().history;
    for seq in &missed {
        let p = r.dispatch("MESSAGE_CREATE").await;
        let kept = history.iter().find(|d| d.seq == *seq).unwrap();
        assert_eq!((p["s"].as_u64(), &p["d"]), (Some(*seq), &kept.d));
    }
    let resumed = r.dispatch("RESUMED").await;
    assert_eq!(resumed["s"].as_u64(), Some(missed[2] + 1));
    let resume = &sim.resumes()[0];
    assert_eq!(
        (resume.seq, resume.outcome.clone()),
        (seen, Outcome::Resumed { replayed: 3 })
    );
    let conn = sim.connections()[1].clone();
    assert_eq!((conn.endpoint, conn.shard), (Endpoint::Resume, Some(0)));
    let first = &sim.connections()[0];
    assert_eq!(
        first.closed.as_ref().map(|c| (c.by, c.code)),
        Some((Closer::Client, Some(4000)))
    );
}

#[tokio::test]
async fn resume_of_an_unknown_or_ended_session_is_op_9_false() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    assert_eq!(c.payload().await["op"], 10);
    let d =
        json!({"token": "sim-token", "session_id": "feedfacefeedfacefeedfacefeedface", "seq": 1});
    c.send(json!({"op": 6, "d": d})).await;
    assert_eq!(
        c.payload().await,
        json!({"op": 9, "d": false, "s": null, "t": null})
    );

    // A client that closes with 1000 ends its session, like on Discord.
    let mut c = Client::connect(&sim).await;
    let session_id = c.identify([0, 1]).await["d"]["session_id"].clone();
    c.ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    sim.wait_for(WAIT, |s| s.session_of(0)?.invalidated.then_some(()))
        .await
        .unwrap();
    let mut r = Client::connect(&sim).await;
    assert_eq!(r.payload().await["op"], 10);
    r.send(json!({"op": 6, "d": {"token": "sim-token", "session_id": session_id, "seq": 1}}))
        .await;
    assert_eq!(r.payload().await["d"], false);
    assert_eq!(sim.resumes().len(), 2);
}

#[tokio::test]
async fn identify_refusals_close_with_discords_codes() {
    let sim = Simulator::start(config()).await.unwrap();
    let cases: [(&str, [u32; 2], u64, u16); 4] = [
        ("wrong-token", [0, 1], 4609, 4004),
        ("sim-token", [0, 1], 4609 | (1 << 15), 4014),
        ("sim-token", [1, 1], 4609, 4010),
        ("sim-token", [0, 1], 1 << 23, 4013),
    ];
    for (token, shard, intents, code) in cases {
        let mut c = Client::connect(&sim).await;
        assert_eq!(c.payload().await["op"], 10);
        c.identify_as(token, shard, intents).await;
        assert_eq!(c.closed().await, Some(code), "{token} {shard:?} {intents}");
    }
    let closes: Vec<_> = sim
        .connections()
        .iter()
        .map(|c| c.closed.as_ref().map(|i| (i.by, i.code)))
        .collect();
    assert!(
        closes
            .iter()
            .all(|c| matches!(c, Some((Closer::Server, Some(4004 | 4010 | 4013 | 4014)))))
    );
    for (query, code) in [
        ("v=9&encoding=json", 4012),
        ("v=10&encoding=etf", 4002),
        ("v=10&compress=gzip", 4000),
    ] {
        let mut c = Client::open(&sim.gateway_url(), query, Compression::None).await;
        assert_eq!(c.closed().await, Some(code), "{query}");
    }
}

#[tokio::test]
async fn identifies_in_one_bucket_closer_than_the_floor_are_recorded() {
    let floor = Duration::from_millis(300);
    let sim = Simulator::start(SimConfig {
        identify_floor: floor,
        ..config()
    })
    .await
    .unwrap();
    let mut a = Client::connect(&sim).await;
    a.identify([0, 1]).await;
    let mut b = Client::connect(&sim).await;
    assert_eq!(b.payload().await["op"], 10);
    b.identify_as("sim-token", [0, 1], 4609).await;
    assert_eq!(b.closed().await, Some(4008));
    let violations = sim.violations();
    assert!(matches!(
        violations[..],
        [ref v] if matches!(v.violation, Violation::IdentifyTooSoon { bucket: 0, shard: 0, since_previous } if since_previous < floor)
    ));
    assert_eq!(sim.identifies()[1].outcome, Outcome::Closed(4008));
}

#[tokio::test]
async fn heartbeats_are_acked_unless_paused_and_the_server_can_request_one() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    c.send(json!({"op": 1, "d": 1})).await;
    let ack = loop {
        let p = c.payload().await;
        if p["op"] == 11 {
            break p;
        }
    };
    assert_eq!(ack, json!({"op": 11, "d": null, "s": null, "t": null}));

    sim.set_heartbeat_ack(0, false);
    c.send(json!({"op": 1, "d": 2})).await;
    sim.wait_for(WAIT, |s| s.heartbeats_of(0).any(|h| h.d == 2).then_some(()))
        .await
        .unwrap();
    // Nothing answers the paused heartbeat: the next payload is a dispatch.
    let seq = sim.dispatch(0, "MESSAGE_CREATE", json!({})).unwrap();
    assert_eq!(c.payload().await["s"], seq);

    assert!(sim.request_heartbeat(0));
    assert_eq!(c.payload().await["op"], 1);
    c.send(json!({"op": 1, "d": seq})).await;
    let beats = sim
        .wait_for(WAIT, |s| {
            (s.heartbeats_of(0).count() == 3)
                .then(|| s.heartbeats_of(0).cloned().collect::<Vec<_>>())
        })
        .await
        .unwrap();
    assert_eq!(
        beats.iter().map(|h| h.acked).collect::<Vec<_>>(),
        [true, false, false]
    );
    sim.set_heartbeat_ack(0, true);
    c.send(json!({"op": 1, "d": seq})).await;
    assert_eq!(c.payload().await["op"], 11);
}

async fn get(url: &str, auth: Option<&str>) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let response = request.send().await.expect("http request");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii header").to_owned());
    (
        status,
        retry,
        serde_json::from_str(&response.text().await.expect("body")).expect("JSON body"),
    )
}

#[tokio::test]
async fn gateway_bot_answers_like_discord_including_scripted_failures() {
    let sim = Simulator::start(SimConfig {
        shards: 2,
        max_concurrency: 16,
        ..config()
    })
    .await
    .unwrap();
    let url = format!("{}/gateway/bot", sim.api_base());
    let (status, _, body) = get(&url, Some("Bot sim-token")).await;
    assert_eq!(status, 200);
    let limit =
        json!({"total": 1000, "remaining": 1000, "reset_after": 14_400_000, "max_concurrency": 16});
    assert_eq!(
        body,
        json!({"url": sim.gateway_url(), "shards": 2, "session_start_limit": limit})
    );
    assert_eq!(
        get(&url, None).await.2,
        json!({"message": "401: Unauthorized", "code": 0})
    );
    assert_eq!(get(&url, Some("Bot other")).await.0, 401);

    sim.fail_gateway_bot(2, HttpFault::status(500));
    sim.fail_gateway_bot(1, HttpFault::rate_limited(1.5));
    assert_eq!(get(&url, Some("Bot sim-token")).await.0, 500);
    assert_eq!(get(&url, Some("Bot sim-token")).await.0, 500);
    let (status, retry, body) = get(&url, Some("Bot sim-token")).await;
    assert_eq!(
        (status, retry.as_deref(), body["retry_after"].as_f64()),
        (429, Some("2"), Some(1.5))
    );
    assert_eq!(get(&url, Some("Bot sim-token")).await.0, 200);
    assert_eq!(sim.gateway_bot_requests(), 7);

    // IDENTIFY takes a session start.
    let mut c = Client::connect(&sim).await;
    c.identify([0, 2]).await;
    assert_eq!(
        get(&url, Some("Bot sim-token")).await.2["session_start_limit"]["remaining"],
        999
    );
}

#[tokio::test]
async fn more_than_120_payloads_in_a_minute_close_with_4008() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    for _ in 0..121 {
        c.send(json!({"op": 3, "d": {"since": null, "activities": [], "status": "online", "afk": false}})).await;
    }
    assert_eq!(c.closed().await, Some(4008));
    assert!(
        matches!(sim.violations()[..], [ref v] if matches!(v.violation, Violation::SendRateExceeded { shard: Some(0), .. }))
    );
    // IDENTIFY and 119 presence updates pass; the 121st payload closes.
    assert_eq!(sim.payloads().len(), 121);
}

#[tokio::test]
async fn garbage_from_a_client_closes_it_and_the_simulator_keeps_serving() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut healthy = Client::connect(&sim).await;
    healthy.identify([0, 1]).await;
    for garbage in [
        Message::text("{\"op\":"),
        Message::binary(vec![0xff, 0x00, 0x9c]),
    ] {
        let mut c = Client::connect(&sim).await;
        assert_eq!(c.payload().await["op"], 10);
        c.ws.send(garbage).await.unwrap();
        assert_eq!(c.closed().await, Some(4002));
    }
    let mut c = Client::connect(&sim).await;
    assert_eq!(c.payload().await["op"], 10);
    c.send(json!({"op": 42, "d": null})).await;
    assert_eq!(c.closed().await, Some(4001));
    let mut c = Client::connect(&sim).await;
    assert_eq!(c.payload().await["op"], 10);
    c.send(json!({"op": 3, "d": {}})).await;
    assert_eq!(c.closed().await, Some(4003));
    // Not HTTP at all.
    let mut raw = TcpStream::connect(sim.addr()).await.unwrap();
    raw.write_all(b"\x16\x03\x01 hello\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let seq = sim
        .dispatch(0, "MESSAGE_CREATE", json!({"still": "here"}))
        .unwrap();
    loop {
        let p = healthy.payload().await;
        if p["s"] == seq {
            break;
        }
    }
}

#[tokio::test]
async fn reconnect_buffers_later_dispatches_for_the_resume() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    let session_id = c.identify([0, 1]).await["d"]["session_id"].clone();
    let before = sim
        .dispatch(0, "MESSAGE_CREATE", json!({"n": "before"}))
        .unwrap();
    assert!(sim.reconnect(0));
    let after = sim
        .dispatch(0, "MESSAGE_CREATE", json!({"n": "after"}))
        .unwrap();
    let mut last = 0;
    loop {
        let p = c.payload().await;
        if p["op"] == 7 {
            break;
        }
        last = p["s"].as_u64().unwrap();
    }
    assert_eq!(
        last, before,
        "dispatched before op 7 arrives before it, nothing after"
    );
    drop(c);
    let mut r = Client::open(&sim.resume_url(), "v=10&encoding=json", Compression::None).await;
    assert_eq!(r.payload().await["op"], 10);
    r.send(json!({"op": 6, "d": {"token": "sim-token", "session_id": session_id, "seq": last}}))
        .await;
    assert_eq!(r.dispatch("MESSAGE_CREATE").await["s"], after);
    r.dispatch("RESUMED").await;
}

#[tokio::test]
async fn invalidate_expire_close_and_drop() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    let session_id = c.identify([0, 1]).await["d"]["session_id"].clone();
    assert!(sim.invalidate_session(0, false));
    while c.payload().await["op"] != 9 {}
    assert_eq!(
        sim.dispatch(0, "MESSAGE_CREATE", json!({})),
        None,
        "the session is dead"
    );
    c.send(json!({"op": 6, "d": {"token": "sim-token", "session_id": session_id, "seq": 1}}))
        .await;
    assert_eq!(c.payload().await["d"], false);

    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    assert!(sim.close(0, 4000, "test"));
    assert_eq!(c.closed().await, Some(4000));
    assert!(
        !sim.session(0).unwrap().invalidated,
        "4000 keeps the session resumable"
    );

    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    assert!(sim.drop_connection(0));
    loop {
        match c.recv().await {
            In::Gone => break,
            In::Closed(code) => panic!("a dropped connection has no close frame ({code:?})"),
            In::Payload(_) => {}
        }
    }
    sim.wait_for(WAIT, |s| s.connection_of(0).is_none().then_some(()))
        .await
        .unwrap();
    assert!(sim.expire_session(0));
    assert!(sim.session(0).unwrap().invalidated);
}

#[tokio::test]
async fn a_client_that_stops_heartbeating_is_closed_with_4009() {
    let timeout = Some(Duration::from_millis(200));
    let sim = Simulator::start(SimConfig {
        heartbeat_timeout: timeout,
        ..config()
    })
    .await
    .unwrap();
    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    c.send(json!({"op": 1, "d": 1})).await;
    assert_eq!(c.closed().await, Some(4009));
    assert!(
        sim.session(0).unwrap().invalidated,
        "4009: the session timed out"
    );
    assert!(matches!(
        sim.violations()[..],
        [ref v] if matches!(v.violation, Violation::HeartbeatTimeout { shard: Some(0), .. })
    ));
}

#[tokio::test]
async fn closing_with_1000_after_op_7_still_ends_the_session() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    assert!(sim.reconnect(0));
    while c.payload().await["op"] != 7 {}
    c.ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "".into(),
    }))
    .await
    .unwrap();
    sim.wait_for(WAIT, |s| s.session_of(0)?.invalidated.then_some(()))
        .await
        .unwrap();
}

#[tokio::test]
async fn raw_frames_bypass_the_compressor() {
    let sim = Simulator::start(config()).await.unwrap();
    let query = "v=10&encoding=json&compress=zlib-stream";
    let mut c = Client::open(&sim.gateway_url(), query, Compression::ZlibStream).await;
    c.identify([0, 1]).await;
    assert!(sim.send_payload_text(0, "{\"op\":0,\"t\":"));
    assert!(sim.send_raw(0, RawFrame::Binary(vec![1, 2, 3, 4, 0, 0, 0xff, 0xff])));
    let malformed = loop {
        match c.ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => match c.decoder.binary(&b).unwrap() {
                Some(Frame::Payload(p)) if serde_json::from_slice::<Value>(p).is_err() => {
                    break p.to_vec();
                }
                _ => {}
            },
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(malformed, b"{\"op\":0,\"t\":");
    let Message::Binary(corrupt) = c.ws.next().await.unwrap().unwrap() else {
        panic!()
    };
    assert!(
        c.decoder.binary(&corrupt).is_err(),
        "the raw frame corrupts the stream"
    );
}

#[tokio::test]
async fn dispatch_to_guild_routes_by_shard_and_dms_to_shard_0() {
    let sim = Simulator::start(SimConfig {
        shards: 2,
        ..config()
    })
    .await
    .unwrap();
    for shard in [0, 1] {
        Client::connect(&sim).await.identify([shard, 2]).await;
    }
    for guild in sim.config().guilds.clone() {
        let (shard, _) = sim
            .dispatch_to_guild(Some(guild), "TYPING_START", json!({}))
            .unwrap();
        assert_eq!(
            shard,
            discord_bridge::gateway::shard::shard_for_guild(guild, 2)
        );
    }
    assert_eq!(
        sim.dispatch_to_guild(None, "MESSAGE_CREATE", json!({}))
            .unwrap()
            .0,
        0
    );
}

#[tokio::test]
async fn demo_traffic_is_a_mix_the_client_receives_in_full() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    let options = TrafficOptions {
        min_interval: Duration::from_millis(1),
        max_interval: Duration::from_millis(3),
        reconnect_every: None,
        max_steps: Some(80),
        seed: Some(7),
        opening: false,
    };
    let report = run_demo_traffic(&sim, CancellationToken::new(), options).await;
    assert_eq!(report.undelivered, 0);
    assert_eq!(report.emitted.len(), 80);
    assert!(report.relayable() > 0 && report.own_messages > 0 && report.typing > 0);
    let (first, last) = (report.emitted[0].seq, report.emitted.last().unwrap().seq);
    let (mut others, mut own, mut interactions, mut noise) = (0, 0, 0, 0);
    loop {
        let p = c.payload().await;
        if p["s"].as_u64() < Some(first) {
            continue; // the GUILD_CREATEs after READY
        }
        match (p["t"].as_str().unwrap(), p["d"]["author"]["id"].as_str()) {
            ("MESSAGE_CREATE", Some(id)) if id == sim.config().bot_user_id.to_string() => own += 1,
            ("MESSAGE_CREATE", _) => others += 1,
            ("INTERACTION_CREATE", _) => interactions += 1,
            _ => noise += 1,
        }
        if p["s"] == last {
            break;
        }
    }
    assert_eq!(others, report.guild_messages + report.direct_messages);
    assert_eq!(
        (own, interactions),
        (report.own_messages, report.interactions)
    );
    assert_eq!(
        noise,
        report.typing + report.presences + report.guild_creates
    );
    assert!(
        report
            .emitted
            .iter()
            .all(|e| e.kind != TrafficKind::Reconnect)
    );
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_listening() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = Client::connect(&sim).await;
    c.identify([0, 1]).await;
    let addr = sim.addr();
    // The client answers the close frame (by reading on) so shutdown is quick.
    let client = async move {
        let code = c.closed().await;
        while c.ws.next().await.is_some() {}
        code
    };
    let (_, code) = tokio::join!(sim.shutdown(), client);
    assert_eq!(code, Some(1001));
    assert!(TcpStream::connect(addr).await.is_err());
    assert_eq!(
        sim.connections()[0].closed.as_ref().map(|c| c.by),
        Some(Closer::Shutdown)
    );
}
