//! End-to-end test support: a real `nats-server` per test and helpers.
//!
//! Every end-to-end test in this crate, and the adapter's tests, run against a
//! real `nats-server` rather than a mock, because the behaviour under test
//! (JetStream de-duplication, durable consumers, surviving a server restart)
//! is the server's. This crate makes that cheap and leak-free:
//!
//! * [`nats`] — [`NatsServer`]: one server per test on a free localhost port
//!   with its own temporary JetStream store, killed and reaped on drop (also
//!   when the test panics), restartable on the same port and store;
//! * [`wait`] — [`eventually`] / [`eventually_sync`]: wait for a condition
//!   with a deadline instead of sleeping for a fixed time;
//! * [`jetstream`] — read back every message of a stream in order, with its
//!   headers, payload and stream sequence, for assertions;
//! * [`process`] — run the `discord-bridge` binary (or any command) as a
//!   child process, capture its output line by line, send it signals;
//! * [`tls`] — a CA, server and client certificates generated per test;
//! * [`scrape`] — GETs to the bridge's operations endpoint, and a strict
//!   reader of the Prometheus text it serves;
//! * [`workspace`] — where the workspace, its target dir and `.tools` are;
//! * [`chaos`] — the chaos soak: every fault at once, every event accounted
//!   for.
//!
//! The `nats-server` binary is found through `NATS_SERVER_BIN`, then
//! `<workspace>/.tools/bin/nats-server` (installed by `scripts/test`), then
//! `PATH`. Tests fail rather than skip when it is missing: a skipped test
//! guards nothing.

pub mod chaos;
pub mod jetstream;
pub mod nats;
pub mod process;
pub mod schema;
pub mod scrape;
pub mod stack;
pub mod tls;
pub mod wait;
pub mod workspace;

pub use nats::{NatsCluster, NatsServer, NatsServerBuilder};
pub use process::{ChildProcess, Signal, bridge_binary, bridge_command};
pub use wait::{POLL_INTERVAL, eventually, eventually_sync};
