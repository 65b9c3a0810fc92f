//! What Discord requires of each command's `d`, checked before anything is
//! sent: a payload Discord cannot use costs the whole shard a reconnect.

use serde_json::{Map, Value};

use super::{MAX_NONCE_BYTES, Op, Refusal};

/// Checks `d` against what Discord requires of `op`; returns the guild ids
/// it addresses (none for op 3).
pub(super) fn check_data(op: Op, d: &Map<String, Value>) -> Result<Vec<(u64, Value)>, Refusal> {
    let field = |name: &str| d.get(name);
    let need = |name: &str, ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(Refusal::bad(format!(
                "op {} needs d.{name}: {what}",
                op.code()
            )))
        }
    };
    match op {
        Op::Presence => {
            need(
                "since",
                field("since").is_some_and(|v| v.is_null() || v.is_i64() || v.is_u64()),
                "null or a Unix time in milliseconds",
            )?;
            need(
                "activities",
                field("activities")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().all(Value::is_object)),
                "an array of activity objects",
            )?;
            need(
                "status",
                field("status").and_then(Value::as_str).is_some_and(|s| {
                    matches!(s, "online" | "dnd" | "idle" | "invisible" | "offline")
                }),
                "one of online, dnd, idle, invisible, offline",
            )?;
            need(
                "afk",
                field("afk").is_some_and(Value::is_boolean),
                "true or false",
            )?;
            Ok(Vec::new())
        }
        Op::VoiceState => {
            let guild = guild_id(op, d)?;
            need(
                "channel_id",
                field("channel_id").is_some_and(|v| v.is_null() || snowflake(v).is_some()),
                "a voice channel id, or null to leave",
            )?;
            need(
                "self_mute",
                field("self_mute").is_some_and(Value::is_boolean),
                "true or false",
            )?;
            need(
                "self_deaf",
                field("self_deaf").is_some_and(Value::is_boolean),
                "true or false",
            )?;
            Ok(vec![guild])
        }
        Op::RequestMembers => {
            let guild = guild_id(op, d)?;
            let query = field("query");
            let user_ids = field("user_ids");
            if query.is_none() && user_ids.is_none() {
                return Err(Refusal::bad(
                    "op 8 needs d.query (with d.limit) or d.user_ids",
                ));
            }
            if query.is_some() {
                need(
                    "query",
                    query.is_some_and(Value::is_string),
                    "a string (a username prefix, or empty for all)",
                )?;
                need(
                    "limit",
                    field("limit").is_some_and(Value::is_u64),
                    "a member count (0 for all) with a query",
                )?;
            } else if let Some(limit) = field("limit") {
                need("limit", limit.is_u64(), "a member count")?;
            }
            if let Some(ids) = user_ids {
                let ok = snowflake(ids).is_some()
                    || ids
                        .as_array()
                        .is_some_and(|a| a.iter().all(|v| snowflake(v).is_some()));
                need("user_ids", ok, "a user id or an array of user ids")?;
            }
            if let Some(p) = field("presences") {
                need("presences", p.is_boolean(), "true or false")?;
            }
            if let Some(n) = field("nonce") {
                let ok = n.as_str().is_some_and(|s| s.len() <= MAX_NONCE_BYTES);
                need(
                    "nonce",
                    ok,
                    "a string of at most 32 bytes (Discord drops longer ones)",
                )?;
            }
            Ok(vec![guild])
        }
        Op::SoundboardSounds => {
            let ids = field("guild_ids")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty());
            let ids = ids.ok_or_else(|| {
                Refusal::bad("op 31 needs d.guild_ids: a non-empty array of guild ids")
            })?;
            ids.iter()
                .map(|v| {
                    snowflake(v).map(|g| (g, v.clone())).ok_or_else(|| {
                        Refusal::bad(format!(
                            "d.guild_ids holds {v}, which is not a guild id (a snowflake)"
                        ))
                    })
                })
                .collect()
        }
    }
}

fn guild_id(op: Op, d: &Map<String, Value>) -> Result<(u64, Value), Refusal> {
    match d.get("guild_id") {
        None => Err(Refusal::bad(format!(
            "op {} needs d.guild_id: it decides which shard sends it",
            op.code()
        ))),
        Some(Value::Array(_)) => Err(Refusal::bad(format!(
            "op {} takes one d.guild_id per request (Discord's rule)",
            op.code()
        ))),
        Some(v) => snowflake(v)
            .map(|g| (g, v.clone()))
            .ok_or_else(|| Refusal::bad(format!("d.guild_id {v} is not a guild id (a snowflake)"))),
    }
}

/// A snowflake as Discord writes it (a string of digits) or as a number.
fn snowflake(v: &Value) -> Option<u64> {
    match v {
        Value::String(s)
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}
