//! Names of the headers attached to every published event (the README's Subjects, headers and event shapes).

/// JetStream de-duplication id: `{session_id}:{seq}`.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The shard that received the event: `{id}/{total}`.
pub const SHARD: &str = "Discord-Shard";
/// The dispatch sequence number within its gateway session.
pub const SEQ: &str = "Discord-Seq";
/// The dispatch event name (`t`), e.g. `MESSAGE_CREATE`.
pub const EVENT: &str = "Discord-Event";
/// The guild the event belongs to, when it has one.
pub const GUILD: &str = "Discord-Guild";
/// The gateway session id the event was received on.
pub const SESSION: &str = "Discord-Session";
