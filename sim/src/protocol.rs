//! Discord's side of the gateway protocol, without IO: one client payload in,
//! the simulator's answer out. Runs under the state lock, so every rule that
//! spans connections (identify buckets, session ownership) sees one
//! consistent state.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::config::SimConfig;
use super::events;
use super::record::{
    ClientPayload, ConnId, HeartbeatRecord, IdentifyRecord, Outcome, RefusalCause, ResumeRecord,
    Session, Violation, push_capped,
};
use super::state::{Command, Inner};
use crate::intents::{KNOWN_BITS, PRIVILEGED};
use crate::shard::ShardId;
use crate::shard::shard_for_guild;

/// Discord refuses client payloads above 4096 bytes.
pub(crate) const MAX_CLIENT_PAYLOAD: usize = 4096;

/// The answer to op 9.
pub(crate) const fn invalid_session(resumable: bool) -> &'static str {
    if resumable {
        r#"{"op":9,"d":true,"s":null,"t":null}"#
    } else {
        r#"{"op":9,"d":false,"s":null,"t":null}"#
    }
}

/// Op 11.
pub(crate) const HEARTBEAT_ACK: &str = r#"{"op":11,"d":null,"s":null,"t":null}"#;
/// Op 7.
pub(crate) const RECONNECT: &str = r#"{"op":7,"d":null,"s":null,"t":null}"#;
/// Op 1 sent by the server: the client must heartbeat at once.
pub(crate) const HEARTBEAT_REQUEST: &str = r#"{"op":1,"d":null,"s":null,"t":null}"#;

/// What the connection task must do, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this payload (through the compressor).
    Send(String),
    /// Send the session's pending dispatches.
    Flush,
    /// Close the connection with this code and reason.
    Close(u16, String),
}

fn close(code: u16, reason: &str) -> Vec<Action> {
    vec![Action::Close(code, reason.to_owned())]
}

/// What the protocol needs besides the state.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a SimConfig,
    pub(crate) resume_url: &'a str,
}

/// Handles one client payload (a text message, or a binary one that was
/// valid UTF-8).
pub(crate) fn on_payload(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    conn: ConnId,
    text: &str,
    now: Instant,
) -> Vec<Action> {
    let shard = inner.live.get(&conn).and_then(|l| l.shard);
    let parsed = serde_json::from_str::<Value>(text).ok();
    let op = parsed
        .as_ref()
        .and_then(|v| v.get("op"))
        .and_then(Value::as_u64);
    // Payloads past Discord's limit are refused below; keep only their head.
    let mut end = text.len().min(MAX_CLIENT_PAYLOAD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    push_capped(
        &mut inner.state.payloads,
        ClientPayload {
            conn,
            shard,
            op,
            raw: text[..end].to_owned(),
            at: now,
        },
    );
    if over_rate_limit(ctx.config, inner, conn, now) {
        inner.violation(Violation::SendRateExceeded { conn, shard }, now);
        return close(4008, "Rate limited.");
    }
    if text.len() > MAX_CLIENT_PAYLOAD {
        return close(4002, "Payload too large.");
    }
    let (Some(payload), Some(op)) = (parsed, op) else {
        return close(4002, "Decode error.");
    };
    let d = payload.get("d").unwrap_or(&Value::Null);
    match op {
        1 => heartbeat(inner, conn, d, now),
        2 => identify(ctx, inner, conn, d, now),
        6 => resume(ctx, inner, conn, d, now),
        // Request guild members: answered with a GUILD_MEMBERS_CHUNK.
        8 if authenticated(inner, conn) => members_chunk(ctx, inner, conn, d),
        // Presence update, voice state update, request soundboard sounds:
        // accepted without an answer.
        3 | 4 | 31 if authenticated(inner, conn) => Vec::new(),
        3 | 4 | 8 | 31 => close(4003, "Not authenticated."),
        _ => close(4001, "Unknown opcode."),
    }
}

/// One GUILD_MEMBERS_CHUNK dispatch for a guild of the connection's shard;
/// nothing for a guild the shard does not serve (Discord only knows the
/// members of its shard's guilds on a connection).
fn members_chunk(ctx: &Ctx<'_>, inner: &mut Inner, conn: ConnId, d: &Value) -> Vec<Action> {
    let guild = match d.get("guild_id") {
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(v) => v.as_u64(),
        None => None,
    };
    let Some(session_id) = inner.live.get(&conn).and_then(|l| l.session.clone()) else {
        return Vec::new();
    };
    let Some(shard) = inner.state.sessions.get(&session_id).map(|s| s.shard) else {
        return Vec::new();
    };
    let Some(guild) = guild
        .filter(|g| ctx.config.guilds.contains(g) && shard_for_guild(*g, shard.total) == shard.id)
    else {
        tracing::debug!(%conn, "sim: request guild members for a guild this shard does not serve");
        return Vec::new();
    };
    let chunk = events::guild_members_chunk(guild, d);
    let capacity = ctx.config.replay_capacity;
    inner.append(&session_id, "GUILD_MEMBERS_CHUNK", chunk, capacity);
    vec![Action::Flush]
}

fn over_rate_limit(config: &SimConfig, inner: &mut Inner, conn: ConnId, now: Instant) -> bool {
    let Some(live) = inner.live.get_mut(&conn) else {
        return false;
    };
    while live
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= config.send_window)
    {
        live.window.pop_front();
    }
    live.window.push_back(now);
    live.window.len() > config.send_limit
}

