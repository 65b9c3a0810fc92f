//! What the simulator saw and did, kept so that tests can assert on the
//! client's behaviour (what it sent, when, and how connections ended).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::compress::Compression;
use crate::shard::ShardId;

/// At most this many entries are kept in each list of client payloads,
/// heartbeats and HTTP requests (the oldest go first), so that a demo running
/// for days does not grow without bound.
pub const RECORD_CAP: usize = 50_000;

/// A connection number, in order of arrival (starting at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// Which WebSocket path a client connected to, so tests can tell a RESUME at
/// `resume_gateway_url` from a connection to the main gateway URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/gateway` (the URL of `GET /gateway/bot`).
    Gateway,
    /// `/resume` (READY's `resume_gateway_url`).
    Resume,
}

/// Who ended a connection, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The client sent a close frame.
    Client,
    /// The client went away without a close frame (EOF or transport error).
    ClientAbort,
    /// The simulator sent a close frame.
    Server,
    /// The simulator dropped the TCP connection without a close frame.
    ServerDrop,
    /// The simulator shut down.
    Shutdown,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Who ended it.
    pub by: Closer,
    /// The close code, when a close frame carried one.
    pub code: Option<u16>,
    /// The close reason (or the transport error).
    pub reason: String,
    /// When.
    pub at: Instant,
}

/// One WebSocket connection.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// Its number.
    pub id: ConnId,
    /// Which path it connected to.
    pub endpoint: Endpoint,
    /// The request path as sent (e.g. `/gateway/`).
    pub path: String,
    /// The raw query string (e.g. `v=10&encoding=json&compress=zlib-stream`).
    pub query: String,
    /// The transport compression in use.
    pub compression: Compression,
    /// The shard it served, once it identified or resumed.
    pub shard: Option<u32>,
    /// The session it served, once it identified or resumed.
    pub session_id: Option<String>,
    /// When the WebSocket opened.
    pub opened: Instant,
    /// How it ended; `None` while open.
    pub closed: Option<CloseInfo>,
}

/// One payload a client sent.
#[derive(Debug, Clone)]
pub struct ClientPayload {
    /// The connection it came on.
    pub conn: ConnId,
    /// The shard of that connection, if known at the time.
    pub shard: Option<u32>,
    /// Its `op`, if it parsed.
    pub op: Option<u64>,
    /// The payload as sent (IDENTIFY and RESUME include the token: this
    /// record never leaves the process); cut at 4096 bytes, Discord's limit.
    pub raw: String,
    /// When it arrived.
    pub at: Instant,
}

/// One client heartbeat (op 1).
#[derive(Debug, Clone)]
pub struct HeartbeatRecord {
    /// The connection.
    pub conn: ConnId,
    /// Its shard, if it had identified or resumed.
    pub shard: Option<u32>,
    /// The `d` it carried: the client's last sequence number, or null.
    pub d: Value,
    /// Whether the simulator answered with op 11.
    pub acked: bool,
    /// When it arrived.
    pub at: Instant,
}

/// What came of an IDENTIFY or a RESUME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// IDENTIFY accepted: READY starts this session.
    Ready {
        /// The new session.
        session_id: String,
    },
    /// RESUME accepted: this many dispatches were replayed before RESUMED.
    Resumed {
        /// Replayed dispatches.
        replayed: u64,
    },
    /// Answered with op 9 `d: false`.
    InvalidSession,
    /// Refused by closing the connection with this code.
    Closed(u16),
}

/// One IDENTIFY (op 2).
#[derive(Debug, Clone)]
pub struct IdentifyRecord {
    /// The connection.
    pub conn: ConnId,
    /// The `shard` it asked for (`[0, 1]` when absent).
    pub shard: Option<ShardId>,
    /// The intents it asked for.
    pub intents: Option<u64>,
    /// What came of it.
    pub outcome: Outcome,
    /// When it arrived.
    pub at: Instant,
}

/// One RESUME (op 6).
#[derive(Debug, Clone)]
pub struct ResumeRecord {
    /// The connection (see its [`Endpoint`]).
    pub conn: ConnId,
    /// The session it asked for.
    pub session_id: String,
    /// The sequence number it resumed from.
    pub seq: u64,
    /// What came of it.
    pub outcome: Outcome,
    /// When it arrived.
    pub at: Instant,
}

/// One HTTP request.
#[derive(Debug, Clone)]
pub struct HttpRecord {
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// Whether `Authorization: Bot <token>` was right.
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
    /// When.
    pub at: Instant,
}

