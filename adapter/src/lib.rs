//! Relays the events discord-bridge publishes on NATS onto the Astrid
//! `EventBus`, exactly as the original in-process gateway proxy would have
//! published them, so the Discord capsule runs unchanged behind the bridge.
//!
//! Each message of `{prefix}.agent.events` becomes
//!
//! ```text
//! AstridEvent::Ipc {
//!     metadata: EventMetadata::new("discord-gateway"),
//!     message: IpcMessage::new(Topic::from_raw("{prefix}.agent.events"),
//!                              IpcPayload::Custom { data }, source_id),
//! }
//! ```
//!
//! with `principal` left `None` (a system event, which reaches every
//! principal's runtime), `data` the JSON the bridge published, and
//! `source_id` a stable id of the adapter ([`AdapterConfig::source_id`]).
//!
//! # Wiring it in
//!
//! astridd has no plugin hook, so the daemon's start-up builds the adapter
//! on the kernel's bus — before the kernel loads its capsules, so that it
//! sees the boot inventory — and spawns it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use astrid_discord_adapter::{Adapter, AdapterConfig};
//! use astrid_events::EventBus;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn start(event_bus: Arc<EventBus>, shutdown: CancellationToken) -> Result<(), Box<dyn std::error::Error>> {
//! // `event_bus` is `Kernel::event_bus`.
//! let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let adapter = Adapter::new(nats, Arc::clone(&event_bus), AdapterConfig::default())?;
//! let discord = adapter.spawn(shutdown.child_token());
//! // … the kernel loads its capsules; at shutdown:
//! discord.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! `examples/in_process.rs` runs the adapter against a local NATS server
//! and prints what a capsule would receive.
//!
//! # Delivery, acks and order
//!
//! Events are delivered one at a time, in stream order, through the bus's
//! reserved lane (`EventBus::reserve_publication`, then `publish`), which
//! waits for room in the queue of every capsule that handles the topic and
//! refuses the commit when the capsule generation retired meanwhile (the
//! same event is then tried again). A message is acked once its event was
//! committed — or, with [`AdapterConfig::capsule_acks`], once the capsule
//! acknowledged it.
//!
//! The lane alone loses events while no generation is live and does not
//! cover capsules that poll a subscription, so by default
//! ([`DeliveryCheck::HostSignals`]) the adapter follows the kernel's
//! `astrid.v1.capsules_loaded` and `astrid.v1.health.failed` (see [`host`]):
//! it holds events unacked while the capsule is not loaded, and after a
//! reload delivers again what it handed over within
//! [`AdapterConfig::replay_window`] before the old generation went away —
//! bounded, counted duplicates instead of silent loss; each event keeps its
//! `payload.id`. [`DeliveryCheck::RequireListener`] instead requires a
//! [`Listeners`] lease (hosts whose subscriptions are live when registered),
//! [`DeliveryCheck::PublishOnly`] nothing.
//!
//! While the adapter holds events, the consumer keeps them alive with
//! in-progress acks (`+WPI`) every `ack_wait / 3`, so the server does not
//! redeliver them; it hands out at most `max_ack_pending`, and the rest wait
//! in the stream.
//!
//! A redelivery of an event already delivered (its ack was lost) and a
//! second publication of the same Discord dispatch (`Nats-Msg-Id`
//! `{session}:{seq}`, e.g. after JetStream's duplicate window) are acked
//! without being emitted again; the memory of delivered events is a bounded
//! window per process ([`AdapterConfig::dedupe_window`]). Messages that can
//! never become an event (not JSON, larger than the bus accepts) are
//! terminated and counted, never redelivered.
//!
//! # Restarts, reconnects, shutdown
//!
//! The position lives in the durable consumer
//! ([`AdapterConfig::durable_name`]), so a restarted adapter continues where
//! the last one acked. A clean shutdown (its `CancellationToken`) naks the
//! events it held, lowest first, so the next instance gets them at once and
//! in order. After a crash, the new instance rewinds the durable to its ack
//! floor (nats-server 2.14+, [`AdapterConfig::reset_orphans_on_start`]) for
//! the same effect. A NATS outage is not an error: the client reconnects
//! and the consumer continues from the server's state; acks lost in the
//! outage come back as redeliveries and are dropped by the dedupe window.
//! One adapter per durable name: two would split the events between them.
//!
//! # Replay
//!
//! [`AdapterHandle::replay`] re-emits stored events from a stream sequence
//! or a time through an ephemeral ordered consumer, without touching the
//! durable one; see the [`replay`] module for how replays are marked and
//! why they bypass de-duplication.
//!
//! # Core NATS
//!
//! [`Mode::Core`] subscribes without JetStream, **at most once**: nothing is
//! stored, so events published while the adapter is away are lost, events
//! held for a missing listener live only in memory (bounded), and there is
//! no replay.
//!
//! # Layout
//!
//! * [`config`] — [`AdapterConfig`], [`Mode`], [`DeliveryCheck`];
//! * [`map`] — pure: payload + headers → `AstridEvent`;
//! * [`dedupe`] — pure: the delivered-events window;
//! * [`listeners`] — leases, for [`DeliveryCheck::RequireListener`];
//! * [`host`] — the kernel's signals and what they mean for delivery;
//! * `deliver` — one reserved-lane attempt and its outcome;
//! * `pump` — the ordered hold, replay set and capsule acks;
//! * `handover` — when each event was handed over, for replays;
//! * `driver` — the event loop shared by both modes;
//! * `status` — the gateway status relay;
//! * `setup`, `consumer` — the durable JetStream consumer;
//! * `core_mode` — the core-NATS subscription;
//! * [`replay`] — ephemeral ordered replays;
//! * `adapter` — [`Adapter`], [`AdapterHandle`].

#![warn(missing_docs)]

mod adapter;
pub mod config;
mod consumer;
mod core_mode;
pub mod dedupe;
mod deliver;
mod driver;
mod error;
mod handover;
pub mod host;
pub mod listeners;
pub mod map;
mod pump;
pub mod replay;
mod setup;
mod stats;
mod status;

pub use adapter::{Adapter, AdapterHandle};
pub use config::{AdapterConfig, DeliveryCheck, Mode};
pub use error::{AdapterError, BoxError};
pub use listeners::{Listener, ListenerLease, Listeners};
pub use map::EVENT_SOURCE;
pub use replay::{ReplayFrom, ReplayReport, ReplayRequest, ReplayUntil, Replayer};
pub use stats::Stats;
