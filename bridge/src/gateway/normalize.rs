//! Dispatches → agent events (the README's Subjects, headers and event shapes), on the hot path.
//!
//! Only the fields the capsule reads are looked at, and their JSON is copied
//! verbatim (strings keep their escapes), so normalizing costs one scan of
//! `d` and one buffer write — no `serde_json::Value` tree, no re-escaping.
//!
//! Every event it returns validates against the agent event schema
//! (`schemas/json/agent-event.v1.schema.json`) whatever the peer sent: ids
//! the schema calls snowflakes are checked (an event without usable ids is
//! refused), optional fields of the wrong type are left out, and the
//! document is kept within what serde_json consumers can parse (nesting
//! depth, number range; see [`super::untrusted::check_json`]).

use discord_bridge_schemas::AgentEventKind;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::untrusted::{self, JsonLimit};

/// An agent event ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// `message` or `interaction`.
    pub kind: AgentEventKind,
    /// The guild, for the `Discord-Guild` header.
    pub guild_id: Option<String>,
    /// The JSON document published on `{prefix}.agent.events`.
    pub body: Vec<u8>,
}

/// What became of one dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Relay this event.
    Relay(Normalized),
    /// A message the bot wrote itself: never relayed (the bot would answer
    /// itself forever).
    OwnMessage,
    /// Not an event the agent consumes.
    NotRelayed,
}

/// A relayable dispatch whose `d` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// `d` does not have the shape Discord documents.
    #[error("{event} has an unusable body: {source}")]
    Shape {
        /// The event name.
        event: &'static str,
        /// What did not parse.
        source: serde_json::Error,
    },
    /// A field has the wrong JSON type.
    #[error("{event} field {field} is not a {expected}")]
    FieldType {
        /// The event name.
        event: &'static str,
        /// The field.
        field: &'static str,
        /// The JSON type it should have.
        expected: &'static str,
    },
    /// The event would exceed what its consumers can parse.
    #[error("{event} {source}; not relayed")]
    Limit {
        /// The event name.
        event: &'static str,
        /// Which limit.
        source: JsonLimit,
    },
}

/// Normalizes one dispatch; `bot_user_id` is the bot's own id from READY.
///
/// # Errors
/// A MESSAGE_CREATE or INTERACTION_CREATE whose body is malformed.
pub fn normalize(
    event: &str,
    d: &RawValue,
    bot_user_id: Option<&str>,
) -> Result<Outcome, NormalizeError> {
    match event {
        "MESSAGE_CREATE" => message(d, bot_user_id),
        "INTERACTION_CREATE" => interaction(d),
        _ => Ok(Outcome::NotRelayed),
    }
}

/// The fields of a MESSAGE_CREATE body the agent event carries, borrowed
/// from the frame.
#[derive(Deserialize)]
pub(crate) struct MessageIn<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    channel_id: &'a str,
    #[serde(borrow, default)]
    guild_id: Option<&'a str>,
    #[serde(borrow)]
    author: AuthorIn<'a>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    message_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    flags: Option<&'a RawValue>,
    #[serde(borrow, default)]
    attachments: Option<&'a RawValue>,
    #[serde(borrow, default)]
    mentions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    mention_roles: Option<&'a RawValue>,
    #[serde(borrow, default)]
    mention_everyone: Option<&'a RawValue>,
    #[serde(borrow, default)]
    member: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message_reference: Option<&'a RawValue>,
    #[serde(borrow, default)]
    referenced_message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    webhook_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AuthorIn<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow, default)]
    username: Option<&'a RawValue>,
    #[serde(borrow, default)]
    global_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    bot: Option<&'a RawValue>,
}

/// The JSON type of a raw value, from its first byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Json {
    String,
    Number,
    Bool,
    Array,
    Object,
}

impl Json {
    fn of(raw: &RawValue) -> Option<Self> {
        match raw.get().as_bytes().first()? {
            b'"' => Some(Self::String),
            b'-' | b'0'..=b'9' => Some(Self::Number),
            b't' | b'f' => Some(Self::Bool),
            b'[' => Some(Self::Array),
            b'{' => Some(Self::Object),
            _ => None,
        }
    }
}

const MESSAGE_CREATE: &str = "MESSAGE_CREATE";

