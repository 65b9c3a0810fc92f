//! Outbound gateway commands from NATS, without IO: a request body in, the
//! frames to write (and to which shards) or a refusal out.
//!
//! Everything a caller can get wrong is refused here, before anything
//! reaches a connection: Discord answers a bad payload by closing the
//! connection (4002 decode error, 4001 unknown opcode), which would cost
//! every other user of the shard a reconnect. So the parser checks what
//! Discord's documentation requires of each command's `d`, but passes `d`
//! through byte for byte (fields it does not know included): the bridge
//! does not rewrite what the caller asked Discord for.
//!
//! Routing: op 3 goes to every shard the process runs, or to `shard`; ops 4
//! and 8 go to the shard of `d.guild_id`, `(guild_id >> 22) % total`; op 31
//! to the shards of its `guild_ids`, split into one frame per shard when they
//! span several (each part carries only that shard's guilds), which the
//! process sends only if it runs all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use discord_bridge_schemas::command::MAX_COMMAND_BYTES;
use discord_bridge_schemas::{CommandErrorCode as Code, subject};

use super::shard::shard_for_guild;
use data::check_data;

mod data;

/// The longest nonce Discord echoes in GUILD_MEMBERS_CHUNK; a longer one is
/// silently dropped, so the caller would wait for a nonce that never comes.
pub const MAX_NONCE_BYTES: usize = 32;

/// A command a caller may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// op 3, Update Presence.
    Presence,
    /// op 4, Update Voice State.
    VoiceState,
    /// op 8, Request Guild Members.
    RequestMembers,
    /// op 31, Request Soundboard Sounds.
    SoundboardSounds,
}

impl Op {
    /// Every command, in opcode order.
    pub const ALL: [Self; 4] = [
        Self::Presence,
        Self::VoiceState,
        Self::RequestMembers,
        Self::SoundboardSounds,
    ];

    /// The gateway opcode.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Presence => 3,
            Self::VoiceState => 4,
            Self::RequestMembers => 8,
            Self::SoundboardSounds => 31,
        }
    }

    /// Its name in Discord's documentation.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Presence => "presence update",
            Self::VoiceState => "voice state update",
            Self::RequestMembers => "request guild members",
            Self::SoundboardSounds => "request soundboard sounds",
        }
    }

    fn from_code(op: u64) -> Result<Self, Refusal> {
        let refused = |why: String| Err(Refusal::new(Code::RefusedOp, why));
        match op {
            3 => Ok(Self::Presence),
            4 => Ok(Self::VoiceState),
            8 => Ok(Self::RequestMembers),
            31 => Ok(Self::SoundboardSounds),
            1 => refused(
                "op 1 (heartbeat) is the bridge's own: it heartbeats every connection itself"
                    .into(),
            ),
            2 => refused(
                "op 2 (identify) is the bridge's own: it identifies every shard itself".into(),
            ),
            6 => {
                refused("op 6 (resume) is the bridge's own: it resumes every session itself".into())
            }
            other => refused(format!(
                "op {other} is not a command the bridge relays; send 3 (presence update), \
                 4 (voice state update), 8 (request guild members) or 31 (request soundboard sounds)"
            )),
        }
    }
}

/// Why a command is not sent: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The machine-readable reason.
    pub code: Code,
    /// What was wrong and what to do.
    pub message: String,
    /// The command, when the request got as far as naming a valid one.
    pub op: Option<Op>,
}

impl Refusal {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            op: None,
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }
}

/// Where a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `{prefix}.gateway.command`, which every process receives.
    Any,
    /// `{prefix}.gateway.command.{shard}`, which only that shard's process
    /// receives.
    Shard(u32),
}

/// What the parser needs to know about the bot.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// `nats.subject_prefix`, for the subjects named in refusals.
    pub prefix: &'a str,
    /// The bot's shard count.
    pub total: u32,
}

