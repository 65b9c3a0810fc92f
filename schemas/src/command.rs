//! Outbound gateway commands over NATS request/reply: what a caller sends on
//! `{prefix}.gateway.command` (or `{prefix}.gateway.command.{shard}`) and
//! what the bridge answers.
//!
//! A request is `{"op": 3|4|8|31, "d": {…}, "shard": <optional id>}`; the
//! reply is `{"ok": true, "shards": […]}` once the frame was written to the
//! gateway socket of each shard listed, or `{"ok": false, "code": "…",
//! "error": "…"}` with a stable [`CommandErrorCode`] and a sentence for
//! people, plus `retry_after_ms` when the shard's send budget (120 per 60 s,
//! heartbeats reserved) is spent.

use serde::{Deserialize, Serialize};

/// The largest request body the bridge reads: Discord closes a connection
/// that sends a payload over 4096 bytes (close code 4002), and the frame the
/// bridge writes is never longer than the request it came from.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// The opcodes a caller may send: presence update (3), voice state update
/// (4), request guild members (8), request soundboard sounds (31).
pub const COMMAND_OPS: [u8; 4] = [3, 4, 8, 31];

/// A gateway command request, as a caller builds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayCommand {
    /// The gateway opcode: 3, 4, 8 or 31.
    pub op: u8,
    /// The command's data, sent to Discord as is.
    pub d: serde_json::Value,
    /// Only for op 3: the one shard to update (default: every shard of the
    /// process). For the other ops, the shard of `d`'s guild; when given it
    /// must be that shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
}

/// Why a command was refused, as a stable machine-readable word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandErrorCode {
    /// Not JSON, not an object, unknown top-level field, `d` not an object,
    /// a required field of `d` missing or of the wrong type, a guild id that
    /// is not a snowflake, a shard out of range or not the guild's shard.
    BadRequest,
    /// An opcode callers may not send (1 heartbeat, 2 identify, 6 resume:
    /// the bridge's own) or one it does not relay.
    RefusedOp,
    /// The body is larger than [`MAX_COMMAND_BYTES`].
    TooLarge,
    /// The target shard is not run by the process that answered.
    NotOwned,
    /// The shard is run here but has no live session now (connecting,
    /// identifying, reconnecting), or its connection closed before the
    /// frame was written. Nothing was sent; retry.
    ShardNotConnected,
    /// The shard's send budget is spent; `retry_after_ms` says when a
    /// command fits again. Nothing was sent.
    RateLimited,
}

impl CommandErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::BadRequest,
        Self::RefusedOp,
        Self::TooLarge,
        Self::NotOwned,
        Self::ShardNotConnected,
        Self::RateLimited,
    ];

    /// The code as it appears in replies.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::RefusedOp => "refused_op",
            Self::TooLarge => "too_large",
            Self::NotOwned => "not_owned",
            Self::ShardNotConnected => "shard_not_connected",
            Self::RateLimited => "rate_limited",
        }
    }
}

impl std::fmt::Display for CommandErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bridge's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    /// Whether the frame was written to every target shard's gateway socket.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CommandErrorCode>,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `rate_limited`: milliseconds until a command fits the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The shard ids the frame was written to (with `ok: false`, the ones
    /// that got it before another failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<u32>,
}

impl CommandReply {
    /// Written to `shards`.
    #[must_use]
    pub const fn written(shards: Vec<u32>) -> Self {
        Self {
            ok: true,
            code: None,
            error: None,
            retry_after_ms: None,
            shards,
        }
    }

    /// Refused with `code`, nothing sent.
    #[must_use]
    pub fn refused(code: CommandErrorCode, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            code: Some(code),
            error: Some(error.into()),
            retry_after_ms: None,
            shards: Vec::new(),
        }
    }
}
