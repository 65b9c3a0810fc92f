//! Every transition of the session machine, driven with explicit time.

use std::time::{Duration, Instant};

use discord_bridge_schemas::{AgentEventKind, ShardState};
use serde_json::{Value, json};

use super::*;
use crate::gateway::ShardId;
use crate::gateway::unacked::UnackedLog;
use crate::secret::Secret;

const TOKEN: &str = "super-secret-token";
const GATEWAY: &str = "wss://gateway.discord.gg";
const RESUME_URL: &str = "wss://gateway-us-east1-b.discord.gg";
const BOT_ID: &str = "999";
const HB: u64 = 41_250;

/// The machine with the shell's outbox bookkeeping: publishes and skips go
/// into a real [`UnackedLog`], which reports the resume point back, as the
/// shard task does.
struct H {
    m: Machine,
    now: Instant,
    log: UnackedLog,
    /// The outbox is full: durable publishes are not taken.
    refusing: bool,
}

fn config() -> MachineConfig {
    let mut cfg = MachineConfig::new(ShardId::new(0, 1), Secret::new(TOKEN), GATEWAY.to_owned());
    cfg.seed = 7;
    cfg
}

impl H {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(cfg: MachineConfig) -> Self {
        Self {
            m: Machine::new(cfg),
            now: Instant::now(),
            log: UnackedLog::new(10_000, 1 << 30),
            refusing: false,
        }
    }

    fn feed(&mut self, input: Input<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        self.m.handle(self.now, input, &mut out);
        let mut committed = None;
        for action in &out {
            match action {
                Action::Publish(p) if p.is_durable() && !self.refusing => {
                    self.log.push(p.clone()).expect("room in the test log");
                }
                Action::Skip { epoch, seq } => {
                    committed = self.log.skip(*epoch, *seq).or(committed);
                }
                _ => {}
            }
        }
        if let Some((epoch, seq)) = committed {
            self.m
                .handle(self.now, Input::Acked { epoch, seq }, &mut Vec::new());
        }
        out
    }

    /// NATS stores the oldest unacked event.
    fn ack_front(&mut self) -> Vec<Action> {
        let (epoch, seq) = self.log.complete_front().expect("an unacked event");
        self.feed(Input::Acked { epoch, seq })
    }

    fn committed(&self) -> u64 {
        self.m.session().expect("a session").committed
    }

    fn json(&mut self, v: &Value) -> Vec<Action> {
        let bytes = serde_json::to_vec(v).unwrap();
        self.feed(Input::Payload(&bytes))
    }

    fn advance(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        self.feed(Input::Tick)
    }

    /// Jumps to the next deadline and ticks.
    fn next(&mut self) -> Vec<Action> {
        let at = self.m.next_deadline().expect("a deadline");
        self.now = self.now.max(at);
        self.feed(Input::Tick)
    }

    fn hello(&mut self) -> Vec<Action> {
        self.json(&json!({"op": 10, "d": {"heartbeat_interval": HB}}))
    }

    fn dispatch(&mut self, seq: u64, t: &str, d: &Value) -> Vec<Action> {
        self.json(&json!({"op": 0, "s": seq, "t": t, "d": d}))
    }

    /// Start → connect → HELLO → permit → IDENTIFY → READY (seq 1).
    fn live(&mut self) {
        self.feed(Input::Start);
        self.feed(Input::Opened);
        self.hello();
        self.feed(Input::IdentifyPermit);
        self.ready(1, "sess-1");
        assert!(self.m.is_live());
    }

    fn ready(&mut self, seq: u64, session: &str) -> Vec<Action> {
        self.dispatch(
            seq,
            "READY",
            &json!({
                "v": 10, "session_id": session, "resume_gateway_url": RESUME_URL,
                "user": {"id": BOT_ID, "username": "bridge-bot", "bot": true},
                "guilds": [], "shard": [0, 1]
            }),
        )
    }

    /// From a lost connection: wait out the backoff, connect, HELLO.
    fn reconnect(&mut self) -> (String, Vec<Action>) {
        let url = connect_url_of(&self.next()).expect("a Connect after the backoff");
        self.feed(Input::Opened);
        (url, self.hello())
    }
}

fn message(seq: u64, author: &str) -> Value {
    json!({
        "id": format!("{seq}00"), "channel_id": "10", "guild_id": "20",
        "author": {"id": author, "username": "someone"},
        "content": format!("hello {seq}"), "timestamp": "2024-01-01T00:00:00+00:00"
    })
}

fn sends(actions: &[Action]) -> Vec<&OutFrame> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn sent_json(actions: &[Action], kind: SendKind) -> Option<Value> {
    sends(actions)
        .into_iter()
        .find(|f| f.kind == kind)
        .map(|f| serde_json::from_str(&f.text).unwrap())
}

fn publishes(actions: &[Action]) -> Vec<&Publish> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn states(actions: &[Action]) -> Vec<ShardState> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Status(s) => Some(s.state),
            _ => None,
        })
        .collect()
}

fn status(actions: &[Action], state: ShardState) -> StatusEvent {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Status(s) if s.state == state => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {state:?} status in {actions:?}"))
}

fn close_code(actions: &[Action]) -> Option<u16> {
    actions.iter().find_map(|a| match a {
        Action::Close { code, .. } => Some(*code),
        _ => None,
    })
}

fn connect_url_of(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Connect { url } => Some(url.clone()),
        _ => None,
    })
}

#[test]
fn start_connects_with_the_documented_query() {
    let mut h = H::new();
    let out = h.feed(Input::Start);
    assert_eq!(states(&out), [ShardState::Connecting]);
    assert_eq!(
        connect_url_of(&out).unwrap(),
        "wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"
    );
    assert_eq!(h.feed(Input::Start), [], "a second start does nothing");
}

