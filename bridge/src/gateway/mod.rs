//! The gateway protocol without IO.
//!
//! Everything here is a pure function of its inputs: time is passed in as an
//! `Instant`, randomness as a seeded generator, frames as bytes. The IO shell
//! in [`crate::io`] feeds it and carries out the actions it returns.

pub mod intents;
pub mod shard;

pub use intents::Intents;
pub use shard::{ShardId, ShardSpec};
