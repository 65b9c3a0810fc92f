//! Gateway payloads: a lean decoder for what Discord sends and builders for
//! what we send.
//!
//! Inbound frames are decoded with borrowed fields only: `d` stays raw JSON
//! (`&RawValue`) until the one place that needs to look inside it, so a
//! dispatch costs one validating scan plus the normalizer's reads.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::normalize::MessageIn;
use super::{Intents, ShardId};

/// Gateway opcodes.
pub mod op {
    /// An event was dispatched.
    pub const DISPATCH: u8 = 0;
    /// Keep-alive; Discord may also ask for one.
    pub const HEARTBEAT: u8 = 1;
    /// Start a new session.
    pub const IDENTIFY: u8 = 2;
    /// Resume a session.
    pub const RESUME: u8 = 6;
    /// Discord asks the client to reconnect and resume.
    pub const RECONNECT: u8 = 7;
    /// The session is invalid; `d` says whether it may be resumed.
    pub const INVALID_SESSION: u8 = 9;
    /// First message of a connection, with the heartbeat interval.
    pub const HELLO: u8 = 10;
    /// Acknowledges a heartbeat.
    pub const HEARTBEAT_ACK: u8 = 11;
}

/// One payload received from the gateway.
#[derive(Debug, Deserialize)]
pub struct Inbound<'a> {
    /// Opcode; wider than `u8` so that junk numbers are reported, not errors.
    pub op: u64,
    /// Event data, left as raw JSON. `None` when absent or `null`.
    #[serde(borrow, default)]
    pub d: Option<&'a RawValue>,
    /// Sequence number (dispatches only).
    #[serde(default)]
    pub s: Option<u64>,
    /// Event name (dispatches only).
    #[serde(borrow, default)]
    pub t: Option<Cow<'a, str>>,
}

/// Why a frame was skipped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// An empty frame.
    #[error("empty frame")]
    Empty,
    /// Not a JSON object.
    #[error("not a gateway payload: expected a JSON object")]
    NotAnObject,
    /// Not a JSON object with a numeric `op`.
    #[error("not a gateway payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes one payload.
///
/// # Errors
/// Empty input, invalid JSON, or JSON that is not a payload object.
pub fn decode(bytes: &[u8]) -> Result<Inbound<'_>, DecodeError> {
    // serde would also accept `[op, d, s, t]` as a struct: only objects are
    // payloads.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(DecodeError::Empty),
        Some(b'{') => Ok(serde_json::from_slice(bytes)?),
        Some(_) => Err(DecodeError::NotAnObject),
    }
}

/// A MESSAGE_CREATE dispatch decoded in a single pass over the frame: the
/// hot path. Discord writes `t` before `d`, so by the time `d` is reached its
/// type is known and it can be read straight into the fields the agent event
/// needs, instead of being scanned once as raw JSON and once more by the
/// normalizer.
pub(crate) struct MessageDispatch<'a> {
    /// The sequence number.
    pub(crate) seq: Option<u64>,
    /// The message fields.
    pub(crate) message: MessageIn<'a>,
    /// The size of the frame, to size the agent event.
    pub(crate) len: usize,
}

/// Decodes `bytes` as a MESSAGE_CREATE in one pass, or `None` when it is
/// anything else, or not in the usual field order, or malformed: the caller
/// then takes the general path, which reports problems precisely.
pub(crate) fn decode_message_dispatch(bytes: &[u8]) -> Option<MessageDispatch<'_>> {
    const PREFIX: &[u8] = br#"{"t":"MESSAGE_CREATE""#;
    if !bytes.starts_with(PREFIX) {
        return None;
    }
    let (seq, message) = serde_json::from_slice::<OnePass<'_>>(bytes).ok()?.0?;
    Some(MessageDispatch {
        seq,
        message,
        len: bytes.len(),
    })
}

