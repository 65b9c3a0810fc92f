//! Builders of realistic dispatch bodies (`d`), derived from real payloads in
//! `fixtures/corpus` (sources and licenses in its `MANIFEST.json`) with fresh
//! ids and timestamps, so that what the simulator sends looks like what
//! Discord sends today.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::config::SimConfig;
use crate::shard::ShardId;

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

macro_rules! corpus {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/corpus/",
            $path
        ))
    };
}

/// docs: example message object (discord/discord-api-docs, MIT).
const MESSAGE: &str = corpus!("bodies/docs_example_message.json");
/// docs: example guild object (discord/discord-api-docs, MIT).
const GUILD: &str = corpus!("bodies/docs_example_guild.json");
/// docs: example slash-command interaction (discord/discord-api-docs, MIT).
const INTERACTION: &str = corpus!("bodies/docs_interaction_example_1.json");
/// A captured TYPING_START (andersfylling/disgord, BSD-3-Clause).
const TYPING: &str = corpus!("frames/disgord_typing_start.json");
/// A captured PRESENCE_UPDATE (andersfylling/disgord, BSD-3-Clause).
const PRESENCE: &str = corpus!("frames/disgord_presence_update.json");
/// A captured v10 GUILD_CREATE, whose members fill GUILD_MEMBERS_CHUNK
/// (DiscordBM/DiscordBM, Apache-2.0).
const MEMBERS: &str = corpus!("frames/discordbm_zlibcap_guild_create.json");

/// A parsed corpus template (the `d` of a whole frame). The files are part of
/// the crate and checked by a test; were one unreadable, the builders would
/// still produce the fields they set.
fn template(cell: &'static OnceLock<Value>, text: &'static str) -> Map<String, Value> {
    let value = cell.get_or_init(|| {
        let value: Value = serde_json::from_str(text).unwrap_or_else(|error| {
            tracing::error!(%error, "sim: unreadable corpus template");
            Value::Null
        });
        match value.get("d") {
            Some(d) if value.get("op").is_some() => d.clone(),
            _ => value,
        }
    });
    value.as_object().cloned().unwrap_or_default()
}

/// A user who takes part in simulated traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id.
    pub id: u64,
    /// The username.
    pub username: String,
    /// Whether the user is a bot (the bot's own messages have this set).
    pub bot: bool,
}

impl User {
    /// A human user.
    #[must_use]
    pub fn new(id: u64, username: &str) -> Self {
        Self {
            id,
            username: username.to_owned(),
            bot: false,
        }
    }

    /// The user object as Discord embeds it in messages and interactions.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut user = json!({
            "id": self.id.to_string(),
            "username": self.username,
            "discriminator": "0",
            "global_name": if self.bot { Value::Null } else { Value::from(self.username.clone()) },
            "avatar": null,
            "public_flags": 0,
        });
        if self.bot {
            user["bot"] = Value::Bool(true);
        }
        user
    }
}

fn now_ms() -> u64 {
    let now = OffsetDateTime::now_utc();
    u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(DISCORD_EPOCH_MS)
}

/// A fresh snowflake for the current time. Ids made in the same process are
/// unique and increasing: the low 12 bits come from a process-wide counter,
/// the only global state of the simulator, because the snowflake format
/// itself is process-wide.
#[must_use]
pub fn snowflake() -> u64 {
    static INCREMENT: AtomicU64 = AtomicU64::new(0);
    let increment = INCREMENT.fetch_add(1, Ordering::Relaxed) & 0xfff;
    let since_epoch = now_ms().saturating_sub(DISCORD_EPOCH_MS);
    (since_epoch << 22) | (1 << 17) | increment
}