#[test]
fn hello_waits_for_the_identify_permit_then_identifies() {
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    let out = h.hello();
    assert!(out.contains(&Action::RequestIdentify));
    assert_eq!(states(&out), [ShardState::Identifying]);
    assert!(sends(&out).is_empty(), "no IDENTIFY before the permit");
    assert_eq!(
        h.m.stats().identifies,
        0,
        "counted when sent, not asked for"
    );
    let out = h.feed(Input::IdentifyPermit);
    assert_eq!(h.m.stats().identifies, 1);
    let identify = sent_json(&out, SendKind::Identify).expect("IDENTIFY");
    assert_eq!(identify["op"], 2);
    assert_eq!(identify["d"]["token"], TOKEN);
    assert_eq!(identify["d"]["intents"], 4609);
    assert_eq!(identify["d"]["shard"], json!([0, 1]));
    assert_eq!(
        h.feed(Input::IdentifyPermit),
        [],
        "a stale permit is ignored"
    );
}

#[test]
fn first_heartbeat_is_jittered_then_regular() {
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    let t0 = h.now;
    h.hello();
    let first = h.m.next_deadline().unwrap();
    assert!(first >= t0 && first < t0 + Duration::from_millis(HB));
    let out = h.next();
    assert_eq!(
        sent_json(&out, SendKind::Heartbeat).unwrap(),
        json!({"op": 1, "d": null})
    );
    h.json(&json!({"op": 11}));
    assert_eq!(
        h.m.next_deadline().unwrap(),
        h.now + Duration::from_millis(HB)
    );
}

#[test]
fn different_seeds_jitter_differently() {
    let deadlines: Vec<Duration> = (0..4)
        .map(|seed| {
            let mut cfg = config();
            cfg.seed = seed;
            let mut h = H::with(cfg);
            h.feed(Input::Start);
            h.feed(Input::Opened);
            let t0 = h.now;
            h.hello();
            h.m.next_deadline().unwrap() - t0
        })
        .collect();
    assert!(deadlines.windows(2).any(|w| w[0] != w[1]), "{deadlines:?}");
}

#[test]
fn ready_starts_a_session_and_messages_are_relayed() {
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    h.hello();
    h.feed(Input::IdentifyPermit);
    let out = h.ready(1, "sess-1");
    let s = status(&out, ShardState::Connected);
    assert_eq!(s.session_id.as_deref(), Some("sess-1"));
    assert_eq!(s.resume_url.as_deref(), Some(RESUME_URL));
    let out = h.dispatch(2, "MESSAGE_CREATE", &message(2, "42"));
    let p = publishes(&out);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].seq, &*p[0].session_id), (2, "sess-1"));
    assert_eq!(p[0].kind, PublishKind::Agent(AgentEventKind::Message));
    assert_eq!(p[0].guild_id.as_deref(), Some("20"));
    assert_eq!(p[0].event_name(), "MESSAGE_CREATE");
    let body: Value = serde_json::from_slice(&p[0].body).unwrap();
    assert_eq!(body["payload"]["content"], "hello 2");
    // Heartbeats carry the last sequence received.
    h.dispatch(3, "TYPING_START", &json!({"channel_id": "1"}));
    let out = h.next();
    assert_eq!(sent_json(&out, SendKind::Heartbeat).unwrap()["d"], 3);
}

#[test]
fn own_messages_and_other_events_are_not_relayed() {
    let mut h = H::new();
    h.live();
    assert!(publishes(&h.dispatch(2, "MESSAGE_CREATE", &message(2, BOT_ID))).is_empty());
    assert!(publishes(&h.dispatch(3, "GUILD_CREATE", &json!({"id": "20"}))).is_empty());
    assert!(publishes(&h.dispatch(4, "PRESENCE_UPDATE", &json!({}))).is_empty());
    assert_eq!(h.m.stats().own_messages, 1);
    assert_eq!(h.committed(), 4);
    let interaction =
        json!({"id": "5", "type": 2, "token": "t", "guild_id": "20", "data": {"name": "chat"}});
    let out = h.dispatch(5, "INTERACTION_CREATE", &interaction);
    assert_eq!(
        publishes(&out)[0].kind,
        PublishKind::Agent(AgentEventKind::Interaction)
    );
}

#[test]
fn server_heartbeat_request_is_answered_at_once() {
    let mut h = H::new();
    h.live();
    h.dispatch(2, "TYPING_START", &json!({}));
    let out = h.json(&json!({"op": 1, "d": null}));
    assert_eq!(
        sent_json(&out, SendKind::Heartbeat).unwrap(),
        json!({"op": 1, "d": 2})
    );
}

#[test]
fn zombie_connection_is_closed_and_resumed() {
    let mut h = H::new();
    h.live();
    h.dispatch(2, "MESSAGE_CREATE", &message(2, "42"));
    h.ack_front();
    let out = h.next();
    assert!(sent_json(&out, SendKind::Heartbeat).is_some());
    // No ACK before the next beat is due.
    let out = h.next();
    assert_eq!(
        close_code(&out),
        Some(4000),
        "non-1000 close keeps the session"
    );
    let s = status(&out, ShardState::Disconnected);
    assert_eq!(s.reason.as_deref(), Some("zombie_connection"));
    assert_eq!(s.will_resume, Some(true));
    assert_eq!(
        states(&out),
        [ShardState::Disconnected, ShardState::Backoff]
    );
    let (url, out) = h.reconnect();
    assert_eq!(
        url,
        format!("{RESUME_URL}/?v=10&encoding=json&compress=zlib-stream")
    );
    let resume = sent_json(&out, SendKind::Resume).expect("RESUME after HELLO");
    assert_eq!(
        resume,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": "sess-1", "seq": 2}})
    );
    assert!(
        !out.contains(&Action::RequestIdentify),
        "RESUME needs no identify permit"
    );
    let out = h.dispatch(3, "RESUMED", &json!({}));
    assert_eq!(
        status(&out, ShardState::Connected).detail,
        "RESUMED: session resumed"
    );
    assert!(h.m.is_live());
    // The reason of the status event is the one counted, once.
    let stats = h.m.stats();
    assert_eq!(stats.reconnects.get(EndReason::ZombieConnection), 1);
    assert_eq!(stats.reconnects.total(), 1);
    assert_eq!((stats.identifies, stats.resumes), (1, 1));
}

#[test]
fn op7_reconnect_resumes() {
    for frame in [
        json!({"op": 7}),
        json!({"op": 7, "d": {}}),
        json!({"op": 7, "d": null}),
    ] {
        let mut h = H::new();
        h.live();
        let out = h.json(&frame);
        assert_eq!(close_code(&out), Some(4000));
        assert_eq!(
            status(&out, ShardState::Disconnected).reason.as_deref(),
            Some("reconnect_requested")
        );
        let (url, out) = h.reconnect();
        assert!(url.starts_with(RESUME_URL));
        assert!(sent_json(&out, SendKind::Resume).is_some());
    }
}

