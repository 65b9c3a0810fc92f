//! Agent events: what the Astrid Discord capsule receives on
//! `{prefix}.agent.events`.
//!
//! The bridge writes these bytes on its hot path without going through these
//! types (it copies the raw JSON of each field), so the types here are the
//! consumer-side view and the reference the bridge is tested against.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only value of [`AgentEvent::source`] the bridge emits.
pub const SOURCE_GATEWAY: &str = "gateway";

/// One event as published on `{prefix}.agent.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// What the payload is: the capsule dispatches on this string.
    #[serde(rename = "type")]
    pub kind: AgentEventKind,
    /// Where the event came from: `"gateway"`.
    pub source: String,
    /// A [`MessagePayload`] for messages, Discord's interaction object for
    /// interactions.
    pub payload: Value,
}

impl AgentEvent {
    /// Decodes the payload of a `"message"` event.
    ///
    /// # Errors
    /// Fails when the event is not a message or the payload does not match.
    pub fn message(&self) -> Result<MessagePayload, serde_json::Error> {
        if self.kind != AgentEventKind::Message {
            return Err(serde::de::Error::custom("not a message event"));
        }
        MessagePayload::deserialize(&self.payload)
    }
}

/// The `type` of an agent event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentEventKind {
    /// A `MESSAGE_CREATE` not authored by the bot itself.
    Message,
    /// An `INTERACTION_CREATE`; the payload is the interaction object verbatim.
    Interaction,
}

impl AgentEventKind {
    /// The string the capsule matches on.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Interaction => "interaction",
        }
    }
}

/// The payload of a `"message"` event: the fields of Discord's message object
/// that the capsule reads, plus optional extras that are passed through
/// untouched when Discord sent them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagePayload {
    /// Message id (snowflake).
    pub id: String,
    /// Channel id (snowflake).
    pub channel_id: String,
    /// Guild id; `None` (JSON `null`) for direct messages.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// Who wrote the message.
    pub author: Author,
    /// Message text; empty without the MESSAGE_CONTENT intent unless the bot
    /// is mentioned.
    pub content: String,
    /// ISO 8601 timestamp of the message.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Discord's message type number.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<u64>,
    /// Message flags bitfield.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    /// Attachment objects, as Discord sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
    /// Mentioned users, as Discord sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Value>,
    /// Mentioned role ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention_roles: Option<Value>,
    /// Whether `@everyone` was mentioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention_everyone: Option<bool>,
    /// The guild member object of the author (guild messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Value>,
    /// Reply / crosspost / forward reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_reference: Option<Value>,
    /// The message replied to, when Discord included it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referenced_message: Option<Value>,
    /// Set when a webhook sent the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
}

/// The author of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Author {
    /// User id (snowflake).
    pub id: String,
    /// Username.
    pub username: String,
    /// Display name, when the user set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_name: Option<String>,
    /// Whether the author is a bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_event_round_trips() {
        let raw = r#"{"type":"message","source":"gateway","payload":{"id":"1","channel_id":"2","guild_id":null,"author":{"id":"3","username":"u"},"content":"hi","timestamp":"2024-01-01T00:00:00+00:00"}}"#;
        let event: AgentEvent = serde_json::from_str(raw).unwrap();
        assert_eq!(event.kind, AgentEventKind::Message);
        let msg = event.message().unwrap();
        assert_eq!(msg.guild_id, None);
        assert_eq!(msg.author.username, "u");
        assert_eq!(msg.content, "hi");
    }

    #[test]
    fn interaction_is_not_a_message() {
        let raw = r#"{"type":"interaction","source":"gateway","payload":{"type":2}}"#;
        let event: AgentEvent = serde_json::from_str(raw).unwrap();
        assert_eq!(event.kind.as_str(), "interaction");
        assert!(event.message().is_err());
    }
}
