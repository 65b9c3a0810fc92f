//! The pure mapping from what the bridge published (payload bytes and
//! headers) to the `AstridEvent` the capsule receives. No IO, no clock
//! besides the timestamps `astrid-events` stamps itself.
//!
//! The event is built exactly as the original in-process proxy would have
//! built it: `AstridEvent::Ipc { metadata:
//! EventMetadata::new("discord-gateway"), message: IpcMessage::new(
//! Topic::from_raw("{prefix}.agent.events"), IpcPayload::Custom { data },
//! source_id) }`, `principal` left `None` so the event is a system event that
//! reaches every principal's runtime, and `data` the published JSON value.

use std::io;

use astrid_events::ipc::Topic;
use astrid_events::{
    AstridEvent, EventMetadata, IpcMessage, IpcPayload, MAX_SUBSCRIPTION_BUDGET_BYTES,
};
use async_nats::HeaderMap;
use discord_bridge_schemas::header;
use serde_json::Value;
use uuid::Uuid;

/// `EventMetadata::source` of every emitted event.
pub const EVENT_SOURCE: &str = "discord-gateway";

/// The bridge's headers, for dedupe and structured logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeMeta {
    /// `Nats-Msg-Id`: `{session_id}:{seq}`.
    pub msg_id: Option<String>,
    /// `Discord-Shard`: `{id}/{total}`.
    pub shard: Option<String>,
    /// `Discord-Seq`.
    pub seq: Option<u64>,
    /// `Discord-Event`, e.g. `MESSAGE_CREATE`.
    pub event: Option<String>,
    /// `Discord-Guild`, absent for DMs.
    pub guild: Option<String>,
}

impl EnvelopeMeta {
    /// Reads the headers; missing or malformed ones are `None` (a message
    /// published by another tool is still relayed).
    #[must_use]
    pub fn from_headers(headers: Option<&HeaderMap>) -> Self {
        let Some(h) = headers else {
            return Self::default();
        };
        let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
        Self {
            msg_id: get(header::MSG_ID),
            shard: get(header::SHARD),
            seq: h.get(header::SEQ).and_then(|v| v.as_str().parse().ok()),
            event: get(header::EVENT),
            guild: get(header::GUILD),
        }
    }
}

/// Why a published message cannot become an event. Such messages are
/// terminated (never redelivered): retrying cannot fix them.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The payload is not JSON.
    #[error("payload is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// Routed bus subscriptions reject a single message larger than their
    /// byte budget without telling the publisher, so it would be "delivered"
    /// to nobody.
    #[error(
        "payload of {size} bytes is larger than the EventBus accepts per subscription ({limit} bytes)"
    )]
    TooLarge {
        /// Serialized size of the payload plus the topic, as the bus counts it.
        size: usize,
        /// `astrid_events::MAX_SUBSCRIPTION_BUDGET_BYTES`.
        limit: usize,
    },
}

/// Parses a payload into the JSON value to emit, and checks that the bus
/// will accept it on `topic`.
///
/// # Errors
/// [`MapError`] when the payload is not JSON or too large for the bus.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Value, MapError> {
    let data: Value = serde_json::from_slice(payload).map_err(MapError::NotJson)?;
    // The bus charges `to_guest_bytes()` (the compact JSON of `data`) plus
    // the topic length against a route's budget.
    let size = json_len(&data).saturating_add(topic.len());
    if size > MAX_SUBSCRIPTION_BUDGET_BYTES {
        return Err(MapError::TooLarge {
            size,
            limit: MAX_SUBSCRIPTION_BUDGET_BYTES,
        });
    }
    Ok(data)
}

/// The event for one published payload. `correlation` marks replays (see
/// the crate docs); live events have none.
#[must_use]
pub fn ipc_event(
    topic: &str,
    data: Value,
    source_id: Uuid,
    correlation: Option<Uuid>,
) -> AstridEvent {
    let mut metadata = EventMetadata::new(EVENT_SOURCE);
    metadata.correlation_id = correlation;
    AstridEvent::Ipc {
        metadata,
        message: IpcMessage::new(
            Topic::from_raw(topic),
            IpcPayload::Custom { data },
            source_id,
        ),
    }
}