#[test]
fn op9_resumable_resumes() {
    let mut h = H::new();
    h.live();
    let out = h.json(&json!({"op": 9, "d": true}));
    assert_eq!(close_code(&out), Some(4000));
    let (_, out) = h.reconnect();
    assert!(sent_json(&out, SendKind::Resume).is_some());
}

#[test]
fn op9_not_resumable_starts_a_new_session_through_the_identify_floor() {
    let mut h = H::new();
    h.live();
    let out = h.json(&json!({"op": 9, "d": false}));
    assert_eq!(close_code(&out), Some(1000));
    assert_eq!(
        status(&out, ShardState::Disconnected).will_resume,
        Some(false)
    );
    assert!(h.m.session().is_none());
    let (url, out) = h.reconnect();
    assert!(
        url.starts_with(GATEWAY),
        "new sessions use the main gateway URL: {url}"
    );
    assert!(out.contains(&Action::RequestIdentify));
    assert!(sent_json(&out, SendKind::Resume).is_none());
}

#[test]
fn op9_during_resume_falls_back_to_identify() {
    let mut h = H::new();
    h.live();
    h.json(&json!({"op": 7}));
    h.reconnect();
    let out = h.json(&json!({"op": 9, "d": false}));
    assert_eq!(close_code(&out), Some(1000));
    let (url, out) = h.reconnect();
    assert!(url.starts_with(GATEWAY));
    assert!(out.contains(&Action::RequestIdentify));
}

/// A live session that Discord then closes with `code`.
fn closed_with(code: u16) -> (H, Vec<Action>) {
    let mut h = H::new();
    h.live();
    let out = h.feed(Input::Closed {
        code: Some(code),
        reason: String::new(),
    });
    (h, out)
}

#[test]
fn every_close_code_has_its_documented_disposition() {
    for code in [4000, 4001, 4002, 4003, 4005, 4008, 1000, 1001, 4999] {
        let (mut h, out) = closed_with(code);
        assert_eq!(
            status(&out, ShardState::Disconnected).will_resume,
            Some(true),
            "{code}"
        );
        let (_, out) = h.reconnect();
        assert!(
            sent_json(&out, SendKind::Resume).is_some(),
            "{code} resumes"
        );
    }
    for code in [4007, 4009] {
        let (mut h, out) = closed_with(code);
        assert_eq!(
            status(&out, ShardState::Disconnected).will_resume,
            Some(false),
            "{code}"
        );
        let (url, out) = h.reconnect();
        assert!(url.starts_with(GATEWAY), "{code}");
        assert!(out.contains(&Action::RequestIdentify), "{code} identifies");
    }
    for code in [4004, 4010, 4011, 4012, 4013, 4014] {
        let mut h = H::new();
        h.live();
        let out = h.feed(Input::Closed {
            code: Some(code),
            reason: "bye".into(),
        });
        let stop = out.iter().find_map(|a| match a {
            Action::Stop(Stop::Fatal { code, message }) => Some((*code, message.clone())),
            _ => None,
        });
        let (c, message) = stop.unwrap_or_else(|| panic!("{code} is fatal"));
        assert_eq!(c, code);
        assert!(message.contains(&code.to_string()), "{message}");
        assert!(message.contains("DISCORD_"), "names the setting: {message}");
        assert!(!message.contains(TOKEN));
        let s = status(&out, ShardState::Error);
        assert_eq!((s.fatal, s.close_code), (Some(true), Some(code)));
        assert!(h.m.is_stopped());
        assert_eq!(h.m.next_deadline(), None);
        assert_eq!(h.feed(Input::Tick), []);
    }
}

#[test]
fn transport_loss_resumes() {
    let mut h = H::new();
    h.live();
    let out = h.feed(Input::Closed {
        code: None,
        reason: "connection reset".into(),
    });
    assert_eq!(
        status(&out, ShardState::Disconnected).reason.as_deref(),
        Some("connection_lost")
    );
    let (_, out) = h.reconnect();
    assert!(sent_json(&out, SendKind::Resume).is_some());
}

#[test]
fn resume_starts_from_the_last_acked_seq_not_the_last_received() {
    let mut h = H::new();
    h.live();
    h.dispatch(2, "MESSAGE_CREATE", &message(2, "42"));
    h.dispatch(3, "MESSAGE_CREATE", &message(3, "42"));
    h.dispatch(4, "GUILD_CREATE", &json!({"id": "1"}));
    h.ack_front();
    h.feed(Input::Acked { epoch: 99, seq: 4 });
    h.json(&json!({"op": 7}));
    let (_, out) = h.reconnect();
    assert_eq!(sent_json(&out, SendKind::Resume).unwrap()["d"]["seq"], 2);
    // Discord replays 3 and 4: both are already in the publisher, not sent again.
    assert!(publishes(&h.dispatch(3, "MESSAGE_CREATE", &message(3, "42"))).is_empty());
    assert!(publishes(&h.dispatch(4, "GUILD_CREATE", &json!({"id": "1"}))).is_empty());
    assert_eq!(h.m.stats().replays_skipped, 2);
    let out = h.dispatch(5, "MESSAGE_CREATE", &message(5, "42"));
    assert_eq!(publishes(&out)[0].seq, 5);
    h.dispatch(6, "RESUMED", &json!({}));
    assert!(h.m.is_live());
}

#[test]
fn repeated_failed_resumes_fall_back_to_identify() {
    let mut h = H::new();
    h.live();
    h.json(&json!({"op": 7}));
    for _ in 0..3 {
        let (_, out) = h.reconnect();
        assert!(sent_json(&out, SendKind::Resume).is_some());
        h.feed(Input::Closed {
            code: Some(4000),
            reason: String::new(),
        });
    }
    let (url, out) = h.reconnect();
    assert!(url.starts_with(GATEWAY), "{url}");
    assert!(out.contains(&Action::RequestIdentify));
}

