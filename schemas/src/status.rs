//! Status events: one JSON object per lifecycle transition of a shard,
//! published on `{prefix}.gateway.status` (the README's Subjects, headers and event shapes).

use serde::{Deserialize, Serialize};

/// The lifecycle state a status event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    /// Opening a WebSocket (new session or resume).
    Connecting,
    /// IDENTIFY sent or about to be sent, waiting for READY.
    Identifying,
    /// READY or RESUMED received: events flow.
    Connected,
    /// RESUME sent, waiting for RESUMED.
    Resuming,
    /// The connection ended; `will_resume` says what happens next.
    Disconnected,
    /// Waiting `delay_ms` before the next attempt.
    Backoff,
    /// Something went wrong; `fatal` says whether the shard stopped.
    Error,
    /// The process is stopping.
    ShuttingDown,
}

impl ShardState {
    /// The snake_case name used on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Identifying => "identifying",
            Self::Connected => "connected",
            Self::Resuming => "resuming",
            Self::Disconnected => "disconnected",
            Self::Backoff => "backoff",
            Self::Error => "error",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

/// A range of dispatch sequence numbers that could not be relayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// First sequence number of the range.
    pub from: u64,
    /// Last sequence number of the range (inclusive).
    pub to: u64,
}

/// One lifecycle transition of one shard.
///
/// Only `state`, `shard` and `detail` are always present; the other fields
/// appear when they mean something for the transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// The new state.
    pub state: ShardState,
    /// `[shard_id, shard_total]`.
    pub shard: [u32; 2],
    /// Gateway URL being connected to (never contains credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The gateway session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Where the session resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_url: Option<String>,
    /// The sequence a RESUME starts from (the last one stored by JetStream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// Machine-readable cause, e.g. `zombie_connection`, `reconnect_requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The close code Discord (or the bridge) closed the connection with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    /// Whether the next connection resumes the session (vs identifies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will_resume: Option<bool>,
    /// Consecutive failed attempts so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// How long the backoff waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Error message (errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether the shard stopped for good (errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
    /// Dispatches that were lost and could not be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<SeqRange>,
    /// Wall-clock time of the transition (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The bridge process that owns the shard (`host:pid:random`), when
    /// shard ownership is coordinated in NATS KV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A human-readable sentence describing the transition.
    pub detail: String,
}

impl StatusEvent {
    /// A status event with only the required fields set.
    #[must_use]
    pub fn new(state: ShardState, shard: [u32; 2], detail: impl Into<String>) -> Self {
        Self {
            state,
            shard,
            url: None,
            session_id: None,
            resume_url: None,
            last_seq: None,
            reason: None,
            close_code: None,
            will_resume: None,
            attempt: None,
            delay_ms: None,
            message: None,
            fatal: None,
            lost: None,
            at: None,
            owner: None,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_status_serializes_only_required_fields() {
        let ev = StatusEvent::new(ShardState::ShuttingDown, [0, 1], "bye");
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"state":"shutting_down","shard":[0,1],"detail":"bye"}"#
        );
    }
}

/// What the `discord-bridge` NATS service's `status` endpoint answers: the
/// state of every shard of one bridge process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeStatus {
    /// The bridge's version.
    pub version: String,
    /// `jetstream` or `core`.
    pub publish: String,
    /// One report per shard this process runs.
    pub shards: Vec<ShardReport>,
}

/// The state and counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardReport {
    /// `[shard_id, shard_total]`.
    pub shard: [u32; 2],
    /// The latest lifecycle state.
    pub state: Option<ShardState>,
    /// The gateway session, if any.
    pub session_id: Option<String>,
    /// The sequence a RESUME would start from (last stored in JetStream).
    pub last_seq: Option<u64>,
    /// When the current connection reached READY/RESUMED (RFC 3339).
    pub connected_since: Option<String>,
    /// Connections lost since start.
    pub reconnects: u64,
    /// Agent events handed to the publisher.
    pub events_relayed: u64,
    /// Messages by the bot itself, not relayed.
    pub own_messages: u64,
    /// Frames or bodies that could not be used.
    pub malformed: u64,
    /// Frames dropped for exceeding `discord.max_frame_bytes`.
    pub oversized: u64,
    /// Dispatches known to be lost.
    pub lost: u64,
    /// MESSAGE_CREATE dispatches decoded in one pass (Discord's key order,
    /// `t` before `d`). Absent in the reports of older bridges.
    #[serde(default)]
    pub one_pass_messages: u64,
    /// Times reading the gateway paused because the event buffer was full
    /// (TCP back-pressure, no reconnect). Absent in older reports.
    #[serde(default)]
    pub read_pauses: u64,
    /// Connections closed because NATS was down or stalled with the buffer
    /// full (also in `reconnects`). Absent in older reports.
    #[serde(default)]
    pub nats_closes: u64,
    /// Latest heartbeat round trip, in milliseconds.
    pub heartbeat_rtt_ms: Option<u64>,
    /// Events waiting to be stored in NATS.
    pub buffered: usize,
    /// The latest error message.
    pub last_error: Option<String>,
    /// The process that owns the shard (`host:pid:random`), when ownership
    /// is coordinated in NATS KV. Absent in the reports of older bridges.
    #[serde(default)]
    pub owner: Option<String>,
    /// When this process took the shard over (RFC 3339), if it did.
    #[serde(default)]
    pub owned_since: Option<String>,
}
