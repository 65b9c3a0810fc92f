//! Discord's rules as the simulator applies them, without sockets.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::*;
use crate::compress::Compression;
use crate::record::{ConnectionRecord, Endpoint, ViolationRecord};

const RESUME_URL: &str = "ws://127.0.0.1:1/resume";

struct Harness {
    config: SimConfig,
    inner: Inner,
    now: Instant,
}

impl Harness {
    fn new(config: SimConfig) -> Self {
        let inner = Inner::new(&config);
        Self {
            config,
            inner,
            now: Instant::now(),
        }
    }

    fn connect(&mut self) -> ConnId {
        let record = ConnectionRecord {
            id: ConnId(0),
            endpoint: Endpoint::Gateway,
            path: "/gateway".into(),
            query: "v=10&encoding=json".into(),
            compression: Compression::None,
            shard: None,
            session_id: None,
            opened: self.now,
            closed: None,
        };
        let (id, rx) = self.inner.open(record, Arc::new(Notify::new()));
        std::mem::forget(rx);
        id
    }

    fn send(&mut self, conn: ConnId, payload: &str) -> Vec<Action> {
        let ctx = Ctx {
            config: &self.config,
            resume_url: RESUME_URL,
        };
        on_payload(&ctx, &mut self.inner, conn, payload, self.now)
    }

    fn identify(&mut self, conn: ConnId, shard: [u32; 2], intents: u64) -> Vec<Action> {
        let payload = json!({"op": 2, "d": {
            "token": self.config.token, "intents": intents, "shard": shard,
            "properties": {"os": "linux", "browser": "discord-bridge", "device": "discord-bridge"},
        }});
        self.send(conn, &payload.to_string())
    }

    fn code(actions: &[Action]) -> Option<u16> {
        actions.iter().find_map(|a| match a {
            Action::Close(code, _) => Some(*code),
            _ => None,
        })
    }
}

fn config() -> SimConfig {
    SimConfig {
        shards: 2,
        ..SimConfig::default()
    }
}

