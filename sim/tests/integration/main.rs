//! The simulator's integration tests, in one binary:
//!
//! * `simulator` — the simulator driven by a plain WebSocket client, against
//!   Discord's documented Gateway v10 behaviour;
//! * `cross_check` — the simulator's reading of Discord's rules against the
//!   bridge's (shard formula, intents, compressed streams).

mod cross_check;
mod simulator;