/// A rule of Discord's that a client broke; tests of a well-behaved client
/// assert that there are none.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// Two IDENTIFYs in the same `max_concurrency` bucket closer than the
    /// identify floor.
    IdentifyTooSoon {
        /// The bucket (`shard_id % max_concurrency`).
        bucket: u32,
        /// The shard of the refused IDENTIFY.
        shard: u32,
        /// Time since the previous IDENTIFY of that bucket.
        since_previous: Duration,
    },
    /// More client payloads than the send limit within the window.
    SendRateExceeded {
        /// The connection.
        conn: ConnId,
        /// Its shard, if known.
        shard: Option<u32>,
    },
    /// An IDENTIFY with no session starts left.
    SessionStartLimitExhausted {
        /// The shard of the refused IDENTIFY.
        shard: u32,
    },
    /// No heartbeat within the configured heartbeat timeout.
    HeartbeatTimeout {
        /// The connection.
        conn: ConnId,
        /// Its shard, if known.
        shard: Option<u32>,
    },
}

/// A dispatch the simulator accepted
/// ([`Simulator::dispatch_tracked`](super::Simulator::dispatch_tracked)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// The shard.
    pub shard: u32,
    /// The session it belongs to.
    pub session_id: String,
    /// Its sequence number in that session.
    pub seq: u64,
}

/// Why the simulator will never send some dispatches of a session again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCause {
    /// A RESUME of a session that had ended: answered with op 9 `false`.
    ResumeRefused,
    /// A RESUME from further back than the replay buffer reaches: answered
    /// with op 9 `false`, and the session ended.
    ReplayEvicted,
    /// The simulator ended the session (op 9 `false`, a close code that
    /// ends sessions, an expiry) before it had sent these dispatches.
    EndedByServer,
    /// The client ended the session (close 1000/1001) before these
    /// dispatches were sent.
    EndedByClient,
}

/// Dispatches of a session that the simulator refused to deliver or replay:
/// what a client of the real Discord loses for good. A RESUME refusal covers
/// everything after the sequence the client resumed from (some of it may
/// have reached the client earlier); an ended session covers what no
/// connection was sent. Empty ranges are not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRecord {
    /// The session.
    pub session_id: String,
    /// Its shard.
    pub shard: u32,
    /// The first sequence number refused.
    pub from: u64,
    /// The last sequence number refused (the session's last dispatch).
    pub to: u64,
    /// Why.
    pub cause: RefusalCause,
    /// When.
    pub at: Instant,
}

impl RefusalRecord {
    /// Whether `seq` of `session_id` is in this range.
    #[must_use]
    pub fn covers(&self, session_id: &str, seq: u64) -> bool {
        self.session_id == session_id && (self.from..=self.to).contains(&seq)
    }
}

/// A violation and when it happened.
#[derive(Debug, Clone)]
pub struct ViolationRecord {
    /// What.
    pub violation: Violation,
    /// When.
    pub at: Instant,
}

/// One dispatch (op 0) of a session, kept for RESUME replay.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// Its sequence number.
    pub seq: u64,
    /// The event name (`t`).
    pub t: String,
    /// The event data (`d`); `Null` for a flood's dispatch, whose data is
    /// kept serialized ([`Dispatch::data`]).
    pub d: Value,
    /// The data as JSON text, for dispatches written by a flood.
    serialized: Option<Arc<str>>,
}

impl Dispatch {
    /// A dispatch with data `d`.
    #[must_use]
    pub const fn new(seq: u64, t: String, d: Value) -> Self {
        Self {
            seq,
            t,
            d,
            serialized: None,
        }
    }

    /// A dispatch whose data is already JSON text (a flood's).
    #[must_use]
    pub(crate) const fn serialized(seq: u64, t: String, d: Arc<str>) -> Self {
        Self {
            seq,
            t,
            d: Value::Null,
            serialized: Some(d),
        }
    }

    /// The data as JSON text.
    #[must_use]
    pub fn data(&self) -> String {
        self.serialized
            .as_deref()
            .map_or_else(|| self.d.to_string(), str::to_owned)
    }

