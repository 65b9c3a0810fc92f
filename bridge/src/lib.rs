//! discord-bridge: holds Discord Gateway sessions and publishes their events
//! to NATS (JetStream by default), so that sandboxed bots — Astrid WASM
//! capsules first of all — get Discord events without opening a socket.
//!
//! Layout:
//! * [`gateway`] — the protocol as a pure state machine (no sockets, no
//!   clock): heartbeats, identify/resume, close codes, backoff, rate limits,
//!   normalization of dispatches into agent events;
//! * [`codec`] — transport decompression (`zlib-stream`, `zstd-stream`);
//! * `io` — the async shell around the machine (private): the supervisor
//!   and its tasks, WebSocket, NATS publisher; its entry points are [`run`]
//!   and [`Bridge`];
//! * [`config`] — configuration (defaults < TOML < environment);
//! * [`health`] — the readiness rules of `/readyz`, as a pure function;
//!   [`healthcheck`] — the `healthcheck` command that asks it;
//! * [`secret`] — the redacting wrapper for tokens and credentials.

#![warn(missing_docs)]

pub mod cli;
pub mod codec;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
mod failpoint;
pub mod gateway;
pub mod health;
pub mod healthcheck;
mod io;
pub mod logging;
#[cfg(test)]
mod prop_support;
pub mod secret;
pub mod tls;

pub use config::Config;
pub use error::RunError;
pub use io::ownership::{Checkpoint, Owner, ShardView};
pub use io::publisher::{EventHeaders, HeaderError};
pub use io::shard::ShardEnd;
pub use io::tasks::{Cause, TaskId};
pub use io::{Bridge, run, shard_view};