#[test]
fn unreachable_resume_url_falls_back_to_identify() {
    let mut h = H::new();
    h.live();
    h.json(&json!({"op": 7}));
    for _ in 0..10 {
        let url = connect_url_of(&h.next()).unwrap();
        assert!(url.starts_with(RESUME_URL));
        h.feed(Input::ConnectFailed {
            error: "refused".into(),
        });
    }
    let url = connect_url_of(&h.next()).unwrap();
    assert!(url.starts_with(GATEWAY), "{url}");
}

#[test]
fn backoff_grows_with_failures_and_resets_after_ready() {
    let mut h = H::new();
    h.feed(Input::Start);
    let mut ceilings = Vec::new();
    for attempt in 0..8u32 {
        let out = h.feed(Input::ConnectFailed {
            error: "refused".into(),
        });
        let b = status(&out, ShardState::Backoff);
        assert_eq!(b.attempt, Some(attempt + 1));
        let ceiling = 1000u64 << attempt.min(6);
        assert!(b.delay_ms.unwrap() <= ceiling.min(60_000), "{b:?}");
        ceilings.push(b.delay_ms.unwrap());
        connect_url_of(&h.next()).unwrap();
    }
    assert!(
        ceilings.iter().any(|d| *d > 1000),
        "delays grow: {ceilings:?}"
    );
    h.feed(Input::Opened);
    h.hello();
    h.feed(Input::IdentifyPermit);
    h.ready(1, "s");
    let out = h.json(&json!({"op": 7}));
    let b = status(&out, ShardState::Backoff);
    assert_eq!(b.attempt, Some(1), "reset after READY");
    assert!(b.delay_ms.unwrap() <= 1000);
}

#[test]
fn malformed_frames_are_skipped_without_dropping_the_session() {
    let mut h = H::new();
    h.live();
    for junk in [
        &b""[..],
        b"   ",
        b"not json",
        b"[1,2,3]",
        b"42",
        b"\"text\"",
        b"{\"op\":0",
        b"{\"op\":\"x\"}",
        b"{\"t\":\"MESSAGE_CREATE\"}",
        b"\xff\xfe\x00",
    ] {
        let out = h.feed(Input::Payload(junk));
        assert_eq!(out, [], "{}", String::from_utf8_lossy(junk));
    }
    assert!(h.json(&json!({"op": 42, "d": {}})).is_empty());
    assert_eq!(h.m.stats().unknown_opcodes, 1);
    // A dispatch without d, and one with a malformed body, are skipped:
    // nothing published, but their seqs count as handled.
    let skipped = |out: &[Action], seq| out == [Action::Skip { epoch: 1, seq }];
    assert!(skipped(
        &h.json(&json!({"op": 0, "s": 2, "t": "MESSAGE_CREATE"})),
        2
    ));
    assert!(skipped(
        &h.dispatch(3, "MESSAGE_CREATE", &json!({"id": 5})),
        3
    ));
    assert!(skipped(
        &h.dispatch(4, "INTERACTION_CREATE", &json!([1])),
        4
    ));
    assert!(h.m.stats().malformed >= 10);
    assert!(h.m.is_live());
    assert_eq!(h.committed(), 4);
    assert_eq!(
        publishes(&h.dispatch(5, "MESSAGE_CREATE", &message(5, "1"))).len(),
        1
    );
}

#[test]
fn oversized_payloads_are_counted_and_skipped() {
    let mut h = H::new();
    h.live();
    assert_eq!(h.feed(Input::Oversized { size: 1 << 30 }), []);
    assert_eq!(h.m.stats().oversized, 1);
    assert!(h.m.is_live());
}

#[test]
fn corrupt_stream_resets_the_connection_and_resumes() {
    let mut h = H::new();
    h.live();
    let out = h.feed(Input::StreamCorrupt {
        error: "bad zlib".into(),
    });
    assert_eq!(close_code(&out), Some(4000));
    let (_, out) = h.reconnect();
    assert!(sent_json(&out, SendKind::Resume).is_some());
}

#[test]
fn missing_hello_times_out() {
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    let out = h.advance(Duration::from_secs(20));
    assert_eq!(close_code(&out), Some(4000));
    assert_eq!(
        status(&out, ShardState::Disconnected).reason.as_deref(),
        Some("hello_timeout")
    );
}

#[test]
fn hello_without_interval_reconnects() {
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    let out = h.json(&json!({"op": 10, "d": {"heartbeat_interval": 0}}));
    assert_eq!(close_code(&out), Some(4000));
}

/// A HELLO asking for an interval beyond the cap (up to `u64::MAX` ms,
/// which would overflow the clock arithmetic) is refused like one without
/// an interval; the cap itself is accepted.
#[test]
fn hello_with_an_absurd_interval_reconnects() {
    let max = u64::try_from(crate::gateway::heartbeat::MAX_INTERVAL.as_millis()).unwrap();
    for interval in [max + 1, u64::MAX / 1000, u64::MAX] {
        let mut h = H::new();
        h.feed(Input::Start);
        h.feed(Input::Opened);
        let out = h.json(&json!({"op": 10, "d": {"heartbeat_interval": interval}}));
        assert_eq!(close_code(&out), Some(4000), "{interval}");
    }
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    let out = h.json(&json!({"op": 10, "d": {"heartbeat_interval": max}}));
    assert_eq!(close_code(&out), None);
    assert!(out.iter().any(|a| matches!(a, Action::RequestIdentify)));
    h.advance(crate::gateway::heartbeat::MAX_INTERVAL);
}

#[test]
fn missing_ready_times_out() {
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    h.hello();
    h.feed(Input::IdentifyPermit);
    // Heartbeats are acked, but READY never comes.
    let mut closed = None;
    for _ in 0..10 {
        let out = h.next();
        if let Some(code) = close_code(&out) {
            closed = Some((code, status(&out, ShardState::Disconnected)));
            break;
        }
        h.json(&json!({"op": 11}));
    }
    let (code, s) = closed.expect("handshake timeout");
    assert_eq!(
        (code, s.reason.as_deref()),
        (4000, Some("handshake_timeout"))
    );
}