/// `Some((s, d))` for a MESSAGE_CREATE whose `t` precedes `d`; `None` when
/// the order differs.
struct OnePass<'a>(Option<(Option<u64>, MessageIn<'a>)>);

impl<'de> Deserialize<'de> for OnePass<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

impl<'de> serde::de::Visitor<'de> for OnePassVisitor {
    type Value = OnePass<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a gateway payload")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let (mut is_message, mut op, mut seq, mut message) = (false, None, None, None);
        // A key seen twice is refused, as the general decoder (serde's
        // derive) refuses it: otherwise `{"t":"MESSAGE_CREATE","d":…,"t":"X"}`
        // would be relayed here and skipped there.
        let (mut seen_t, mut seen_s, mut seen_d) = (false, false, false);
        let once = |seen: &mut bool, name: &'static str| {
            if std::mem::replace(seen, true) {
                Err(A::Error::duplicate_field(name))
            } else {
                Ok(())
            }
        };
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "t" => {
                    once(&mut seen_t, "t")?;
                    is_message = map.next_value::<&'de str>()? == "MESSAGE_CREATE";
                }
                "op" => {
                    if op.is_some() {
                        return Err(A::Error::duplicate_field("op"));
                    }
                    op = Some(map.next_value::<u64>()?);
                }
                "s" => {
                    once(&mut seen_s, "s")?;
                    seq = map.next_value::<Option<u64>>()?;
                }
                "d" => {
                    once(&mut seen_d, "d")?;
                    if is_message {
                        message = Some(map.next_value::<MessageIn<'de>>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(OnePass(match (op, message) {
            (Some(op), Some(m)) if op == u64::from(op::DISPATCH) => Some((seq, m)),
            _ => None,
        }))
    }
}

/// `d` of HELLO.
#[derive(Debug, Deserialize)]
pub struct Hello {
    /// Milliseconds between heartbeats.
    pub heartbeat_interval: u64,
}

/// The parts of READY's `d` the bridge keeps.
#[derive(Debug, Deserialize)]
pub struct Ready<'a> {
    /// The session to resume later.
    #[serde(borrow)]
    pub session_id: Cow<'a, str>,
    /// Where to resume it.
    #[serde(borrow, default)]
    pub resume_gateway_url: Option<Cow<'a, str>>,
    /// The bot's own user.
    #[serde(borrow)]
    pub user: ReadyUser<'a>,
}

/// The bot user in READY.
#[derive(Debug, Deserialize)]
pub struct ReadyUser<'a> {
    /// Its id: messages by this author are not relayed.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Its name, for logs.
    #[serde(borrow, default)]
    pub username: Option<Cow<'a, str>>,
}

/// Connection properties sent in IDENTIFY.
#[derive(Debug, Clone, Serialize)]
pub struct Properties {
    /// Operating system.
    pub os: &'static str,
    /// Library name.
    pub browser: &'static str,
    /// Library name.
    pub device: &'static str,
}

impl Default for Properties {
    fn default() -> Self {
        Self {
            os: std::env::consts::OS,
            browser: "discord-bridge",
            device: "discord-bridge",
        }
    }
}

#[derive(Serialize)]
struct Envelope<D> {
    op: u8,
    d: D,
}

#[derive(Serialize)]
struct IdentifyData<'a> {
    token: &'a str,
    intents: u64,
    shard: [u32; 2],
    properties: &'a Properties,
    compress: bool,
    large_threshold: u32,
}

#[derive(Serialize)]
struct ResumeData<'a> {
    token: &'a str,
    session_id: &'a str,
    seq: u64,
}