fn authenticated(inner: &Inner, conn: ConnId) -> bool {
    inner
        .live
        .get(&conn)
        .and_then(|l| l.session.as_ref())
        .and_then(|id| inner.state.sessions.get(id))
        .is_some_and(|s| !s.invalidated)
}

fn heartbeat(inner: &mut Inner, conn: ConnId, d: &Value, now: Instant) -> Vec<Action> {
    if !(d.is_null() || d.is_u64()) {
        return close(4002, "Decode error.");
    }
    let shard = inner.live.get_mut(&conn).and_then(|live| {
        live.last_heartbeat = now;
        live.shard
    });
    let acked = !shard.is_some_and(|s| inner.acks_paused.contains(&s));
    push_capped(
        &mut inner.state.heartbeats,
        HeartbeatRecord {
            conn,
            shard,
            d: d.clone(),
            acked,
            at: now,
        },
    );
    if acked {
        vec![Action::Send(HEARTBEAT_ACK.to_owned())]
    } else {
        Vec::new()
    }
}

fn identify(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    conn: ConnId,
    d: &Value,
    now: Instant,
) -> Vec<Action> {
    let mut record = IdentifyRecord {
        conn,
        shard: None,
        intents: None,
        outcome: Outcome::Closed(0),
        at: now,
    };
    let result = check_identify(ctx, inner, conn, d, now, &mut record);
    let actions = match result {
        Ok(shard) => {
            let session_id = start_session(ctx, inner, conn, shard, record.intents, now);
            tracing::debug!(%conn, %shard, "sim: identify accepted");
            record.outcome = Outcome::Ready { session_id };
            vec![Action::Flush]
        }
        Err((code, reason)) => {
            tracing::debug!(%conn, code, "sim: identify refused");
            record.outcome = Outcome::Closed(code);
            close(code, reason)
        }
    };
    inner.state.identifies.push(record);
    actions
}

type Refusal = (u16, &'static str);

fn check_identify(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    conn: ConnId,
    d: &Value,
    now: Instant,
    record: &mut IdentifyRecord,
) -> Result<ShardId, Refusal> {
    const DECODE: Refusal = (4002, "Decode error.");
    let config = ctx.config;
    if authenticated(inner, conn) {
        return Err((4005, "Already authenticated."));
    }
    let token = d.get("token").and_then(Value::as_str).ok_or(DECODE)?;
    if !d.get("properties").is_some_and(Value::is_object) {
        return Err(DECODE);
    }
    let shard = match d.get("shard") {
        None | Some(Value::Null) => ShardId::new(0, 1),
        Some(pair) => parse_shard(pair).ok_or(DECODE)?,
    };
    record.shard = Some(shard);
    record.intents = d.get("intents").and_then(Value::as_u64);
    if !token_matches(token, &config.token) {
        return Err((4004, "Authentication failed."));
    }
    if shard.total == 0 || shard.id >= shard.total {
        return Err((4010, "Invalid shard."));
    }
    let intents = record.intents.ok_or((4013, "Invalid intent(s)."))?;
    if intents & !KNOWN_BITS != 0 {
        return Err((4013, "Invalid intent(s)."));
    }
    if intents & PRIVILEGED & !config.privileged_allowed != 0 {
        return Err((4014, "Disallowed intent(s)."));
    }
    if guilds_of(config, shard).count() > config.max_guilds_per_shard {
        return Err((4011, "Sharding required."));
    }
    if inner.state.session_start_remaining == 0 {
        inner.violation(
            Violation::SessionStartLimitExhausted { shard: shard.id },
            now,
        );
        return Err((4004, "Authentication failed."));
    }
    let bucket = shard.bucket(config.max_concurrency);
    if let Some(last) = inner.last_identify.get(&bucket) {
        let since_previous = now.duration_since(*last);
        if since_previous < config.identify_floor {
            let violation = Violation::IdentifyTooSoon {
                bucket,
                shard: shard.id,
                since_previous,
            };
            inner.violation(violation, now);
            return Err((4008, "Rate limited."));
        }
    }
    inner.last_identify.insert(bucket, now);
    inner.state.session_start_remaining -= 1;
    Ok(shard)
}

fn parse_shard(pair: &Value) -> Option<ShardId> {
    let [id, total] = pair.as_array()?.as_slice() else {
        return None;
    };
    let id = u32::try_from(id.as_u64()?).ok()?;
    let total = u32::try_from(total.as_u64()?).ok()?;
    Some(ShardId::new(id, total))
}

/// The guilds `shard` announces.
pub(crate) fn guilds_of(config: &SimConfig, shard: ShardId) -> impl Iterator<Item = u64> + '_ {
    config
        .guilds
        .iter()
        .copied()
        .filter(move |g| shard_for_guild(*g, shard.total) == shard.id)
}

