//! A scriptable fake Discord: the WebSocket gateway (v10, JSON, optional
//! `zlib-stream` / `zstd-stream`) and `GET /api/v10/gateway/bot`, on one
//! localhost port.
//!
//! It is a product feature, not only a test double: `discord-bridge demo`
//! runs the bridge against it, the end-to-end tests inject every fault with
//! it, and bot authors develop offline with it. It follows Discord's
//! documented Gateway behaviour: HELLO, IDENTIFY → READY + GUILD_CREATEs,
//! heartbeats and ACKs, sessions that outlive their connections and RESUME
//! with replay, op 7, op 9, close codes 4000-4014, identify buckets, the
//! 120-payloads-per-minute limit, and a GUILD_MEMBERS_CHUNK (members from a
//! real capture, the request's nonce echoed) for each op 8 request. Dispatches go out with Discord's key order,
//! `{"t":…,"s":…,"op":0,"d":…}`. It records everything a client does so
//! tests can assert on it, and never panics on client input.
//!
//! It is its own crate, with its own reading of Discord's rules (shards,
//! intents, transport compression), so that a client tested against it does
//! not share a misreading with it; the bridge is only a dev-dependency, for
//! tests that cross-check the two readings.
//!
//! Using it offline (the bot connects with token `sim-token`):
//!
//! ```no_run
//! use std::time::Duration;
//! use discord_gateway_sim::{SimConfig, Simulator, events};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Simulator::start(SimConfig::default()).await?;
//! // Point the bot at it: DISCORD_API_BASE = sim.api_base().
//! let _api_base = sim.api_base();
//! // Wait for the bot's session, then talk to it.
//! sim.wait_for(Duration::from_secs(30), |s| s.session_of(0).map(|_| ())).await?;
//! let alice = events::User::new(events::snowflake(), "alice");
//! let dm = events::message_create(events::snowflake(), None, &alice, "hello bot");
//! sim.dispatch_to_guild(None, "MESSAGE_CREATE", dm);
//! // Ask it to reconnect: it should RESUME at `sim.resume_url()`.
//! sim.reconnect(0);
//! # Ok(())
//! # }
//! ```
//!
//! Layout:
//! * [`config`] — [`SimConfig`], [`SimTls`], [`HttpFault`];
//! * [`shard`], [`intents`], [`compress`] — Discord's rules: the shard of a
//!   guild, the intent bits, the `zlib-stream` / `zstd-stream` encoders;
//! * `http` — the listener: request heads, `/gateway/bot`, WebSocket upgrade;
//! * `transport` — plain TCP or TLS under both ([`SimTls`]);
//! * `conn` — one connection's task (socket, compressor, commands);
//! * `protocol` — Discord's rules, without IO, under the state lock;
//! * `state` — shared state and live connection handles;
//! * [`record`] — what tests read: [`SimState`] and its records;
//! * `control` — the fault-injection methods of [`Simulator`];
//! * [`events`] — realistic dispatch bodies from the corpus;
//! * [`flood`] — many dispatches written as fast as the client reads (or
//!   paced), for flow-control tests and benchmarks;
//! * [`traffic`] — the demo's event generator.

#![warn(missing_docs)]

pub mod compress;
pub mod config;
mod conn;
mod control;
pub mod events;
pub mod flood;
mod http;
pub mod intents;
mod protocol;
pub mod record;
pub mod shard;
mod state;
pub mod traffic;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use compress::Compression;
pub use config::{HttpFault, SimConfig, SimTls};
pub use flood::{Flood, FloodEvent, FloodHandle, FloodReport};
pub use record::{
    ClientPayload, CloseInfo, Closer, ConnId, ConnectionRecord, Dispatch, Dispatched, Endpoint,
    HeartbeatRecord, HttpRecord, IdentifyRecord, Outcome, RefusalCause, RefusalRecord,
    ResumeRecord, Session, SimState, Violation, ViolationRecord,
};
pub use shard::{ShardId, shard_for_guild};
pub use state::RawFrame;
pub use traffic::{TrafficOptions, TrafficReport, run_demo_traffic};
pub use transport::TlsSetupError;

use state::Shared;

/// The simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listening socket could not be opened.
    #[error("the gateway simulator cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// [`SimConfig::tls`] cannot serve.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// A condition awaited with [`Simulator::wait_for`] did not hold in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the simulator state did not reach the awaited condition within {0:?}")]
pub struct Timeout(pub Duration);

