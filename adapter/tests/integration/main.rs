//! The adapter's integration tests, in one binary (each test binary costs a
//! link on every run): a real nats-server per test, a real `EventBus`, and
//! a double of astridd's capsule dispatcher for the reload tests.

mod common;
mod double;
mod reloads;

mod bridge_chain;
mod core_mode;
mod delivery;
mod hold;
mod readme_wiring;
mod replay;
mod restart;