#[test]
fn shutdown_closes_resumably_and_stops() {
    let mut h = H::new();
    h.live();
    let out = h.feed(Input::Shutdown);
    // Never 1000/1001: the session stays resumable for a successor.
    assert_eq!(close_code(&out), Some(4000));
    assert!(out.contains(&Action::Close {
        code: 4000,
        reason: "shutdown"
    }));
    assert_eq!(states(&out), [ShardState::ShuttingDown]);
    assert!(out.contains(&Action::Stop(Stop::Shutdown)));
    assert!(h.m.is_stopped());
    assert_eq!(
        h.json(&json!({"op": 0, "s": 2, "t": "MESSAGE_CREATE", "d": message(2, "1")})),
        []
    );
    // Shutdown while waiting for a reconnect stops without a close frame.
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::ConnectFailed { error: "x".into() });
    let out = h.feed(Input::Shutdown);
    assert_eq!(close_code(&out), None);
    assert!(out.contains(&Action::Stop(Stop::Shutdown)));
}

#[test]
fn full_publisher_with_nats_down_closes_then_resumes_from_the_acked_seq() {
    let mut h = H::new();
    h.live();
    h.dispatch(2, "MESSAGE_CREATE", &message(2, "1"));
    h.ack_front();
    h.dispatch(3, "MESSAGE_CREATE", &message(3, "1"));
    h.dispatch(4, "MESSAGE_CREATE", &message(4, "1"));
    // NATS is down: a full buffer cannot drain, so the connection closes.
    assert_eq!(h.feed(Input::NatsDown), []);
    let out = h.feed(Input::PublishRejected { epoch: 1, seq: 4 });
    assert_eq!(close_code(&out), Some(4000));
    let s = status(&out, ShardState::Disconnected);
    assert_eq!(s.reason.as_deref(), Some("nats_backpressure"));
    assert_eq!(
        h.m.stats().reconnects.iter().collect::<Vec<_>>()[11],
        (EndReason::NatsBackpressure, 1)
    );
    assert_eq!(h.m.stats().reconnects.total(), 1);
    assert_eq!(
        h.m.next_deadline(),
        None,
        "paused until the publisher has room"
    );
    assert_eq!(h.advance(Duration::from_secs(3600)), []);
    let out = h.feed(Input::PublisherReady);
    let url = connect_url_of(&out).unwrap();
    assert!(url.starts_with(RESUME_URL));
    h.feed(Input::Opened);
    let out = h.hello();
    assert_eq!(sent_json(&out, SendKind::Resume).unwrap()["d"]["seq"], 2);
    // 3 is still in the publisher; 4 was refused, so its replay is relayed.
    assert!(publishes(&h.dispatch(3, "MESSAGE_CREATE", &message(3, "1"))).is_empty());
    assert_eq!(
        publishes(&h.dispatch(4, "MESSAGE_CREATE", &message(4, "1")))[0].seq,
        4
    );
}

#[test]
fn unavoidable_loss_is_reported_with_its_range() {
    let mut h = H::new();
    h.live();
    h.dispatch(2, "MESSAGE_CREATE", &message(2, "1"));
    h.dispatch(3, "MESSAGE_CREATE", &message(3, "1"));
    h.feed(Input::NatsDown);
    h.feed(Input::PublishRejected { epoch: 1, seq: 3 });
    h.feed(Input::PublisherReady);
    h.feed(Input::Opened);
    h.hello();
    // The session expired during the outage.
    let out = h.json(&json!({"op": 9, "d": false}));
    let e = status(&out, ShardState::Error);
    assert_eq!(e.fatal, Some(false));
    let lost = e.lost.expect("lost range");
    assert_eq!((lost.from, lost.to), (3, 3));
    assert!(e.message.unwrap().contains("3..=3"));
    assert_eq!(h.m.stats().lost, 1);
}

#[test]
fn unsafe_resume_url_is_not_used() {
    // Another host, or Discord's host with a URL past the length cap.
    let long = format!("{RESUME_URL}/{}", "x".repeat(2000));
    for resume_url in ["wss://evil.example.com", long.as_str()] {
        let mut h = H::new();
        h.feed(Input::Start);
        h.feed(Input::Opened);
        h.hello();
        h.feed(Input::IdentifyPermit);
        h.dispatch(
            1,
            "READY",
            &json!({"session_id": "s", "resume_gateway_url": resume_url,
                    "user": {"id": BOT_ID}}),
        );
        assert!(h.m.is_live());
        let out = h.json(&json!({"op": 7}));
        assert_eq!(
            status(&out, ShardState::Disconnected).will_resume,
            Some(false)
        );
        let url = connect_url_of(&h.next()).unwrap();
        assert!(url.starts_with(GATEWAY), "{url}");
    }
}

#[test]
fn insecure_resume_url_is_allowed_for_the_simulator() {
    let mut cfg = config();
    cfg.allow_insecure_gateway = true;
    cfg.gateway_url = "ws://127.0.0.1:1/gateway".into();
    let mut h = H::with(cfg);
    h.feed(Input::Start);
    h.feed(Input::Opened);
    h.hello();
    h.feed(Input::IdentifyPermit);
    h.dispatch(
        1,
        "READY",
        &json!({"session_id": "s", "resume_gateway_url": "ws://127.0.0.1:1/resume",
                "user": {"id": BOT_ID}}),
    );
    h.json(&json!({"op": 7}));
    let url = connect_url_of(&h.next()).unwrap();
    assert!(url.starts_with("ws://127.0.0.1:1/resume/?v=10"), "{url}");
}

#[test]
fn heartbeats_are_never_starved_by_the_rate_limit() {
    let mut h = H::new();
    h.live();
    // Discord asks for 130 heartbeats at once: 120 go out, 10 wait a window.
    let mut sent = 0;
    for _ in 0..130 {
        sent += sends(&h.json(&json!({"op": 1}))).len();
    }
    assert_eq!(sent, 119, "IDENTIFY used one slot of the window");
    let at = h.m.next_deadline().unwrap();
    assert!(at <= h.now + Duration::from_secs(60));
    h.json(&json!({"op": 11}));
    h.now += Duration::from_secs(60);
    let out = h.feed(Input::Tick);
    assert!(
        sends(&out).len() >= 10,
        "queued beats flushed: {}",
        sends(&out).len()
    );
}

