//! The whole pipeline in one test: a real `nats-server`, the gateway
//! simulator, and the bridge running in-process through its public
//! [`discord_bridge::run`] entry point.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use discord_bridge::RunError;
use discord_bridge::codec::Compression;
use discord_bridge::config::{Config, NatsConfig, PublishMode};
use discord_bridge::gateway::ShardSpec;
use discord_bridge::secret::Secret;
use discord_bridge_schemas::{StatusEvent, header as h, subject};
use discord_gateway_sim::events::{self, User};
use discord_gateway_sim::{SimConfig, SimState, Simulator};
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::jetstream::{header, payload_json, read_stream, wait_for_messages};
use crate::nats::{NatsServer, NatsServerBuilder};
use crate::process::{ChildProcess, bridge_command};

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

/// Sets the credentials and TLS files `nats` demands in a bridge
/// configuration: the same settings [`Stack::bridge_env`] puts in the
/// environment.
pub fn nats_credentials(nats: &NatsServer, c: &mut NatsConfig) {
    if let Some((user, password)) = nats.user_password() {
        c.user = Some(user.to_owned());
        c.password = Some(Secret::new(password.to_owned()));
    } else if let Some(seed) = nats.nkey_seed() {
        c.nkey_seed = Some(Secret::new(seed.to_owned()));
    }
    if let Some(token) = nats.token() {
        c.token = Some(Secret::new(token.to_owned()));
    }
    c.creds_file = nats.creds_file();
    c.tls_ca = nats.ca_file().map(Path::to_owned);
    if let Some(client) = nats.client_cert() {
        c.tls_cert = Some(client.cert.clone());
        c.tls_key = Some(client.key.clone());
    }
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
        let mut stack = Self::start_idle(options).await;
        stack.start_bridge();
        stack
    }

    /// Starts NATS, the simulator and the status collector, but not the
    /// bridge: for tests that change the simulator first (then call
    /// [`start_bridge`](Self::start_bridge)) or run the real binary
    /// ([`spawn_binary`](Self::spawn_binary)).
    pub async fn start_idle(options: StackOptions) -> Self {
        let nats = options.nats.start().await;
        let sim = Simulator::start(options.sim)
            .await
            .expect("start the gateway simulator");
        let mut config = bridge_config(&sim, &nats.url());
        nats_credentials(&nats, &mut config.nats);
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
                    let json: serde_json::Value = serde_json::from_slice(&msg.payload)
                        .unwrap_or_else(|e| panic!("status event is not JSON: {e}"));
                    crate::schema::assert_status_event(&json);
                    let ev: StatusEvent = serde_json::from_value(json)
                        .unwrap_or_else(|e| panic!("status event does not match the type: {e}"));
                    statuses.lock().expect("status lock").push(ev);
                }
            }
        });
        Self {
            nats,
            sim,
            config,
            client,
            statuses,
            shutdown: CancellationToken::new(),
            bridge: None,
        }
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

    /// Every message of the agent stream, each checked against the agent
    /// event JSON Schema.
    pub async fn stored(&self) -> Vec<StreamMessage> {
        validated(read_stream(&self.jetstream().await, &self.config.nats.stream).await)
    }

    /// Waits until the agent stream holds at least `n` messages; returns all,
    /// each checked against the agent event JSON Schema.
    pub async fn wait_stored(&self, n: usize) -> Vec<StreamMessage> {
        let js = self.jetstream().await;
        validated(wait_for_messages(&js, &self.config.nats.stream, n as u64, WAIT).await)
    }
}

impl Drop for Stack {
    /// Cancels the bridge; the status collector ends with the client.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A human user who writes the messages of [`Stack::message`].
#[must_use]
pub fn alice() -> User {
    User::new(ALICE_ID, "alice")
}

/// The user id of [`alice`]: a snowflake from 2023.
pub const ALICE_ID: u64 = 1_144_060_924_343_672_001;

/// The channel of [`Stack::message`].
pub const CHANNEL_ID: u64 = 1_144_060_924_343_672_002;

impl Stack {
    /// Dispatches a MESSAGE_CREATE by [`alice`] with `content` in `guild`
    /// (`None`: a DM) on the shard that serves it; returns the shard and the
    /// sequence number.
    ///
    /// # Panics
    ///
    /// When that shard has no valid session in the simulator.
    pub fn message(&self, guild: Option<u64>, content: &str) -> (u32, u64) {
        let d = events::message_create(CHANNEL_ID, guild, &alice(), content);
        self.sim
            .dispatch_to_guild(guild, "MESSAGE_CREATE", d)
            .unwrap_or_else(|| panic!("no valid session to dispatch {content:?} on"))
    }

    /// Dispatches a MESSAGE_CREATE in the first configured guild; returns
    /// its sequence number.
    pub fn guild_message(&self, content: &str) -> u64 {
        self.message(Some(self.sim.config().guilds[0]), content).1
    }

    /// Waits until the agent stream holds `expected.len()` messages, then
    /// checks that their contents are exactly `expected`, in order, stored
    /// once each (see [`assert_exactly_once`]); returns them.
    ///
    /// Dispatch the last expected event after any reconnect whose replay
    /// could duplicate earlier ones: a duplicate is then stored before it
    /// and shows up as a content mismatch.
    pub async fn wait_contents(&self, expected: &[&str]) -> Vec<StreamMessage> {
        let stored = self.wait_stored(expected.len()).await;
        assert_eq!(
            contents(&stored),
            expected,
            "the agent stream holds exactly these messages, in order"
        );
        assert_exactly_once(&stored);
        stored
    }