    /// The payload as sent on the wire, in the key order Discord writes:
    /// `{"t":…,"s":…,"op":0,"d":…}`. Clients may rely on `t` coming before
    /// `d` to decode `d` in one pass, so the simulator must not reorder.
    #[must_use]
    pub fn to_json(&self) -> String {
        match &self.serialized {
            Some(d) => wire(&self.t, self.seq, d),
            None => {
                let t = Value::String(self.t.clone());
                format!(r#"{{"t":{t},"s":{},"op":0,"d":{}}}"#, self.seq, self.d)
            }
        }
    }
}

/// A dispatch payload from data already serialized; `t` is a plain event
/// name (no escaping needed).
pub(crate) fn wire(t: &str, seq: u64, d: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(t.len() + d.len() + 40);
    let _ = write!(out, r#"{{"t":"{t}","s":{seq},"op":0,"d":"#);
    out.push_str(d);
    out.push('}');
    out
}

/// A gateway session. Like Discord's, it outlives its connections: while no
/// connection is attached, dispatches are buffered for a RESUME.
#[derive(Debug, Clone)]
pub struct Session {
    /// `session_id` (32 hex digits).
    pub id: String,
    /// The shard it serves.
    pub shard: ShardId,
    /// The intents it identified with.
    pub intents: u64,
    /// The last sequence number it dispatched.
    pub seq: u64,
    /// The highest sequence number written to any of its connections.
    pub delivered: u64,
    /// The most recent dispatches (at most `replay_capacity`).
    pub history: VecDeque<Dispatch>,
    /// Invalidated sessions cannot be resumed (op 9 `false`).
    pub invalidated: bool,
    /// The connection it is delivered on, if any.
    pub attached: Option<ConnId>,
    /// When READY started it.
    pub created: Instant,
}

impl Session {
    /// The dispatches after `seq`, as a resuming client would get them.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &Dispatch> {
        self.history.iter().filter(move |d| d.seq > seq)
    }

    /// Its dispatches after `seq`, refused for `cause`; `None` when there
    /// are none.
    pub(crate) fn refused_after(
        &self,
        seq: u64,
        cause: RefusalCause,
        at: Instant,
    ) -> Option<RefusalRecord> {
        (self.seq > seq).then(|| RefusalRecord {
            session_id: self.id.clone(),
            shard: self.shard.id,
            from: seq + 1,
            to: self.seq,
            cause,
            at,
        })
    }
}

/// Everything the simulator recorded; read it with
/// [`Simulator::read`](super::Simulator::read) or wait for a condition on it
/// with [`Simulator::wait_for`](super::Simulator::wait_for).
#[derive(Debug, Clone, Default)]
pub struct SimState {
    /// Every WebSocket connection, by id.
    pub connections: BTreeMap<ConnId, ConnectionRecord>,
    /// Client payloads in order of arrival.
    pub payloads: VecDeque<ClientPayload>,
    /// Client heartbeats in order of arrival.
    pub heartbeats: VecDeque<HeartbeatRecord>,
    /// IDENTIFYs in order of arrival.
    pub identifies: Vec<IdentifyRecord>,
    /// RESUMEs in order of arrival.
    pub resumes: Vec<ResumeRecord>,
    /// HTTP requests in order of arrival.
    pub http: VecDeque<HttpRecord>,
    /// Broken rules.
    pub violations: Vec<ViolationRecord>,
    /// Dispatches refused for good, in order (see [`RefusalRecord`]).
    pub refusals: Vec<RefusalRecord>,
    /// Sessions by id.
    pub sessions: BTreeMap<String, Session>,
    /// The current session of each shard id (the last one READY or RESUMED).
    pub shard_sessions: BTreeMap<u32, String>,
    /// `session_start_limit.remaining`.
    pub session_start_remaining: u32,
}

impl SimState {
    /// The current session of `shard`, if any.
    #[must_use]
    pub fn session_of(&self, shard: u32) -> Option<&Session> {
        self.shard_sessions
            .get(&shard)
            .and_then(|id| self.sessions.get(id))
    }

    /// The heartbeats sent by connections of `shard`.
    pub fn heartbeats_of(&self, shard: u32) -> impl Iterator<Item = &HeartbeatRecord> {
        self.heartbeats
            .iter()
            .filter(move |h| h.shard == Some(shard))
    }

    /// The number of `GET /gateway/bot` requests.
    #[must_use]
    pub fn gateway_bot_requests(&self) -> usize {
        self.http
            .iter()
            .filter(|r| r.path.starts_with("/api/v10/gateway/bot"))
            .count()
    }

    /// The connection currently serving `shard`, if one is attached.
    #[must_use]
    pub fn connection_of(&self, shard: u32) -> Option<&ConnectionRecord> {
        let conn = self.session_of(shard)?.attached?;
        self.connections.get(&conn)
    }
}

/// Appends to a capped record list, dropping the oldest entry when full.
pub(crate) fn push_capped<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() >= RECORD_CAP {
        list.pop_front();
    }
    list.push_back(item);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dispatches_are_written_in_discords_key_order() {
        let d = Dispatch::new(
            7,
            "MESSAGE_CREATE".to_owned(),
            json!({"content": "hi \"there\""}),
        );
        let flooded = Dispatch::serialized(7, d.t.clone(), Arc::from(d.d.to_string()));
        assert_eq!(flooded.to_json(), d.to_json());
        assert_eq!(flooded.data(), d.data());
        assert_eq!(
            d.to_json(),
            r#"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"content":"hi \"there\""}}"#
        );
        let parsed: Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(
            parsed,
            json!({"op": 0, "t": "MESSAGE_CREATE", "s": 7, "d": d.d})
        );
    }
}