fn start_session(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    conn: ConnId,
    shard: ShardId,
    intents: Option<u64>,
    now: Instant,
) -> String {
    let id = inner
        .forced_session_ids
        .pop_front()
        .unwrap_or_else(|| format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)));
    inner.detach(conn);
    inner.state.sessions.insert(
        id.clone(),
        Session {
            id: id.clone(),
            shard,
            intents: intents.unwrap_or(0),
            seq: 0,
            delivered: 0,
            history: Default::default(),
            invalidated: false,
            attached: None,
            created: now,
        },
    );
    inner.attach(conn, &id, 0);
    let capacity = ctx.config.replay_capacity;
    let ready = events::ready(ctx.config, shard, &id, ctx.resume_url);
    inner.append(&id, "READY", ready, capacity);
    for guild in guilds_of(ctx.config, shard) {
        inner.append(&id, "GUILD_CREATE", events::guild_create(guild), capacity);
    }
    id
}

fn resume(ctx: &Ctx<'_>, inner: &mut Inner, conn: ConnId, d: &Value, now: Instant) -> Vec<Action> {
    if authenticated(inner, conn) {
        return close(4005, "Already authenticated.");
    }
    let token = d.get("token").and_then(Value::as_str);
    let session_id = d.get("session_id").and_then(Value::as_str);
    let seq = d.get("seq").and_then(Value::as_u64);
    let (Some(token), Some(session_id), Some(seq)) = (token, session_id, seq) else {
        return close(4002, "Decode error.");
    };
    let mut record = ResumeRecord {
        conn,
        session_id: session_id.to_owned(),
        seq,
        outcome: Outcome::InvalidSession,
        at: now,
    };
    let actions = if token_matches(token, &ctx.config.token) {
        resume_session(ctx, inner, conn, session_id, seq, &mut record)
    } else {
        record.outcome = Outcome::Closed(4004);
        close(4004, "Authentication failed.")
    };
    tracing::debug!(%conn, outcome = ?record.outcome, "sim: resume");
    inner.state.resumes.push(record);
    actions
}

fn resume_session(
    ctx: &Ctx<'_>,
    inner: &mut Inner,
    conn: ConnId,
    session_id: &str,
    seq: u64,
    record: &mut ResumeRecord,
) -> Vec<Action> {
    let invalid = || vec![Action::Send(invalid_session(false).to_owned())];
    let Some(session) = inner.state.sessions.get_mut(session_id) else {
        return invalid();
    };
    if session.invalidated {
        let refused = session.refused_after(seq, RefusalCause::ResumeRefused, record.at);
        inner.state.refusals.extend(refused);
        return invalid();
    }
    if seq > session.seq {
        record.outcome = Outcome::Closed(4007);
        return close(4007, "Invalid seq.");
    }
    if session
        .history
        .front()
        .is_some_and(|first| first.seq > seq + 1)
    {
        // The dispatches the client missed are gone: like a session Discord
        // can no longer replay.
        session.invalidated = true;
        let refused = session.refused_after(seq, RefusalCause::ReplayEvicted, record.at);
        inner.state.refusals.extend(refused);
        return invalid();
    }
    let replayed = session.seq - seq;
    if let Some(other) = session.attached.filter(|c| *c != conn) {
        // Resuming a session still attached elsewhere takes it over; the old
        // connection is closed.
        inner.detach(other);
        if let Some(live) = inner.live.get(&other) {
            let reason = "Session resumed on another connection.".to_owned();
            let _ = live.commands.try_send(Command::Close(4000, reason));
        }
    }
    inner.detach(conn);
    inner.attach(conn, session_id, seq);
    inner.append(session_id, "RESUMED", json!({}), ctx.config.replay_capacity);
    record.outcome = Outcome::Resumed { replayed };
    vec![Action::Flush]
}

#[cfg(test)]
mod tests;

/// Discord takes the bot token in IDENTIFY and RESUME with or without the
/// `Bot ` prefix of the REST header (some libraries send it).
fn token_matches(sent: &str, token: &str) -> bool {
    sent.strip_prefix("Bot ").unwrap_or(sent) == token
}
