//! The gateway protocol without IO.
//!
//! Everything here is a pure function of its inputs: time is passed in as an
//! `Instant`, randomness as a seeded generator, frames as bytes. The IO shell
//! in [`crate::io`] feeds the [`machine::Machine`] and carries out the
//! actions it returns.
//!
//! * [`machine`] — the session state machine of one shard;
//! * [`payload`] — decoding what Discord sends, encoding what we send;
//! * [`normalize`] — MESSAGE_CREATE / INTERACTION_CREATE → agent events;
//! * [`command`] — outbound commands from NATS: checked, routed, framed;
//! * [`heartbeat`], [`backoff`], [`ratelimit`], [`close`] — the policies;
//! * [`session`] — the session record;
//! * [`unacked`] — the one record of what is not yet stored, and the
//!   resume point derived from it;
//! * [`untrusted`] — checks on strings from the network before they reach
//!   a header, a subject or a log line;
//! * [`intents`], [`shard`], [`url`] — configuration vocabulary.

pub mod backoff;
pub mod close;
pub mod command;
pub mod heartbeat;
pub mod intents;
pub mod machine;
pub mod normalize;
pub mod payload;
pub mod ratelimit;
pub mod session;
pub mod shard;
pub mod unacked;
pub mod untrusted;
pub mod url;

pub use intents::Intents;
pub use machine::{Action, Input, Machine, MachineConfig};
pub use shard::{ShardId, ShardSpec};