/// The Unix time (milliseconds) a snowflake was made at.
#[must_use]
pub const fn snowflake_time_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// An ISO 8601 timestamp as Discord writes them
/// (`2017-07-11T17:27:07.299000+00:00`) for a Unix time in milliseconds.
#[must_use]
pub fn timestamp(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The text channel every simulated guild has (`#general`).
#[must_use]
pub const fn general_channel(guild_id: u64) -> u64 {
    guild_id + 1
}

/// The READY of a new session: only this shard's guilds, as unavailable.
#[must_use]
pub fn ready(config: &SimConfig, shard: ShardId, session_id: &str, resume_url: &str) -> Value {
    let guilds: Vec<Value> = super::protocol::guilds_of(config, shard)
        .map(|g| json!({"id": g.to_string(), "unavailable": true}))
        .collect();
    json!({
        "v": 10,
        "user": {
            "id": config.bot_user_id.to_string(),
            "username": config.bot_username,
            "bot": true,
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
            "verified": true,
            "mfa_enabled": false,
            "flags": 0,
        },
        "guilds": guilds,
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": resume_url,
        "shard": [shard.id, shard.total],
        "application": {"id": config.application_id.to_string(), "flags": 0},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "user_settings": {},
        "geo_ordered_rtc_regions": ["rotterdam", "milan", "madrid"],
        "_trace": ["[\"discord-bridge-sim\",{\"micros\":0,\"calls\":[]}]"],
    })
}

/// A GUILD_CREATE body for `guild_id`: Discord's example guild with a
/// `#general` and a `#bot-commands` channel and an `@everyone` role.
#[must_use]
pub fn guild_create(guild_id: u64) -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    let mut g = template(&CELL, GUILD);
    let id = guild_id.to_string();
    let joined = timestamp(snowflake_time_ms(guild_id).max(now_ms().saturating_sub(86_400_000)));
    let channel = |channel_id: u64, name: &str, position: u64| {
        json!({
            "id": channel_id.to_string(), "type": 0, "guild_id": id, "name": name,
            "position": position, "permission_overwrites": [], "topic": null, "nsfw": false,
            "last_message_id": null, "rate_limit_per_user": 0, "parent_id": null, "flags": 0,
        })
    };
    let fields = [
        ("id", Value::from(id.clone())),
        (
            "name",
            Value::from(format!("Sim Guild {}", guild_id % 10_000)),
        ),
        ("joined_at", Value::from(joined)),
        ("large", Value::Bool(false)),
        ("unavailable", Value::Bool(false)),
        ("member_count", Value::from(3)),
        (
            "roles",
            json!([{
                "id": id, "name": "@everyone", "color": 0, "hoist": false, "icon": null,
                "unicode_emoji": null, "position": 0, "permissions": "2222085186636353",
                "managed": false, "mentionable": false, "flags": 0,
            }]),
        ),
        (
            "channels",
            json!([
                channel(general_channel(guild_id), "general", 0),
                channel(guild_id + 2, "bot-commands", 1),
            ]),
        ),
        ("members", json!([])),
        ("presences", json!([])),
        ("voice_states", json!([])),
        ("threads", json!([])),
        ("stage_instances", json!([])),
        ("guild_scheduled_events", json!([])),
        ("soundboard_sounds", json!([])),
    ];
    for (key, value) in fields {
        g.insert(key.to_owned(), value);
    }
    Value::Object(g)
}

/// A guild member object without its user (as in MESSAGE_CREATE).
fn member(joined_ms: u64) -> Value {
    json!({
        "roles": [], "premium_since": null, "pending": false, "nick": null, "mute": false,
        "joined_at": timestamp(joined_ms), "flags": 0, "deaf": false,
        "communication_disabled_until": null, "avatar": null,
    })
}

/// A MESSAGE_CREATE body: a guild message when `guild_id` is set (with
/// `guild_id` and `member`), a DM otherwise (neither field, as Discord sends
/// them).
#[must_use]
pub fn message_create(
    channel_id: u64,
    guild_id: Option<u64>,
    author: &User,
    content: &str,
) -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    let mut m = template(&CELL, MESSAGE);
    let id = snowflake();
    let sent = snowflake_time_ms(id);
    m.remove("reactions");
    let fields = [
        ("id", Value::from(id.to_string())),
        ("channel_id", Value::from(channel_id.to_string())),
        ("author", author.to_json()),
        ("content", Value::from(content)),
        ("timestamp", Value::from(timestamp(sent))),
        ("nonce", Value::from(id.saturating_sub(1 << 22).to_string())),
        ("components", json!([])),
        ("flags", Value::from(0)),
    ];
    for (key, value) in fields {
        m.insert(key.to_owned(), value);
    }
    if let Some(guild) = guild_id {
        m.insert("guild_id".to_owned(), Value::from(guild.to_string()));
        m.insert("member".to_owned(), member(sent.saturating_sub(86_400_000)));
    }
    Value::Object(m)
}