#[test]
fn identify_starts_a_session_with_ready_then_the_shards_guilds() {
    let mut h = Harness::new(config());
    let conn = h.connect();
    assert_eq!(h.identify(conn, [1, 2], 4609), vec![Action::Flush]);
    let pending = h.inner.pending(conn).unwrap();
    let frames: Vec<Value> = pending
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(frames[0]["t"], "READY");
    assert_eq!(frames[0]["s"], 1);
    assert_eq!(frames[0]["d"]["shard"], json!([1, 2]));
    assert_eq!(frames[0]["d"]["resume_gateway_url"], RESUME_URL);
    let expected: Vec<String> = guilds_of(&h.config, ShardId::new(1, 2))
        .map(|g| g.to_string())
        .collect();
    assert!(!expected.is_empty());
    let ready_guilds: Vec<&str> = frames[0]["d"]["guilds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ready_guilds, expected);
    for (i, frame) in frames[1..].iter().enumerate() {
        assert_eq!(frame["t"], "GUILD_CREATE");
        assert_eq!(frame["s"], i as u64 + 2);
        assert_eq!(frame["d"]["id"], expected[i]);
    }
    assert_eq!(frames.len(), expected.len() + 1);
    assert_eq!(h.inner.state.session_start_remaining, 999);
    assert!(
        h.inner.pending(conn).unwrap().is_empty(),
        "each dispatch is sent once"
    );
}

#[test]
fn identify_refusals_carry_discords_close_codes() {
    let mut h = Harness::new(config());
    let bad_token = r#"{"op":2,"d":{"token":"nope","intents":1,"properties":{}}}"#;
    let c = h.connect();
    assert_eq!(Harness::code(&h.send(c, bad_token)), Some(4004));
    let c = h.connect();
    assert_eq!(Harness::code(&h.identify(c, [2, 2], 1)), Some(4010));
    let c = h.connect();
    assert_eq!(Harness::code(&h.identify(c, [0, 0], 1)), Some(4010));
    let c = h.connect();
    assert_eq!(Harness::code(&h.identify(c, [0, 2], 1 << 15)), Some(4014));
    let c = h.connect();
    assert_eq!(Harness::code(&h.identify(c, [0, 2], 1 << 22)), Some(4013));
    let no_intents = r#"{"op":2,"d":{"token":"sim-token","properties":{}}}"#;
    let c = h.connect();
    assert_eq!(Harness::code(&h.send(c, no_intents)), Some(4013));
    let no_properties = r#"{"op":2,"d":{"token":"sim-token","intents":1}}"#;
    let c = h.connect();
    assert_eq!(Harness::code(&h.send(c, no_properties)), Some(4002));
    assert_eq!(
        h.inner.state.session_start_remaining, 1000,
        "refusals use no session start"
    );
    assert!(h.inner.state.violations.is_empty());
    // Once allowed in the "Developer Portal", the privileged intent is fine.
    h.config.privileged_allowed = 1 << 15;
    let c = h.connect();
    assert_eq!(h.identify(c, [0, 2], 1 << 15), vec![Action::Flush]);
    assert_eq!(Harness::code(&h.identify(c, [0, 2], 1)), Some(4005));
}

#[test]
fn sharding_required_and_exhausted_session_starts() {
    let mut h = Harness::new(SimConfig {
        max_guilds_per_shard: 1,
        session_start_remaining: 0,
        ..config()
    });
    let c = h.connect();
    assert_eq!(Harness::code(&h.identify(c, [0, 1], 1)), Some(4011));
    h.config.max_guilds_per_shard = 2500;
    assert_eq!(Harness::code(&h.identify(c, [0, 1], 1)), Some(4004));
    assert!(matches!(
        h.inner.state.violations[0].violation,
        Violation::SessionStartLimitExhausted { shard: 0 }
    ));
}

#[test]
fn identify_floor_is_per_bucket_and_across_connections() {
    let mut h = Harness::new(SimConfig {
        max_concurrency: 2,
        shards: 4,
        identify_floor: Duration::from_secs(5),
        ..SimConfig::default()
    });
    let (a, b, c) = (h.connect(), h.connect(), h.connect());
    assert_eq!(h.identify(a, [0, 4], 1), vec![Action::Flush]);
    assert_eq!(
        h.identify(b, [1, 4], 1),
        vec![Action::Flush],
        "another bucket"
    );
    h.now += Duration::from_secs(4);
    assert_eq!(Harness::code(&h.identify(c, [2, 4], 1)), Some(4008));
    match &h.inner.state.violations[..] {
        [v] => assert_eq!(
            v.violation,
            Violation::IdentifyTooSoon {
                bucket: 0,
                shard: 2,
                since_previous: Duration::from_secs(4)
            }
        ),
        other => panic!("{other:?}"),
    }
    let d = h.connect();
    h.now += Duration::from_secs(1);
    assert_eq!(h.identify(d, [2, 4], 1), vec![Action::Flush]);
}

#[test]
fn payload_rules_before_and_after_identify() {
    let mut h = Harness::new(config());
    let c = h.connect();
    assert_eq!(
        h.send(c, r#"{"op":1,"d":null}"#),
        vec![Action::Send(HEARTBEAT_ACK.into())]
    );
    let presence = r#"{"op":3,"d":{"status":"online"}}"#;
    assert_eq!(Harness::code(&h.send(c, presence)), Some(4003));
    let c = h.connect();
    assert_eq!(
        Harness::code(&h.send(c, r#"{"op":99,"d":null}"#)),
        Some(4001)
    );
    let c = h.connect();
    assert_eq!(Harness::code(&h.send(c, "{not json")), Some(4002));
    let c = h.connect();
    assert_eq!(Harness::code(&h.send(c, r#"{"d":1}"#)), Some(4002));
    let c = h.connect();
    assert_eq!(Harness::code(&h.send(c, r#"{"op":1,"d":"x"}"#)), Some(4002));
    let c = h.connect();
    let big = format!(r#"{{"op":1,"d":null,"x":"{}"}}"#, "a".repeat(5000));
    assert_eq!(Harness::code(&h.send(c, &big)), Some(4002));
    let c = h.connect();
    h.identify(c, [0, 2], 1);
    assert!(h.send(c, presence).is_empty());
    assert_eq!(h.inner.state.payloads.len(), 9);
}

#[test]
fn paused_acks_and_heartbeat_records() {
    let mut h = Harness::new(config());
    let c = h.connect();
    h.identify(c, [0, 2], 1);
    h.inner.acks_paused.insert(0);
    assert!(h.send(c, r#"{"op":1,"d":3}"#).is_empty());
    let beat = h.inner.state.heartbeats.back().unwrap();
    assert_eq!(
        (beat.shard, beat.d.clone(), beat.acked),
        (Some(0), json!(3), false)
    );
}

#[test]
fn the_121st_payload_in_a_minute_is_rate_limited() {
    let mut h = Harness::new(config());
    let c = h.connect();
    for i in 0..120 {
        assert_eq!(
            Harness::code(&h.send(c, r#"{"op":1,"d":null}"#)),
            None,
            "{i}"
        );
    }
    assert_eq!(
        Harness::code(&h.send(c, r#"{"op":1,"d":null}"#)),
        Some(4008)
    );
    assert!(matches!(
        h.inner.state.violations[..],
        [ViolationRecord {
            violation: Violation::SendRateExceeded { .. },
            ..
        }]
    ));
    // A minute later the window is clear again.
    let c = h.connect();
    for _ in 0..120 {
        h.send(c, r#"{"op":1,"d":null}"#);
    }
    h.now += Duration::from_secs(60);
    assert_eq!(Harness::code(&h.send(c, r#"{"op":1,"d":null}"#)), None);
}

fn resume(h: &mut Harness, conn: ConnId, session: &str, seq: u64) -> Vec<Action> {
    let payload =
        json!({"op": 6, "d": {"token": h.config.token, "session_id": session, "seq": seq}});
    h.send(conn, &payload.to_string())
}

#[test]
fn resume_replays_what_was_missed_then_resumed() {
    let mut h = Harness::new(config());
    let c = h.connect();
    h.identify(c, [0, 2], 1);
    let first = h.inner.pending(c).unwrap().len() as u64;
    let session = h.inner.state.session_of(0).unwrap().id.clone();
    h.inner.closed(
        c,
        crate::record::CloseInfo {
            by: crate::record::Closer::ClientAbort,
            code: None,
            reason: String::new(),
            at: h.now,
        },
    );
    let seq_a = h
        .inner
        .dispatch(0, "MESSAGE_CREATE", json!({"n": 1}), 100)
        .unwrap();
    let seq_b = h
        .inner
        .dispatch(0, "MESSAGE_CREATE", json!({"n": 2}), 100)
        .unwrap();
    assert_eq!((seq_a, seq_b), (first + 1, first + 2));

    let r = h.connect();
    assert_eq!(
        Harness::code(&resume(&mut h, r, &session, seq_b + 1)),
        Some(4007)
    );
    let r = h.connect();
    assert_eq!(
        resume(&mut h, r, "0123456789abcdef0123456789abcdef", 1),
        vec![Action::Send(invalid_session(false).into())]
    );
    assert_eq!(resume(&mut h, r, &session, first), vec![Action::Flush]);
    let sent: Vec<Value> = h
        .inner
        .pending(r)
        .unwrap()
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        (sent[0]["s"].as_u64(), &sent[0]["d"]),
        (Some(seq_a), &json!({"n": 1}))
    );
    assert_eq!(
        (sent[1]["s"].as_u64(), &sent[1]["d"]),
        (Some(seq_b), &json!({"n": 2}))
    );
    assert_eq!(
        (sent[2]["t"].as_str(), sent[2]["s"].as_u64()),
        (Some("RESUMED"), Some(seq_b + 1))
    );
    assert_eq!(
        h.inner.state.resumes.last().unwrap().outcome,
        Outcome::Resumed { replayed: 2 }
    );
    assert_eq!(Harness::code(&resume(&mut h, r, &session, 0)), Some(4005));
}

#[test]
fn resume_from_beyond_the_replay_buffer_is_an_invalid_session() {
    let mut h = Harness::new(SimConfig {
        replay_capacity: 3,
        ..config()
    });
    let c = h.connect();
    h.identify(c, [0, 2], 1);
    let session = h.inner.state.session_of(0).unwrap().id.clone();
    h.inner.detach(c);
    for n in 0..5 {
        h.inner.dispatch(0, "MESSAGE_CREATE", json!({ "n": n }), 3);
    }
    let r = h.connect();
    assert_eq!(
        resume(&mut h, r, &session, 1),
        vec![Action::Send(invalid_session(false).into())]
    );
    assert!(h.inner.state.sessions[&session].invalidated);
    let refused = &h.inner.state.refusals;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].from, refused[0].to, refused[0].cause),
        (
            2,
            h.inner.state.sessions[&session].seq,
            RefusalCause::ReplayEvicted
        )
    );
    assert_eq!(h.inner.dispatch(0, "MESSAGE_CREATE", json!({}), 3), None);
}

#[test]
fn request_guild_members_is_answered_on_the_guilds_shard_only() {
    let mut h = Harness::new(config());
    let c = h.connect();
    h.identify(c, [1, 2], 1);
    let session = h.inner.live[&c].session.clone().expect("a session");
    let before = h.inner.state.sessions[&session].seq;
    // 290926798626357999 is on shard 1 of 2, 197038439483310086 on shard 0.
    let ours =
        r#"{"op":8,"d":{"guild_id":"290926798626357999","query":"","limit":0,"nonce":"abc"}}"#;
    assert_eq!(h.send(c, ours), vec![Action::Flush]);
    let s = &h.inner.state.sessions[&session];
    assert_eq!(s.seq, before + 1);
    let chunk = s.history.back().expect("the chunk");
    assert_eq!(chunk.t, "GUILD_MEMBERS_CHUNK");
    assert_eq!(chunk.d["nonce"], "abc");
    assert_eq!(chunk.d["guild_id"], "290926798626357999");
    let other = r#"{"op":8,"d":{"guild_id":"197038439483310086","query":"","limit":0}}"#;
    assert!(h.send(c, other).is_empty());
    assert_eq!(h.inner.state.sessions[&session].seq, before + 1);
}

fn close_info(
    by: crate::record::Closer,
    code: Option<u16>,
    at: Instant,
) -> crate::record::CloseInfo {
    crate::record::CloseInfo {
        by,
        code,
        reason: String::new(),
        at,
    }
}

#[test]
fn a_refused_resume_records_everything_after_the_resume_point() {
    let mut h = Harness::new(config());
    let c = h.connect();
    h.identify(c, [0, 2], 1);
    let delivered = h.inner.pending(c).unwrap().len() as u64;
    let session = h.inner.state.session_of(0).unwrap().id.clone();
    h.inner.closed(
        c,
        close_info(crate::record::Closer::ClientAbort, None, h.now),
    );
    for n in 0..3 {
        h.inner
            .dispatch(0, "MESSAGE_CREATE", json!({ "n": n }), 100);
    }
    // Nothing was lost yet: the session still replays.
    assert!(h.inner.state.refusals.is_empty());
    // The session expires while the client is away: the three were never sent.
    let last = h.inner.state.sessions[&session].seq;
    assert!(
        h.inner
            .end_session(&session, delivered, RefusalCause::EndedByServer, h.now)
    );
    let ended = h.inner.state.refusals.clone();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].from, ended[0].to, ended[0].cause),
        (delivered + 1, last, RefusalCause::EndedByServer)
    );
    // The client resumes from further back than it was sent: all of it is refused.
    let r = h.connect();
    assert_eq!(
        resume(&mut h, r, &session, 1),
        vec![Action::Send(invalid_session(false).into())]
    );
    let refused = h.inner.state.refusals.last().unwrap().clone();
    assert_eq!(
        (refused.from, refused.to, refused.cause, refused.shard),
        (2, last, RefusalCause::ResumeRefused, 0)
    );
    assert!(refused.covers(&session, last) && !refused.covers(&session, 1));
    assert!(!refused.covers("another session", last));
}

#[test]
fn an_ended_session_records_only_what_no_connection_was_sent() {
    let mut h = Harness::new(config());
    let c = h.connect();
    h.identify(c, [0, 2], 1);
    h.inner.pending(c).unwrap();
    h.inner.dispatch(0, "MESSAGE_CREATE", json!({"n": 1}), 100);
    h.inner.pending(c).unwrap();
    // Everything was sent before the close that ends the session.
    h.inner.closed(
        c,
        close_info(crate::record::Closer::Server, Some(4009), h.now),
    );
    assert!(h.inner.state.refusals.is_empty());

    let c = h.connect();
    h.now += Duration::from_secs(6);
    h.identify(c, [0, 2], 1);
    h.inner.pending(c).unwrap();
    let session = h.inner.state.session_of(0).unwrap().id.clone();
    let seq = h
        .inner
        .dispatch(0, "MESSAGE_CREATE", json!({"n": 2}), 100)
        .unwrap();
    // The client ends the session with 1000 before seq was sent.
    h.inner.closed(
        c,
        close_info(crate::record::Closer::Client, Some(1000), h.now),
    );
    let refused = &h.inner.state.refusals;
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (
            refused[0].session_id.as_str(),
            refused[0].from,
            refused[0].to
        ),
        (session.as_str(), seq, seq)
    );
    assert_eq!(refused[0].cause, RefusalCause::EndedByClient);
}