#[test]
fn raw_dispatch_firehose_publishes_selected_events() {
    let mut cfg = config();
    cfg.raw_dispatch = vec!["GUILD_CREATE".into()];
    let mut h = H::with(cfg);
    h.live();
    let out = h.dispatch(2, "GUILD_CREATE", &json!({"id": "1", "name": "g"}));
    let p = publishes(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].kind, PublishKind::Raw("GUILD_CREATE".into()));
    assert!(!p[0].is_durable());
    assert_eq!(p[0].body, br#"{"id":"1","name":"g"}"#);
    // Not durable: it does not hold back the resume point.
    assert_eq!(h.committed(), 2);
}

#[test]
fn debug_output_never_contains_the_token() {
    let mut h = H::new();
    h.live();
    let out = h.feed(Input::Start);
    let dump = format!("{:?} {:?} {out:?}", h.m, config());
    assert!(!dump.contains(TOKEN), "{dump}");
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    h.hello();
    let out = h.feed(Input::IdentifyPermit);
    assert!(!format!("{out:?}").contains(TOKEN));
}

#[test]
fn resumes_that_fail_before_hello_count_too() {
    let mut h = H::new();
    h.live();
    h.json(&json!({"op": 7}));
    for _ in 0..3 {
        let url = connect_url_of(&h.next()).unwrap();
        assert!(url.starts_with(RESUME_URL));
        h.feed(Input::Opened);
        h.feed(Input::Closed {
            code: None,
            reason: "reset before HELLO".into(),
        });
    }
    let url = connect_url_of(&h.next()).unwrap();
    assert!(
        url.starts_with(GATEWAY),
        "falls back to a new session: {url}"
    );
}