/// A running simulated Discord. Dropping it stops every task it started
/// (the listener and each connection); [`shutdown`](Self::shutdown) also
/// waits for them.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Listens on `config.bind` and starts serving.
    ///
    /// # Errors
    /// [`SimError::Bind`] when the address cannot be bound, [`SimError::Tls`]
    /// when the configured certificate or key cannot serve.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let bind = config.bind;
        let acceptor = config.tls.as_ref().map(transport::acceptor).transpose()?;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| SimError::Bind { addr: bind, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr: bind, source })?;
        let ws = if acceptor.is_some() { "wss" } else { "ws" };
        let gateway_url = format!("{ws}://{addr}/gateway");
        let resume_url = format!("{ws}://{addr}/resume");
        let shared = Shared::new(config, gateway_url, resume_url);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let tls = acceptor.is_some();
        tracker.spawn(http::accept_loop(
            listener,
            acceptor,
            Arc::clone(&shared),
            cancel.clone(),
            tracker.clone(),
        ));
        tracing::info!(%addr, tls, "gateway simulator listening");
        Ok(Self {
            shared,
            addr,
            cancel,
            tracker,
        })
    }

    /// The address it listens on.
    #[must_use]
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The REST base to configure as `discord.api_base`,
    /// e.g. `http://127.0.0.1:PORT/api/v10` (`https://` with [`SimConfig::tls`]).
    #[must_use]
    pub fn api_base(&self) -> String {
        let scheme = if self.shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/api/v10", self.addr)
    }

    /// The gateway URL `GET /gateway/bot` returns: `ws://127.0.0.1:PORT/gateway`
    /// (`wss://` with [`SimConfig::tls`]).
    #[must_use]
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url.clone()
    }

    /// READY's `resume_gateway_url`: `ws://127.0.0.1:PORT/resume`, a
    /// distinct path so tests can tell where a RESUME connected.
    #[must_use]
    pub fn resume_url(&self) -> String {
        self.shared.resume_url.clone()
    }

    /// The configuration it runs with.
    #[must_use]
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Reads the recorded state under the lock (keep `f` short).
    pub fn read<T>(&self, f: impl FnOnce(&SimState) -> T) -> T {
        self.shared.read(|inner| f(&inner.state))
    }

    /// A copy of the recorded state.
    #[must_use]
    pub fn snapshot(&self) -> SimState {
        self.read(SimState::clone)
    }

    /// Waits until `f` returns `Some` for the recorded state; `f` is checked
    /// now and after every change (no polling). `f` runs under the state
    /// lock: it must not call the simulator.
    ///
    /// # Errors
    /// [`Timeout`] when `f` is still `None` after `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        f: impl Fn(&SimState) -> Option<T>,
    ) -> Result<T, Timeout> {
        let mut changes = self.shared.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                if let Some(found) = self.read(&f) {
                    return found;
                }
                if changes.changed().await.is_err() {
                    // Cannot happen while `self` holds the sender.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Timeout(timeout))
    }

    /// Every IDENTIFY so far.
    #[must_use]
    pub fn identifies(&self) -> Vec<IdentifyRecord> {
        self.read(|s| s.identifies.clone())
    }

    /// Every RESUME so far.
    #[must_use]
    pub fn resumes(&self) -> Vec<ResumeRecord> {
        self.read(|s| s.resumes.clone())
    }

    /// The heartbeats of connections serving `shard`.
    #[must_use]
    pub fn heartbeats(&self, shard: u32) -> Vec<HeartbeatRecord> {
        self.read(|s| s.heartbeats_of(shard).cloned().collect())
    }

    /// Every connection so far, in order.
    #[must_use]
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.read(|s| s.connections.values().cloned().collect())
    }

    /// Every client payload kept (see [`record::RECORD_CAP`]).
    #[must_use]
    pub fn payloads(&self) -> Vec<ClientPayload> {
        self.read(|s| s.payloads.iter().cloned().collect())
    }

    /// Every broken rule so far; a well-behaved client has none.
    #[must_use]
    pub fn violations(&self) -> Vec<ViolationRecord> {
        self.read(|s| s.violations.clone())
    }

    /// The current session of `shard` (the last one READY or RESUMED).
    #[must_use]
    pub fn session(&self, shard: u32) -> Option<Session> {
        self.read(|s| s.session_of(shard).cloned())
    }

    /// The number of `GET /gateway/bot` requests so far.
    #[must_use]
    pub fn gateway_bot_requests(&self) -> usize {
        self.read(SimState::gateway_bot_requests)
    }

    /// Stops listening, closes every connection (1001) and waits for all
    /// tasks to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
