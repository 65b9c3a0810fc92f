//! Wire contracts of discord-bridge: the NATS subjects it publishes on, the
//! headers every event carries, and the JSON shapes of agent and status events.
//!
//! Everything here is part of a public contract that the Astrid Discord
//! capsule, the astridd adapter and operators' scripts depend on, so it lives
//! in its own small crate with no runtime dependencies.
//!
//! Layout:
//! * [`subject`] — subject builders (`{prefix}.agent.events`, …) and the
//!   JetStream message id;
//! * [`header`] — header names attached to every published event;
//! * [`agent`] — the agent event envelope (`{"type","source","payload"}`);
//! * [`status`] — lifecycle status events published per shard;
//! * [`command`] — gateway command requests and their replies;
//! * `json/` — the JSON Schema files ([`AGENT_EVENT_SCHEMA`],
//!   [`STATUS_EVENT_SCHEMA`], [`COMMAND_SCHEMA`], [`COMMAND_REPLY_SCHEMA`]),
//!   tested against these types so they cannot drift.
//!
//! # Versioning rule
//! Fields are only ever added, never removed or renamed, and the meaning of an
//! existing field never changes. Consumers must ignore fields they do not know.

#![warn(missing_docs)]

pub mod agent;
pub mod command;
pub mod header;
pub mod status;
pub mod subject;

pub use agent::{AgentEvent, AgentEventKind, Author, MessagePayload};

/// JSON Schema (draft 2020-12) of agent events.
pub const AGENT_EVENT_SCHEMA: &str = include_str!("../json/agent-event.v1.schema.json");
/// JSON Schema (draft 2020-12) of status events.
pub const STATUS_EVENT_SCHEMA: &str = include_str!("../json/status-event.v1.schema.json");
/// JSON Schema (draft 2020-12) of gateway command requests.
pub const COMMAND_SCHEMA: &str = include_str!("../json/gateway-command.v1.schema.json");
/// JSON Schema (draft 2020-12) of gateway command replies.
pub const COMMAND_REPLY_SCHEMA: &str = include_str!("../json/gateway-command-reply.v1.schema.json");
pub use command::{CommandErrorCode, CommandReply, GatewayCommand};
pub use status::{BridgeStatus, ShardReport, ShardState, StatusEvent};