/// The one-pass MESSAGE_CREATE path (Discord's field order, `t` before `d`)
/// and the general path produce the same publish, for every message in the
/// corpus; frames that do not fit the one-pass shape still work.
#[test]
fn one_pass_and_general_paths_publish_the_same_event() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/corpus");
    let mut bodies: Vec<Value> = Vec::new();
    for file in [
        "frames/discordbm_message_create.json",
        "frames/disgord_message_create.json",
    ] {
        let v: Value =
            serde_json::from_slice(&std::fs::read(format!("{dir}/{file}")).unwrap()).unwrap();
        bodies.push(v["d"].clone());
    }
    for file in [
        "bodies/docs_example_message.json",
        "bodies/docs_example_crossposted_message.json",
    ] {
        bodies.push(
            serde_json::from_slice(&std::fs::read(format!("{dir}/{file}")).unwrap()).unwrap(),
        );
    }
    for (i, d) in bodies.iter().enumerate() {
        let seq = 2 + i as u64;
        let d_text = serde_json::to_string(d).unwrap();
        let discord_order = format!(r#"{{"t":"MESSAGE_CREATE","s":{seq},"op":0,"d":{d_text}}}"#);
        let other_order = format!(r#"{{"op":0,"d":{d_text},"s":{seq},"t":"MESSAGE_CREATE"}}"#);
        assert!(
            crate::gateway::payload::decode_message_dispatch(discord_order.as_bytes()).is_some()
        );
        assert!(crate::gateway::payload::decode_message_dispatch(other_order.as_bytes()).is_none());
        let mut a = H::new();
        a.live();
        let mut b = H::new();
        b.live();
        let one_pass = a.feed(Input::Payload(discord_order.as_bytes()));
        let general = b.feed(Input::Payload(other_order.as_bytes()));
        assert_eq!(publishes(&one_pass).len(), 1, "body {i}");
        assert_eq!(publishes(&one_pass), publishes(&general), "body {i}");
        assert_eq!(a.m.stats().one_pass_messages, 1, "body {i}");
        assert_eq!(b.m.stats().one_pass_messages, 0, "body {i}");
    }
}

#[test]
fn frames_the_one_pass_path_refuses_take_the_general_path() {
    use crate::gateway::payload::decode_message_dispatch;
    let body = r#"{"id":"1","channel_id":"2","author":{"id":"3","username":"u"},"content":"c","timestamp":"t"}"#;
    let ok = format!(r#"{{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{body}}}"#);
    assert!(decode_message_dispatch(ok.as_bytes()).is_some());
    let refused = [
        format!(r#"{{"t":"MESSAGE_CREATE","s":5,"op":1,"d":{body}}}"#),
        format!(r#"{{"t":"TYPING_START","s":5,"op":0,"d":{body}}}"#),
        r#"{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{"id":1}}"#.to_owned(),
        r#"{"t":"MESSAGE_CREATE","s":5,"op":0}"#.to_owned(),
        format!(r#"{{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{body}"#),
        format!(r#" {{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{body}}}"#),
    ];
    for frame in &refused {
        assert!(
            decode_message_dispatch(frame.as_bytes()).is_none(),
            "{frame}"
        );
    }
    // A refused but well-formed MESSAGE_CREATE is still relayed (or reported)
    // by the general path.
    let mut h = H::new();
    h.live();
    let spaced = format!(r#" {{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{body}}}"#);
    assert_eq!(
        publishes(&h.feed(Input::Payload(spaced.as_bytes()))).len(),
        1
    );
    let broken = r#"{"t":"MESSAGE_CREATE","s":6,"op":0,"d":{"id":1}}"#;
    assert!(publishes(&h.feed(Input::Payload(broken.as_bytes()))).is_empty());
    assert_eq!(h.m.stats().malformed, 1);
    assert_eq!(h.m.stats().one_pass_messages, 0);
    // Skipped, but behind the unacknowledged seq 5 in the resume point.
    assert_eq!(h.committed(), 1);
    h.ack_front();
    assert_eq!(h.committed(), 6);
}

#[test]
fn a_message_create_firehose_still_gets_the_raw_body() {
    let mut cfg = config();
    cfg.raw_dispatch = vec!["MESSAGE_CREATE".into()];
    let mut h = H::with(cfg);
    h.live();
    let d = r#"{"id":"1","channel_id":"2","author":{"id":"3","username":"u"},"content":"c","timestamp":"t"}"#;
    let frame = format!(r#"{{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{d}}}"#);
    let out = h.feed(Input::Payload(frame.as_bytes()));
    let p = publishes(&out);
    assert_eq!(p.len(), 2, "the agent event and the raw dispatch");
    assert_eq!(p[0].kind, PublishKind::Agent(AgentEventKind::Message));
    assert_eq!(p[1].kind, PublishKind::Raw("MESSAGE_CREATE".into()));
    assert_eq!(p[1].body, d.as_bytes());
    assert_eq!(
        h.m.stats().one_pass_messages,
        0,
        "the firehose needs the raw body"
    );
}

/// A READY whose session id is not a plain token (here with CR/LF, which
/// would split the Nats-Msg-Id header) is a protocol violation: the session
/// is dropped with 1000 and a new one identified; nothing of it is relayed.
#[test]
fn a_ready_with_a_hostile_session_id_is_refused() {
    let mut h = H::new();
    h.feed(Input::Start);
    h.feed(Input::Opened);
    h.hello();
    h.feed(Input::IdentifyPermit);
    let out = h.ready(1, "sess\r\nX-Evil: 1");
    assert_eq!(close_code(&out), Some(1000));
    assert!(h.m.session().is_none());
    assert!(!h.m.is_live());
    let s = status(&out, ShardState::Disconnected);
    assert_eq!(s.reason.as_deref(), Some("bad_ready"));
    assert_eq!(s.will_resume, Some(false));
    assert!(!s.detail.contains('\n'), "{}", s.detail);
    assert_eq!(h.m.stats().malformed, 1);
    // The next connection identifies (not resumes) and works.
    let (url, out) = h.reconnect();
    assert!(url.starts_with(GATEWAY), "{url}");
    assert!(out.contains(&Action::RequestIdentify));
    h.feed(Input::IdentifyPermit);
    h.ready(1, "sess-2");
    assert!(h.m.is_live());
    assert_eq!(
        publishes(&h.dispatch(2, "MESSAGE_CREATE", &message(2, "1"))).len(),
        1
    );
}

/// Event names become subject tokens and headers: a name that is not a
/// plain upper-case token is skipped (its seq still handled), never relayed
/// raw under it.
#[test]
fn a_dispatch_with_a_hostile_event_name_is_skipped() {
    let mut cfg = config();
    cfg.raw_dispatch = vec!["GUILD_CREATE".into()];
    let mut h = H::with(cfg);
    h.live();
    for (seq, t) in [
        (2, "GUILD_CREATE.>"),
        (3, "A B"),
        (4, "X\r\nY"),
        (5, "guild_create"),
    ] {
        let out = h.dispatch(seq, t, &json!({"id": "1"}));
        assert_eq!(out, [Action::Skip { epoch: 1, seq }], "{t:?}");
    }
    assert_eq!(h.m.stats().malformed, 4);
    assert_eq!(h.committed(), 5);
    assert_eq!(
        publishes(&h.dispatch(6, "GUILD_CREATE", &json!({"id": "1"}))).len(),
        1
    );
}

/// Frames read after a beat prove the connection alive even while its ACK
/// is still queued behind them; silence after a beat is a zombie.
#[test]
fn a_busy_connection_is_not_a_zombie_but_a_silent_one_is() {
    let mut h = H::new();
    h.live();
    let out = h.next();
    assert!(sent_json(&out, SendKind::Heartbeat).is_some());
    h.dispatch(2, "TYPING_START", &json!({}));
    let out = h.next();
    assert!(sent_json(&out, SendKind::Heartbeat).is_some(), "{out:?}");
    assert_eq!(close_code(&out), None);
    let out = h.next();
    assert_eq!(close_code(&out), Some(4000));
    assert_eq!(
        status(&out, ShardState::Disconnected).reason.as_deref(),
        Some("zombie_connection")
    );
}

/// A shard handed over from a checkpoint RESUMEs the session at its resume
/// URL from the checkpointed seq, and does not relay replays at or below it.
#[test]
fn a_handed_over_session_is_resumed_from_its_checkpoint() {
    let mut cfg = config();
    cfg.resume = Some(Resume {
        session_id: "handed-over".into(),
        resume_url: RESUME_URL.to_owned(),
        seq: 41,
    });
    let mut h = H::with(cfg);
    let out = h.feed(Input::Start);
    let url = connect_url_of(&out).expect("connects");
    assert!(url.starts_with(RESUME_URL), "{url}");
    h.feed(Input::Opened);
    let out = h.hello();
    let resume = sent_json(&out, SendKind::Resume).expect("a RESUME, not an IDENTIFY");
    assert_eq!(resume["d"]["session_id"], "handed-over");
    assert_eq!(resume["d"]["seq"], 41);
    assert!(!out.contains(&Action::RequestIdentify));
    h.dispatch(42, "RESUMED", &json!({}));
    assert!(h.m.is_live());
    assert!(publishes(&h.dispatch(41, "MESSAGE_CREATE", &message(41, "1"))).is_empty());
    let out = h.dispatch(43, "MESSAGE_CREATE", &message(43, "1"));
    let p = publishes(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(&*p[0].session_id, "handed-over");
}

/// A live session whose buffer refuses seq 4 (2 is stored, 3 in flight).
fn paused(cfg: MachineConfig) -> H {
    let mut h = H::with(cfg);
    h.live();
    h.dispatch(2, "MESSAGE_CREATE", &message(2, "1"));
    h.ack_front();
    h.dispatch(3, "MESSAGE_CREATE", &message(3, "1"));
    h.refusing = true;
    h.dispatch(4, "MESSAGE_CREATE", &message(4, "1"));
    h.refusing = false;
    let out = h.feed(Input::PublishRejected { epoch: 1, seq: 4 });
    assert_eq!(close_code(&out), None, "a burst never closes: {out:?}");
    assert!(h.m.is_reading_paused());
    h
}

fn no_stall() -> MachineConfig {
    let mut cfg = config();
    cfg.stall_timeout = Duration::from_secs(24 * 3600);
    cfg
}

#[test]
fn a_full_buffer_with_nats_up_pauses_reading_and_keeps_heartbeating() {
    let mut h = paused(no_stall());
    assert_eq!(h.m.stats().read_pauses, 1);
    // Several intervals without reading: heartbeats go on, no zombie verdict.
    for round in 0..4 {
        let out = h.next();
        assert!(
            sent_json(&out, SendKind::Heartbeat).is_some(),
            "round {round}: {out:?}"
        );
        assert_eq!(close_code(&out), None, "round {round}");
    }
    // The kept event was taken: reading resumes, the session goes on.
    assert_eq!(h.feed(Input::PublisherReady), []);
    assert!(!h.m.is_reading_paused());
    let out = h.dispatch(5, "MESSAGE_CREATE", &message(5, "1"));
    assert_eq!(publishes(&out)[0].seq, 5);
    assert_eq!(h.m.stats().reconnects.total(), 0);
    assert_eq!(h.m.stats().nats_closes, 0);
}

#[test]
fn a_stalled_nats_with_a_full_buffer_closes_after_the_stall_timeout() {
    let mut cfg = config();
    cfg.stall_timeout = Duration::from_secs(10);
    let mut h = paused(cfg);
    assert_eq!(h.advance(Duration::from_secs(9)), []);
    // An ack is progress: the stall clock starts again.
    h.ack_front();
    assert_eq!(h.advance(Duration::from_secs(9)), []);
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(1)));
    let out = h.next();
    assert_eq!(close_code(&out), Some(4000));
    let s = status(&out, ShardState::Disconnected);
    assert_eq!(s.reason.as_deref(), Some("nats_backpressure"));
    assert!(
        s.detail.contains("no publish acknowledged for 10 s"),
        "{}",
        s.detail
    );
    assert_eq!(h.m.stats().nats_closes, 1);
    assert!(!h.m.is_reading_paused());
    // Once the publisher drained, a RESUME from what is stored.
    let out = h.feed(Input::PublisherReady);
    assert!(connect_url_of(&out).unwrap().starts_with(RESUME_URL));
    h.feed(Input::Opened);
    let out = h.hello();
    assert_eq!(sent_json(&out, SendKind::Resume).unwrap()["d"]["seq"], 3);
    // The refused event was never handled: its replay is relayed.
    let out = h.dispatch(4, "MESSAGE_CREATE", &message(4, "1"));
    assert_eq!(publishes(&out)[0].seq, 4);
}

#[test]
fn without_acks_a_full_buffer_closes_once_the_stall_timeout_passed() {
    let mut cfg = config();
    cfg.stall_timeout = Duration::from_secs(10);
    let mut h = paused(cfg);
    let out = h.advance(Duration::from_secs(10));
    assert_eq!(close_code(&out), Some(4000));
    h.feed(Input::PublisherReady);
    h.feed(Input::Opened);
    let out = h.hello();
    assert_eq!(sent_json(&out, SendKind::Resume).unwrap()["d"]["seq"], 2);
    // 3 is still in the publisher; 4 was refused, so its replay is relayed.
    assert!(publishes(&h.dispatch(3, "MESSAGE_CREATE", &message(3, "1"))).is_empty());
    let out = h.dispatch(4, "MESSAGE_CREATE", &message(4, "1"));
    assert_eq!(publishes(&out)[0].seq, 4);
}

#[test]
fn nats_going_down_while_paused_closes_at_once() {
    let mut h = paused(no_stall());
    let out = h.feed(Input::NatsDown);
    assert_eq!(close_code(&out), Some(4000));
    let s = status(&out, ShardState::Disconnected);
    assert!(s.detail.contains("NATS is disconnected"), "{}", s.detail);
    assert_eq!(h.m.stats().nats_closes, 1);
}

#[test]
fn nats_down_with_room_in_the_buffer_keeps_the_connection() {
    let mut h = H::new();
    h.live();
    assert_eq!(h.feed(Input::NatsDown), []);
    let out = h.dispatch(2, "MESSAGE_CREATE", &message(2, "1"));
    assert_eq!(publishes(&out).len(), 1);
    // Back up before the buffer filled: a later burst only pauses.
    h.feed(Input::NatsUp);
    h.dispatch(3, "MESSAGE_CREATE", &message(3, "1"));
    let out = h.feed(Input::PublishRejected { epoch: 1, seq: 3 });
    assert_eq!(close_code(&out), None);
}

/// Reading paused is not silence; but a connection that is silent once it
/// is read again is a zombie, caught within two intervals.
#[test]
fn a_real_zombie_is_caught_after_a_pause() {
    let mut h = paused(no_stall());
    for _ in 0..3 {
        assert_eq!(close_code(&h.next()), None);
    }
    h.feed(Input::PublisherReady);
    let resumed = h.now;
    let mut out = h.next();
    if close_code(&out).is_none() {
        assert!(sent_json(&out, SendKind::Heartbeat).is_some(), "{out:?}");
        out = h.next();
    }
    assert_eq!(close_code(&out), Some(4000));
    assert!(
        h.now >= resumed + Duration::from_millis(HB),
        "judged only after a full interval of reading"
    );
    assert_eq!(
        status(&out, ShardState::Disconnected).reason.as_deref(),
        Some("zombie_connection")
    );
}

#[test]
fn the_backlog_read_after_a_pause_proves_the_connection_alive() {
    let mut h = paused(no_stall());
    h.next();
    h.next();
    h.feed(Input::PublisherReady);
    h.dispatch(5, "MESSAGE_CREATE", &message(5, "1"));
    h.json(&json!({"op": 11}));
    for _ in 0..3 {
        let out = h.next();
        assert_eq!(close_code(&out), None, "{out:?}");
        h.json(&json!({"op": 11}));
    }
}

/// A RESUME replay fills the buffer before RESUMED: the pause does not
/// count against the handshake deadline.
#[test]
fn a_pause_during_the_resume_replay_extends_the_handshake_deadline() {
    let mut h = H::with(no_stall());
    h.live();
    h.dispatch(2, "MESSAGE_CREATE", &message(2, "1"));
    h.ack_front();
    h.feed(Input::Closed {
        code: None,
        reason: "reset".into(),
    });
    h.reconnect();
    let out = h.dispatch(3, "MESSAGE_CREATE", &message(3, "1"));
    assert_eq!(publishes(&out).len(), 1);
    h.feed(Input::PublishRejected { epoch: 1, seq: 3 });
    let paused_at = h.now;
    // Far past the 120 s handshake timeout, beats going on.
    while h.now < paused_at + Duration::from_secs(200) {
        assert_eq!(close_code(&h.next()), None);
    }
    h.feed(Input::PublisherReady);
    let out = h.dispatch(4, "RESUMED", &json!({}));
    assert_eq!(close_code(&out), None);
    assert!(h.m.is_live());
}

mod commands;