/// The event's `payload.id` (the Discord message or interaction id): the
/// same on every delivery of the event, so a capsule can drop repeats and
/// acknowledge by it.
#[must_use]
pub fn payload_id(data: &Value) -> Option<String> {
    data.get("payload")?.get("id")?.as_str().map(str::to_owned)
}

/// Compact JSON length of `value`, without allocating the text.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "astrid-discord.agent.events";

    #[test]
    fn builds_the_exact_ipc_shape() {
        let raw = br#"{"type":"message","source":"gateway","payload":{"id":"1","content":"hi"}}"#;
        let data = decode(TOPIC, raw).unwrap();
        let source = Uuid::from_u128(42);
        let AstridEvent::Ipc { metadata, message } = ipc_event(TOPIC, data, source, None) else {
            panic!("not an IPC event");
        };
        assert_eq!(metadata.source, "discord-gateway");
        assert_eq!(metadata.correlation_id, None);
        assert_eq!(message.topic.as_str(), TOPIC);
        assert_eq!(message.source_id, source);
        assert_eq!(message.principal, None);
        assert_eq!(message.signature, None);
        let expected: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(message.payload, IpcPayload::Custom { data: expected });
        // What a capsule reads: the published JSON itself.
        let guest: Value =
            serde_json::from_slice(&message.payload.to_guest_bytes().unwrap()).unwrap();
        assert_eq!(guest, serde_json::from_slice::<Value>(raw).unwrap());
    }

    #[test]
    fn replays_carry_a_correlation_id() {
        let id = Uuid::from_u128(9);
        let ev = ipc_event(TOPIC, Value::Null, Uuid::nil(), Some(id));
        assert_eq!(ev.metadata().correlation_id, Some(id));
    }

    #[test]
    fn rejects_what_the_bus_cannot_carry() {
        assert!(matches!(
            decode(TOPIC, b"{not json"),
            Err(MapError::NotJson(_))
        ));
        let big = format!("\"{}\"", "x".repeat(MAX_SUBSCRIPTION_BUDGET_BYTES));
        assert!(matches!(
            decode(TOPIC, big.as_bytes()),
            Err(MapError::TooLarge { .. })
        ));
        let fits = format!(
            "\"{}\"",
            "x".repeat(MAX_SUBSCRIPTION_BUDGET_BYTES - TOPIC.len() - 2)
        );
        assert!(decode(TOPIC, fits.as_bytes()).is_ok());
    }

    #[test]
    fn the_payload_id_identifies_an_event() {
        let v: Value = serde_json::from_str(r#"{"type":"message","payload":{"id":"77"}}"#).unwrap();
        assert_eq!(payload_id(&v).as_deref(), Some("77"));
        assert_eq!(payload_id(&Value::from(1)), None);
    }

    #[test]
    fn json_len_is_the_compact_length() {
        let v: Value = serde_json::from_str(r#"{ "a" : [1, 2, "é"] }"#).unwrap();
        assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len());
    }

    #[test]
    fn reads_the_bridge_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::MSG_ID, "sess:7");
        h.insert(header::SHARD, "0/2");
        h.insert(header::SEQ, "7");
        h.insert(header::EVENT, "MESSAGE_CREATE");
        h.insert(header::GUILD, "123");
        let meta = EnvelopeMeta::from_headers(Some(&h));
        assert_eq!(meta.msg_id.as_deref(), Some("sess:7"));
        assert_eq!(meta.shard.as_deref(), Some("0/2"));
        assert_eq!(meta.seq, Some(7));
        assert_eq!(meta.event.as_deref(), Some("MESSAGE_CREATE"));
        assert_eq!(meta.guild.as_deref(), Some("123"));
        assert_eq!(EnvelopeMeta::from_headers(None), EnvelopeMeta::default());
        let mut bad = HeaderMap::new();
        bad.insert(header::SEQ, "x");
        assert_eq!(EnvelopeMeta::from_headers(Some(&bad)).seq, None);
    }
}
