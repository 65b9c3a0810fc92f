//! The chaos soak: the README's delivery guarantees, measured.
//!
//! Events go through the simulator to two bridge processes (one running
//! both shards, one standing by) and a 3-node NATS cluster, while every
//! fault the bridge claims to survive is injected in a seeded order
//! ([`faults`]). At the end the whole stream is read and reconciled
//! ([`audit`]) with what was sent, what the simulator refused to deliver or
//! replay, and what the bridge reported lost on its status subject:
//! nothing may be lost unless both sides account for it, nothing stored
//! twice, no session started that no fault called for, no Discord rule
//! broken, and no process may exit on its own. Events stored out of
//! Discord's order are counted (a publish lost in a NATS failover is stored
//! when retried, after those pipelined behind it).
//!
//! * [`faults`] — the fault kinds and the seeded schedule;
//! * [`soak`] — the driver: [`run`] with [`SoakOptions`] (`CHAOS_*`);
//! * `inject` — each fault, and the recovery it waits for;
//! * [`traffic`] — the paced event generator;
//! * [`fleet`] — the bridge processes;
//! * [`observe`] — the stream tail and reader, the status listeners;
//! * [`audit`] — the reconciliation, pure;
//! * [`report`] — the table and JSON.

pub mod audit;
pub mod faults;
pub mod fleet;
mod inject;
pub mod observe;
pub mod report;
pub mod soak;
pub mod traffic;

pub use report::Report;
pub use soak::{SoakOptions, run};