    /// The environment that runs the `discord-bridge` binary against this
    /// stack like [`bridge_config`] configures the in-process bridge,
    /// including the NATS server's credentials. Later entries of a
    /// `Command::envs` call win, so tests append their changes.
    #[must_use]
    pub fn bridge_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("DISCORD_BOT_TOKEN", self.sim.config().token.clone()),
            ("DISCORD_API_BASE", self.sim.api_base()),
            ("DISCORD_ALLOW_INSECURE_GATEWAY", "true".to_owned()),
            ("DISCORD_GATEWAY_COMPRESSION", "zlib-stream".to_owned()),
            ("DISCORD_SHARDS", "auto".to_owned()),
            ("DISCORD_BACKOFF_BASE_MS", "20".to_owned()),
            ("DISCORD_BACKOFF_MAX_MS", "500".to_owned()),
            ("NATS_URL", self.nats.url()),
            ("BRIDGE_PUBLISH_MODE", "jetstream".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut c = NatsConfig::default();
        nats_credentials(&self.nats, &mut c);
        let path = |p: &Path| p.display().to_string();
        let settings = [
            ("NATS_USER", c.user.clone()),
            (
                "NATS_PASSWORD",
                c.password.as_ref().map(|s| s.expose().to_owned()),
            ),
            (
                "NATS_NKEY_SEED",
                c.nkey_seed.as_ref().map(|s| s.expose().to_owned()),
            ),
            (
                "NATS_TOKEN",
                c.token.as_ref().map(|s| s.expose().to_owned()),
            ),
            ("NATS_CREDS", c.creds_file.as_deref().map(path)),
            ("NATS_CA", c.tls_ca.as_deref().map(path)),
            ("NATS_CERT", c.tls_cert.as_deref().map(path)),
            ("NATS_KEY", c.tls_key.as_deref().map(path)),
        ];
        for (name, value) in settings {
            if let Some(value) = value {
                env.push((name.to_owned(), value));
            }
        }
        env
    }

    /// Runs the `discord-bridge` binary with `args` and [`bridge_env`]
    /// followed by `extra` (which wins), in the NATS server's temporary
    /// directory, where no `discord-bridge.toml` can interfere.
    ///
    /// [`bridge_env`]: Self::bridge_env
    pub fn spawn_binary(&self, args: &[&str], extra: &[(&str, &str)]) -> ChildProcess {
        let dir = self
            .nats
            .log_path()
            .parent()
            .expect("the NATS log lives in the server's temporary directory")
            .to_owned();
        let mut command = bridge_command();
        command
            .current_dir(dir)
            .args(args)
            .envs(self.bridge_env())
            .envs(extra.iter().copied());
        ChildProcess::spawn(&mut command)
    }

    /// Starts one more in-process bridge with `config` (e.g. another shard
    /// range) beside the stack's own; it stops when the handle is dropped.
    #[must_use]
    pub fn spawn_bridge(&self, config: Config) -> BridgeTask {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(discord_bridge::run(config, shutdown.clone()));
        BridgeTask { shutdown, handle }
    }
}

/// A bridge started with [`Stack::spawn_bridge`]; cancelled on drop.
pub struct BridgeTask {
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), RunError>>,
}

impl BridgeTask {
    /// Stops it like SIGTERM does and returns how it ended.
    pub async fn stop(mut self) -> Result<(), RunError> {
        self.shutdown.cancel();
        let handle = &mut self.handle;
        tokio::time::timeout(WAIT, handle)
            .await
            .expect("the bridge stops in time")
            .expect("the bridge task does not panic")
    }
}

impl Drop for BridgeTask {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The `payload.content` of each stored message event, in stream order
/// (`"<not a message>"` for other events).
#[must_use]
pub fn contents(stored: &[StreamMessage]) -> Vec<String> {
    stored
        .iter()
        .map(|m| {
            payload_json(m)["payload"]["content"]
                .as_str()
                .unwrap_or("<not a message>")
                .to_owned()
        })
        .collect()
}

/// Checks the de-duplication contract on stored events: every `Nats-Msg-Id`
/// is `{session}:{seq}` matching the `Discord-Seq` header, none occurs
/// twice, and within each shard and session the sequence numbers only grow
/// (events are stored in Discord's order).
///
/// # Panics
///
/// When one of these does not hold, naming the stream sequence.
pub fn assert_exactly_once(stored: &[StreamMessage]) {
    let mut ids = HashSet::new();
    let mut last: HashMap<(String, String), u64> = HashMap::new();
    for m in stored {
        let id = header(m, h::MSG_ID)
            .unwrap_or_else(|| panic!("stream seq {} has no Nats-Msg-Id", m.sequence));
        assert!(
            ids.insert(id.to_owned()),
            "Nats-Msg-Id {id} stored twice (stream seq {})",
            m.sequence
        );
        let seq: u64 = header(m, h::SEQ)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("stream seq {} has no numeric Discord-Seq", m.sequence));
        let (session, id_seq) = id
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("Nats-Msg-Id {id} is not session:seq"));
        assert_eq!(id_seq, seq.to_string(), "Nats-Msg-Id {id} vs Discord-Seq");
        let shard = header(m, h::SHARD).unwrap_or_default().to_owned();
        if let Some(previous) = last.insert((shard.clone(), session.to_owned()), seq) {
            assert!(
                seq > previous,
                "shard {shard} session {session}: Discord-Seq {seq} stored after {previous} \
                 (stream seq {})",
                m.sequence
            );
        }
    }
}

fn validated(messages: Vec<StreamMessage>) -> Vec<StreamMessage> {
    for m in &messages {
        let json: serde_json::Value = serde_json::from_slice(&m.payload)
            .unwrap_or_else(|e| panic!("stored event {} is not JSON: {e}", m.sequence));
        crate::schema::assert_agent_event(&json);
    }
    messages
}