/// Which shards a command is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Targets {
    /// Every shard of the process (op 3 without `shard`).
    Every,
    /// One shard.
    One(u32),
    /// op 31 guilds spanning several shards: each shard's guild ids.
    Split(BTreeMap<u32, Vec<Value>>),
}

/// A valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    op: Op,
    targets: Targets,
    /// `{"op":N,"d":…}` with the caller's `d` untouched.
    frame: String,
    /// `d` decoded, for splitting op 31.
    d: Map<String, Value>,
}

/// What the process that parsed a command does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Write these frames to these shards (all run here).
    Send(Vec<(u32, String)>),
    /// Some target shards are not run here. With `partial`, others are, but
    /// the command must go out whole or not at all.
    NotHere {
        /// The target shards this process does not run.
        missing: Vec<u32>,
        /// Whether some target shards are run here.
        partial: bool,
    },
    /// An op 3 for every shard, and the process runs none.
    Idle,
}

/// Parses and checks a request body.
///
/// # Errors
/// Every problem of the body, as a [`Refusal`]; nothing may be sent then.
pub fn parse(body: &[u8], via: Via, ctx: Context<'_>) -> Result<Command, Refusal> {
    if body.len() > MAX_COMMAND_BYTES {
        return Err(Refusal::new(
            Code::TooLarge,
            format!(
                "the request is {} bytes; Discord accepts gateway payloads of at most \
                 {MAX_COMMAND_BYTES} bytes",
                body.len()
            ),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad(
            r#"the request is empty; send {"op": 3|4|8|31, "d": {…}, "shard": <optional id>}"#,
        ));
    }
    let wire: Wire<'_> = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad(format!("the request is not a command object: {e}")))?;
    let op = wire
        .op
        .ok_or_else(|| Refusal::bad("the request has no \"op\""))
        .and_then(|raw| {
            serde_json::from_str::<u64>(raw.get())
                .map_err(|_| Refusal::bad("\"op\" must be a gateway opcode (an integer)"))
        })
        .and_then(Op::from_code)?;
    parse_command(op, &wire, via, ctx).map_err(|mut r| {
        r.op = Some(op);
        r
    })
}

/// Everything after the opcode.
fn parse_command(op: Op, wire: &Wire<'_>, via: Via, ctx: Context<'_>) -> Result<Command, Refusal> {
    let raw_d = wire
        .d
        .ok_or_else(|| Refusal::bad(format!("op {} needs a \"d\" object", op.code())))?;
    let d = match serde_json::from_str::<Value>(raw_d.get()) {
        Ok(Value::Object(d)) => d,
        _ => return Err(Refusal::bad("\"d\" must be an object")),
    };
    let shard = match wire.shard.map(|raw| serde_json::from_str::<u32>(raw.get())) {
        None => None,
        Some(Ok(s)) if s < ctx.total => Some(s),
        Some(Ok(s)) => {
            return Err(Refusal::bad(format!(
                "shard {s} is out of range: the bot runs {} shards (0 to {})",
                ctx.total,
                ctx.total.saturating_sub(1)
            )));
        }
        Some(Err(_)) => return Err(Refusal::bad("\"shard\" must be a shard id (an integer)")),
    };
    let guilds = check_data(op, &d)?;
    let targets = route(op, &guilds, shard, via, ctx)?;
    let mut frame = String::with_capacity(raw_d.get().len() + 16);
    let _ = write!(frame, r#"{{"op":{},"d":{}}}"#, op.code(), raw_d.get());
    if frame.len() > MAX_COMMAND_BYTES {
        return Err(Refusal::new(
            Code::TooLarge,
            format!(
                "the frame would be {} bytes; Discord accepts at most {MAX_COMMAND_BYTES}",
                frame.len()
            ),
        ));
    }
    Ok(Command {
        op,
        targets,
        frame,
        d,
    })
}

/// The request's top level, every field optional so that each missing one
/// gets its own message; unknown fields are refused (a misspelt `shard`
/// would otherwise turn a one-shard presence into a broadcast).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
    #[serde(borrow)]
    shard: Option<&'a RawValue>,
}

impl Command {
    /// The command.
    #[must_use]
    pub const fn op(&self) -> Op {
        self.op
    }

    /// The frame as written to one shard (op 31 parts aside).
    #[must_use]
    pub fn frame(&self) -> &str {
        &self.frame
    }

    /// What to do given the shards this process runs.
    #[must_use]
    pub fn plan(&self, running: &BTreeSet<u32>) -> Plan {
        match &self.targets {
            Targets::Every if running.is_empty() => Plan::Idle,
            Targets::Every => {
                Plan::Send(running.iter().map(|s| (*s, self.frame.clone())).collect())
            }
            Targets::One(s) if running.contains(s) => Plan::Send(vec![(*s, self.frame.clone())]),
            Targets::One(s) => Plan::NotHere {
                missing: vec![*s],
                partial: false,
            },
            Targets::Split(parts) => {
                let missing: Vec<u32> = parts
                    .keys()
                    .filter(|s| !running.contains(s))
                    .copied()
                    .collect();
                if missing.is_empty() {
                    Plan::Send(parts.iter().map(|(s, ids)| (*s, self.part(ids))).collect())
                } else {
                    Plan::NotHere {
                        partial: missing.len() < parts.len(),
                        missing,
                    }
                }
            }
        }
    }

    /// The op 31 frame for one shard's guilds.
    fn part(&self, guild_ids: &[Value]) -> String {
        let mut d = self.d.clone();
        d.insert("guild_ids".into(), Value::Array(guild_ids.to_vec()));
        format!(r#"{{"op":{},"d":{}}}"#, self.op.code(), Value::Object(d))
    }
}

/// The refusal for a command whose target shards are not run here, naming
/// where to send it instead.
#[must_use]
pub fn not_owned(op: Option<Op>, prefix: &str, missing: &[u32], partial: bool) -> Refusal {
    let list = missing
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let message = if partial {
        format!(
            "its guilds are on several shards and shard(s) {list} are not run by this process; \
             split the request and send each shard's part to {}.{{shard}}",
            subject::gateway_command(prefix)
        )
    } else if let [one] = missing {
        format!(
            "shard {one} is not run by this process; send to {}",
            subject::gateway_command_shard(prefix, *one)
        )
    } else {
        format!("shards {list} are not run by this process")
    };
    let mut refusal = Refusal::new(Code::NotOwned, message);
    refusal.op = op;
    refusal
}

/// Decides the target shards; refuses a `shard` or a subject that does not
/// match the guilds' shards.
fn route(
    op: Op,
    guilds: &[(u64, Value)],
    shard: Option<u32>,
    via: Via,
    ctx: Context<'_>,
) -> Result<Targets, Refusal> {
    let addressed = match (via, shard) {
        (Via::Shard(v), Some(s)) if v != s => {
            return Err(Refusal::bad(format!(
                "\"shard\": {s} contradicts the subject {}",
                subject::gateway_command_shard(ctx.prefix, v)
            )));
        }
        (Via::Shard(v), _) => Some(v),
        (Via::Any, s) => s,
    };
    if op == Op::Presence {
        return Ok(addressed.map_or(Targets::Every, Targets::One));
    }
    let mut parts: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    for (id, raw) in guilds {
        parts
            .entry(shard_for_guild(*id, ctx.total))
            .or_default()
            .push(raw.clone());
    }
    if let Some(want) = addressed
        && let Some((&other, ids)) = parts.iter().find(|(s, _)| **s != want)
    {
        return Err(Refusal::bad(format!(
            "guild {} is on shard {other} of {}, not shard {want}; send to {} or {}",
            ids[0],
            ctx.total,
            subject::gateway_command_shard(ctx.prefix, other),
            subject::gateway_command(ctx.prefix)
        )));
    }
    Ok(match parts.len() {
        1 => Targets::One(parts.keys().next().copied().unwrap_or_default()),
        _ => Targets::Split(parts),
    })
}

#[cfg(test)]
mod tests;