/// `{"op":1,"d":seq}`.
#[must_use]
pub fn heartbeat(seq: Option<u64>) -> String {
    match seq {
        Some(s) => format!(r#"{{"op":1,"d":{s}}}"#),
        None => r#"{"op":1,"d":null}"#.to_owned(),
    }
}

/// IDENTIFY. The result contains the token: never log it.
#[must_use]
pub fn identify(token: &str, intents: Intents, shard: ShardId, properties: &Properties) -> String {
    encode(&Envelope {
        op: op::IDENTIFY,
        d: IdentifyData {
            token,
            intents: intents.bits(),
            shard: shard.pair(),
            properties,
            compress: false,
            large_threshold: 250,
        },
    })
}

/// RESUME. The result contains the token: never log it.
#[must_use]
pub fn resume(token: &str, session_id: &str, seq: u64) -> String {
    encode(&Envelope {
        op: op::RESUME,
        d: ResumeData {
            token,
            session_id,
            seq,
        },
    })
}

fn encode<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs to a String cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/corpus/frames");

    fn corpus(name: &str) -> Vec<u8> {
        std::fs::read(format!("{CORPUS}/{name}")).unwrap()
    }

    #[test]
    fn decodes_real_frames() {
        let hello = corpus("discordbm_zlibcap_op10.json");
        let p = decode(&hello).unwrap();
        assert_eq!(p.op, u64::from(op::HELLO));
        let h: Hello = serde_json::from_str(p.d.unwrap().get()).unwrap();
        assert!(h.heartbeat_interval > 0);

        let ready = corpus("discordbm_zlibcap_ready.json");
        let p = decode(&ready).unwrap();
        assert_eq!(p.t.as_deref(), Some("READY"));
        let r: Ready<'_> = serde_json::from_str(p.d.unwrap().get()).unwrap();
        assert!(!r.session_id.is_empty());
        assert!(r.resume_gateway_url.unwrap().starts_with("wss://"));

        let msg = corpus("discordbm_message_create.json");
        let p = decode(&msg).unwrap();
        assert_eq!(
            (p.op, p.s, p.t.as_deref()),
            (0, Some(130), Some("MESSAGE_CREATE"))
        );
    }

    #[test]
    fn edge_frames_from_kord() {
        let bytes = corpus("kord_op7_reconnect_no_d.json");
        let p = decode(&bytes).unwrap();
        assert_eq!((p.op, p.d.is_none()), (7, true));
        let bytes = corpus("kord_resumed_no_d.json");
        let p = decode(&bytes).unwrap();
        assert_eq!(p.t.as_deref(), Some("RESUMED"));
        let bytes = corpus("kord_op9_invalid_session_false.json");
        let p = decode(&bytes).unwrap();
        assert_eq!(p.d.unwrap().get(), "false");
    }

    #[test]
    fn rejects_junk() {
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"  \n"), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"[1,2]"), Err(DecodeError::NotAnObject)));
        assert!(matches!(
            decode(b" [1,null,3,\"T\"]"),
            Err(DecodeError::NotAnObject)
        ));
        assert!(decode(b"\"op\"").is_err());
        assert!(decode(b"{\"op\":\"x\"}").is_err());
        assert!(decode(b"{\"op\":0,").is_err());
        assert!(decode(b"{\"d\":{}}").is_err(), "op is required");
    }

    #[test]
    fn outbound_shapes() {
        assert_eq!(heartbeat(None), r#"{"op":1,"d":null}"#);
        assert_eq!(heartbeat(Some(42)), r#"{"op":1,"d":42}"#);
        let id = identify(
            "tok",
            Intents(4609),
            ShardId::new(1, 4),
            &Properties::default(),
        );
        let v: serde_json::Value = serde_json::from_str(&id).unwrap();
        assert_eq!(v["op"], 2);
        assert_eq!(v["d"]["token"], "tok");
        assert_eq!(v["d"]["intents"], 4609);
        assert_eq!(v["d"]["shard"], serde_json::json!([1, 4]));
        assert_eq!(v["d"]["properties"]["browser"], "discord-bridge");
        let r: serde_json::Value = serde_json::from_str(&resume("tok", "abc", 9)).unwrap();
        assert_eq!(
            r,
            serde_json::json!({"op":6,"d":{"token":"tok","session_id":"abc","seq":9}})
        );
    }
}