fn message(d: &RawValue, bot_user_id: Option<&str>) -> Result<Outcome, NormalizeError> {
    let m: MessageIn<'_> =
        serde_json::from_str(d.get()).map_err(|source| NormalizeError::Shape {
            event: MESSAGE_CREATE,
            source,
        })?;
    message_event(&m, bot_user_id, d.get().len())
}

/// The agent event of an already decoded MESSAGE_CREATE body (`len` is the
/// body's size, to size the output once).
pub(crate) fn message_event(
    m: &MessageIn<'_>,
    bot_user_id: Option<&str>,
    len: usize,
) -> Result<Outcome, NormalizeError> {
    if bot_user_id == Some(m.author.id) {
        return Ok(Outcome::OwnMessage);
    }
    let expect = |field, raw: Option<&RawValue>, ty: Json, expected| match raw {
        Some(r) if Json::of(r) != Some(ty) => Err(NormalizeError::FieldType {
            event: MESSAGE_CREATE,
            field,
            expected,
        }),
        _ => Ok(()),
    };
    snowflake(MESSAGE_CREATE, "id", m.id)?;
    snowflake(MESSAGE_CREATE, "channel_id", m.channel_id)?;
    snowflake(MESSAGE_CREATE, "author.id", m.author.id)?;
    snowflake_guild(MESSAGE_CREATE, m.guild_id)?;
    expect("content", m.content, Json::String, "string")?;
    expect("timestamp", m.timestamp, Json::String, "string")?;
    expect("author.username", m.author.username, Json::String, "string")?;

    let mut w = Writer(Vec::with_capacity(len / 2 + 160));
    w.raw(br#"{"type":"message","source":"gateway","payload":{"id":"#);
    w.string(m.id);
    w.key("channel_id");
    w.string(m.channel_id);
    w.key("guild_id");
    match m.guild_id {
        Some(g) => w.string(g),
        None => w.raw(b"null"),
    }
    w.raw(br#","author":{"id":"#);
    w.string(m.author.id);
    w.key("username");
    w.value_or(m.author.username, br#""""#);
    w.optional("global_name", m.author.global_name, Json::String);
    w.optional("bot", m.author.bot, Json::Bool);
    w.raw(b"}");
    w.key("content");
    w.value_or(m.content, br#""""#);
    w.key("timestamp");
    w.value_or(m.timestamp, b"null");
    w.optional_if("type", m.message_type, is_unsigned);
    w.optional_if("flags", m.flags, is_unsigned);
    w.optional("attachments", m.attachments, Json::Array);
    w.optional("mentions", m.mentions, Json::Array);
    w.optional("mention_roles", m.mention_roles, Json::Array);
    w.optional("mention_everyone", m.mention_everyone, Json::Bool);
    w.optional("member", m.member, Json::Object);
    w.optional("message_reference", m.message_reference, Json::Object);
    w.optional("referenced_message", m.referenced_message, Json::Object);
    w.optional_if("webhook_id", m.webhook_id, is_raw_snowflake);
    w.raw(b"}}");
    untrusted::check_json(&w.0).map_err(|source| NormalizeError::Limit {
        event: MESSAGE_CREATE,
        source,
    })?;
    Ok(Outcome::Relay(Normalized {
        kind: AgentEventKind::Message,
        guild_id: m.guild_id.map(str::to_owned),
        body: w.0,
    }))
}

/// The fields of an interaction the schema constrains; the rest is relayed
/// as it came. Optional fields are read even when `null` (see [`present`]):
/// the interaction is relayed verbatim, so a `null` the schema does not
/// allow would reach the capsule.
#[derive(Deserialize)]
struct InteractionIn<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow, rename = "type")]
    kind: &'a RawValue,
    #[serde(borrow, default, deserialize_with = "present")]
    guild_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    application_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    channel_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    token: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    member: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    user: Option<&'a RawValue>,
}

/// A field that is present, `null` included (serde reads a `null` option
/// as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

fn interaction(d: &RawValue) -> Result<Outcome, NormalizeError> {
    const EVENT: &str = "INTERACTION_CREATE";
    if Json::of(d) != Some(Json::Object) {
        return Err(NormalizeError::FieldType {
            event: EVENT,
            field: "d",
            expected: "object",
        });
    }
    let i: InteractionIn<'_> =
        serde_json::from_str(d.get()).map_err(|source| NormalizeError::Shape {
            event: EVENT,
            source,
        })?;
    // Relayed verbatim, so a field of the wrong type cannot be left out:
    // the interaction is refused instead.
    snowflake(EVENT, "id", i.id)?;
    let field = |field, ok: bool, expected| {
        if ok {
            Ok(())
        } else {
            Err(NormalizeError::FieldType {
                event: EVENT,
                field,
                expected,
            })
        }
    };
    let is = |raw: Option<&RawValue>, ty| raw.is_none_or(|r| Json::of(r) == Some(ty));
    field(
        "type",
        is_unsigned(i.kind) && i.kind.get() != "0",
        "positive integer",
    )?;
    for (name, raw) in [
        ("guild_id", i.guild_id),
        ("application_id", i.application_id),
        ("channel_id", i.channel_id),
    ] {
        field(
            name,
            raw.is_none_or(is_raw_snowflake),
            "snowflake (decimal digits)",
        )?;
    }
    field("token", is(i.token, Json::String), "string")?;
    field("data", is(i.data, Json::Object), "object")?;
    field("member", is(i.member, Json::Object), "object")?;
    field("user", is(i.user, Json::Object), "object")?;
    let raw = d.get().as_bytes();
    untrusted::check_json(raw).map_err(|source| NormalizeError::Limit {
        event: EVENT,
        source,
    })?;
    let mut body = Vec::with_capacity(raw.len() + 56);
    body.extend_from_slice(br#"{"type":"interaction","source":"gateway","payload":"#);
    body.extend_from_slice(raw);
    body.push(b'}');
    Ok(Outcome::Relay(Normalized {
        kind: AgentEventKind::Interaction,
        guild_id: i.guild_id.map(|g| g.get().trim_matches('"').to_owned()),
        body,
    }))
}

/// An id the schema calls a snowflake (and, for `id`, the capsule's key for
/// de-duplication) must be one.
fn snowflake(event: &'static str, field: &'static str, id: &str) -> Result<(), NormalizeError> {
    if untrusted::is_snowflake(id) {
        Ok(())
    } else {
        Err(NormalizeError::FieldType {
            event,
            field,
            expected: "snowflake (decimal digits)",
        })
    }
}

/// A raw JSON value that is a non-negative integer written without
/// fraction or exponent (Discord's `type` and `flags`).
fn is_unsigned(raw: &RawValue) -> bool {
    let b = raw.get().as_bytes();
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

/// A raw JSON value that is a string holding a snowflake.
fn is_raw_snowflake(raw: &RawValue) -> bool {
    raw.get()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .is_some_and(untrusted::is_snowflake)
}

/// A `guild_id` goes into the `Discord-Guild` header and picks a shard:
/// it must be a snowflake.
fn snowflake_guild(event: &'static str, guild_id: Option<&str>) -> Result<(), NormalizeError> {
    match guild_id {
        Some(g) if !untrusted::is_snowflake(g) => Err(NormalizeError::FieldType {
            event,
            field: "guild_id",
            expected: "snowflake (decimal digits)",
        }),
        _ => Ok(()),
    }
}

/// Appends JSON pieces. Borrowed `&str` fields come from JSON strings without
/// escapes, so quoting them is enough to write valid JSON.
struct Writer(Vec<u8>);

impl Writer {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn key(&mut self, name: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, s: &str) {
        self.0.push(b'"');
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(b'"');
    }

    fn value_or(&mut self, raw: Option<&RawValue>, default: &[u8]) {
        self.raw(raw.map_or(default, |r| r.get().as_bytes()));
    }

    /// Writes `"name":raw` when present with the expected JSON type; a value
    /// of another type is left out rather than passed on mislabelled.
    fn optional(&mut self, name: &str, raw: Option<&RawValue>, ty: Json) {
        self.optional_if(name, raw, |r| Json::of(r) == Some(ty));
    }

    /// Writes `"name":raw` when present and `ok`; otherwise leaves it out.
    fn optional_if(&mut self, name: &str, raw: Option<&RawValue>, ok: impl Fn(&RawValue) -> bool) {
        if let Some(r) = raw.filter(|r| ok(r)) {
            self.key(name);
            self.raw(r.get().as_bytes());
        }
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