/// An INTERACTION_CREATE body for the slash command `/command` with
/// `options` (an array of `{type, name, value}`), in a guild (with `member`)
/// or in a DM (with `user`).
#[must_use]
pub fn interaction_create(
    application_id: u64,
    channel_id: u64,
    guild_id: Option<u64>,
    user: &User,
    command: &str,
    options: Value,
) -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    let mut i = template(&CELL, INTERACTION);
    let id = snowflake();
    let token = format!(
        "sim-interaction-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    );
    // Command ids are stable per name, like a registered command's.
    let command_id = command.bytes().fold(1_100_000_000_000_000_000_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b)) % 1_300_000_000_000_000_000
    });
    let fields = [
        ("id", Value::from(id.to_string())),
        ("application_id", Value::from(application_id.to_string())),
        ("token", Value::from(token)),
        ("version", Value::from(1)),
        ("channel_id", Value::from(channel_id.to_string())),
        ("entitlements", json!([])),
        (
            "data",
            json!({
                "id": command_id.to_string(), "name": command, "type": 1, "options": options,
            }),
        ),
    ];
    for (key, value) in fields {
        i.insert(key.to_owned(), value);
    }
    let mut user_json = user.to_json();
    if let Some(guild) = guild_id {
        i.insert("guild_id".to_owned(), Value::from(guild.to_string()));
        i.insert("context".to_owned(), Value::from(0));
        let mut m = member(snowflake_time_ms(id).saturating_sub(86_400_000));
        m["user"] = user_json;
        m["permissions"] = Value::from("2222085186636353");
        i.insert("member".to_owned(), m);
        i.insert(
            "channel".to_owned(),
            json!({"id": channel_id.to_string(), "type": 0, "guild_id": guild.to_string()}),
        );
    } else {
        for key in ["guild_id", "guild_locale", "member"] {
            i.remove(key);
        }
        i.insert("context".to_owned(), Value::from(1));
        i.insert(
            "channel".to_owned(),
            json!({"id": channel_id.to_string(), "type": 1}),
        );
        user_json.as_object_mut().map(|u| u.remove("bot"));
        i.insert("user".to_owned(), user_json);
    }
    Value::Object(i)
}

/// A TYPING_START body (a captured one with fresh values).
#[must_use]
pub fn typing_start(channel_id: u64, guild_id: Option<u64>, user: &User) -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    let mut t = template(&CELL, TYPING);
    let now = now_ms();
    t.insert("user_id".to_owned(), Value::from(user.id.to_string()));
    t.insert("channel_id".to_owned(), Value::from(channel_id.to_string()));
    t.insert("timestamp".to_owned(), Value::from(now / 1000));
    match guild_id {
        Some(guild) => {
            t.insert("guild_id".to_owned(), Value::from(guild.to_string()));
            let mut m = member(now.saturating_sub(86_400_000));
            m["user"] = user.to_json();
            t.insert("member".to_owned(), m);
        }
        None => {
            t.remove("guild_id");
            t.remove("member");
        }
    }
    Value::Object(t)
}

/// A PRESENCE_UPDATE body (a captured one in today's shape: no `game`).
#[must_use]
pub fn presence_update(guild_id: u64, user: &User, status: &str) -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    let mut p = template(&CELL, PRESENCE);
    for key in ["game", "nick", "roles"] {
        p.remove(key);
    }
    p.insert("user".to_owned(), json!({"id": user.id.to_string()}));
    p.insert("guild_id".to_owned(), Value::from(guild_id.to_string()));
    p.insert("status".to_owned(), Value::from(status));
    p.insert("activities".to_owned(), json!([]));
    p.insert("client_status".to_owned(), json!({"desktop": status}));
    Value::Object(p)
}

#[cfg(test)]
mod tests;

/// The answer to a Request Guild Members (op 8): one GUILD_MEMBERS_CHUNK
/// with the members of a real captured guild, echoing `nonce` as Discord
/// does (it drops a nonce over 32 bytes). Asked for `user_ids`, it returns
/// the members with those ids and lists the others in `not_found`.
#[must_use]
pub fn guild_members_chunk(guild_id: u64, request: &Value) -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    let captured = template(&CELL, MEMBERS);
    let mut members = captured
        .get("members")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut not_found = Vec::new();
    if let Some(ids) = request.get("user_ids") {
        let wanted: Vec<String> = match ids {
            Value::Array(a) => a.iter().map(id_text).collect(),
            one => vec![id_text(one)],
        };
        members.retain(|m| wanted.contains(&id_text(&m["user"]["id"])));
        not_found = wanted
            .into_iter()
            .filter(|w| !members.iter().any(|m| id_text(&m["user"]["id"]) == *w))
            .map(Value::from)
            .collect();
    }
    for member in &mut members {
        member["guild_id"] = Value::from(guild_id.to_string());
    }
    let mut chunk = json!({
        "guild_id": guild_id.to_string(),
        "members": members,
        "chunk_index": 0,
        "chunk_count": 1,
        "not_found": not_found,
    });
    if let Some(nonce) = request
        .get("nonce")
        .and_then(Value::as_str)
        .filter(|n| n.len() <= 32)
    {
        chunk["nonce"] = Value::from(nonce);
    }
    if request.get("presences").and_then(Value::as_bool) == Some(true) {
        chunk["presences"] = json!([]);
    }
    chunk
}

/// An id as text, whether sent as a string or a number.
fn id_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
