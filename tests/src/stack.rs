//! The whole pipeline in one test: a real `nats-server`, the gateway
//! simulator, and the bridge running in-process through its public
//! [`discord_bridge::run`] entry point.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use discord_bridge::RunError;
use discord_bridge::codec::Compression;
use discord_bridge::config::{Config, PublishMode};
use discord_bridge::gateway::ShardSpec;
use discord_bridge::secret::Secret;
use discord_bridge::sim::{SimConfig, SimState, Simulator};
use discord_bridge_schemas::{StatusEvent, subject};
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::jetstream::{read_stream, wait_for_messages};
use crate::nats::{NatsServer, NatsServerBuilder};

/// How long tests wait for the pipeline to do something.
pub const WAIT: Duration = Duration::from_secs(20);

/// What to start.
pub struct StackOptions {
    /// The fake Discord.
    pub sim: SimConfig,
    /// The NATS server.
    pub nats: NatsServerBuilder,
    /// Changes to the bridge configuration made by [`bridge_config`].
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            sim: test_sim_config(),
            nats: NatsServer::builder(),
            tweak: Box::new(|_| {}),
        }
    }
}

impl StackOptions {
    /// Options with a configuration change.
    #[must_use]
    pub fn with(tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        Self {
            tweak: Box::new(tweak),
            ..Self::default()
        }
    }
}

/// A simulator configuration suited to tests: fast heartbeats.
#[must_use]
pub fn test_sim_config() -> SimConfig {
    SimConfig {
        heartbeat_interval: Duration::from_millis(500),
        ..SimConfig::default()
    }
}

/// The bridge configuration for a simulator and a NATS server: insecure
/// gateway allowed (the simulator speaks `ws://`), fast backoff.
#[must_use]
pub fn bridge_config(sim: &Simulator, nats_url: &str) -> Config {
    let mut c = Config::default();
    c.discord.token = Some(Secret::new(sim.config().token.clone()));
    c.discord.api_base = sim.api_base();
    c.discord.allow_insecure_gateway = true;
    c.discord.compression = Compression::ZlibStream;
    c.discord.shards = ShardSpec::Auto;
    c.discord.backoff_base = Duration::from_millis(20);
    c.discord.backoff_max = Duration::from_millis(500);
    c.nats.urls = vec![nats_url.to_owned()];
    c.nats.publish = PublishMode::JetStream;
    c
}

/// A running pipeline.
pub struct Stack {
    /// The NATS server.
    pub nats: NatsServer,
    /// The fake Discord.
    pub sim: Simulator,
    /// The configuration the bridge runs with.
    pub config: Config,
    /// A client for assertions.
    pub client: async_nats::Client,
    statuses: Arc<Mutex<Vec<StatusEvent>>>,
    shutdown: CancellationToken,
    bridge: Option<JoinHandle<Result<(), RunError>>>,
}

impl Stack {
    /// Starts everything with default options.
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts NATS, the simulator, a status collector, then the bridge.
    pub async fn start_with(options: StackOptions) -> Self {
        let nats = options.nats.start().await;
        let sim = Simulator::start(options.sim)
            .await
            .expect("start the gateway simulator");
        let mut config = bridge_config(&sim, &nats.url());
        (options.tweak)(&mut config);
        let client = nats.client().await;
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let mut sub = client
            .subscribe(subject::gateway_status(&config.nats.subject_prefix))
            .await
            .expect("subscribe to status events");
        client.flush().await.expect("flush the subscription");
        tokio::spawn({
            let statuses = Arc::clone(&statuses);
            async move {
                while let Some(msg) = sub.next().await {
                    let ev: StatusEvent = serde_json::from_slice(&msg.payload)
                        .unwrap_or_else(|e| panic!("status event does not match the schema: {e}"));
                    statuses.lock().expect("status lock").push(ev);
                }
            }
        });
        let mut stack = Self {
            nats,
            sim,
            config,
            client,
            statuses,
            shutdown: CancellationToken::new(),
            bridge: None,
        };
        stack.start_bridge();
        stack
    }

    /// (Re)starts the bridge with `self.config`.
    pub fn start_bridge(&mut self) {
        assert!(self.bridge.is_none(), "the bridge is already running");
        self.shutdown = CancellationToken::new();
        let config = self.config.clone();
        let token = self.shutdown.clone();
        self.bridge = Some(tokio::spawn(discord_bridge::run(config, token)));
    }

    /// Stops the bridge like SIGTERM does and returns how it ended.
    pub async fn stop_bridge(&mut self) -> Result<(), RunError> {
        self.shutdown.cancel();
        self.join_bridge(WAIT).await
    }

    /// Waits for the bridge to end on its own (e.g. a fatal close code).
    pub async fn join_bridge(&mut self, timeout: Duration) -> Result<(), RunError> {
        let handle = self.bridge.take().expect("the bridge is running");
        tokio::time::timeout(timeout, handle)
            .await
            .expect("the bridge stops in time")
            .expect("the bridge task does not panic")
    }

    /// Whether the bridge task has ended.
    pub fn bridge_finished(&self) -> bool {
        self.bridge.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits until the simulator sees shard `shard` attached to a session that
    /// got past `min_seq`, and returns the session id.
    pub async fn wait_session(&self, shard: u32) -> String {
        self.wait_sim(|s| {
            s.session_of(shard)
                .filter(|sess| sess.attached.is_some() && !sess.invalidated)
                .map(|sess| sess.id.clone())
        })
        .await
    }

    /// Waits for a condition on the simulator's state.
    pub async fn wait_sim<T>(&self, f: impl Fn(&SimState) -> Option<T>) -> T {
        self.sim
            .wait_for(WAIT, f)
            .await
            .unwrap_or_else(|e| panic!("simulator condition not met: {e}"))
    }

    /// Status events received so far.
    pub fn statuses(&self) -> Vec<StatusEvent> {
        self.statuses.lock().expect("status lock").clone()
    }

    /// Waits for a status event that matches.
    pub async fn wait_status(&self, what: &str, f: impl Fn(&StatusEvent) -> bool) -> StatusEvent {
        crate::eventually(WAIT, what, || {
            let found = self.statuses().into_iter().find(|e| f(e));
            async move { found }
        })
        .await
    }

    /// The JetStream context.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }

    /// Every message of the agent stream.
    pub async fn stored(&self) -> Vec<StreamMessage> {
        read_stream(&self.jetstream().await, &self.config.nats.stream).await
    }

    /// Waits until the agent stream holds at least `n` messages; returns all.
    pub async fn wait_stored(&self, n: usize) -> Vec<StreamMessage> {
        wait_for_messages(
            &self.jetstream().await,
            &self.config.nats.stream,
            n as u64,
            WAIT,
        )
        .await
    }
}

impl Drop for Stack {
    /// Cancels the bridge; the status collector ends with the client.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
