//! The async shell: sockets, timers, NATS, tasks.
//!
//! * [`run`] / [`Bridge`] — the process: NATS, stream, discovery, then the
//!   [`supervisor`] that owns every task and starts one task tree per shard;
//! * [`tasks`] — spawning tasks whose end is always observed;
//! * [`shard`] — the task that drives one [`crate::gateway::Machine`];
//! * [`ws`] — one gateway WebSocket (reader half + writer task);
//! * [`outbox`] / [`publisher`] — the bounded buffer and the ordered, acked
//!   JetStream (or core) publisher behind each shard;
//! * [`core_sink`] — status events and the raw firehose on core NATS;
//! * [`identify`] — the identify rate limit; [`discovery`] — `/gateway/bot`;
//! * [`commands`] — gateway commands over NATS request/reply;
//! * [`nats`] — connection options and stream management;
//! * [`reports`] — what each shard is doing, for the status endpoint and
//!   the metrics; [`http`] / [`metrics`] / [`observe`] — the operations
//!   endpoint (`/metrics`, `/healthz`, `/readyz`).

pub(crate) mod checkpoint;
pub(crate) mod commands;
pub(crate) mod core_sink;
pub(crate) mod discovery;
pub(crate) mod histogram;
pub(crate) mod http;
pub(crate) mod identify;
pub(crate) mod kv_lease;
pub(crate) mod metrics;
pub(crate) mod nats;
pub(crate) mod observe;
pub(crate) mod outbox;
pub(crate) mod ownership;
pub(crate) mod publisher;
pub(crate) mod reports;
pub(crate) mod session_starts;
pub(crate) mod shard;
pub(crate) mod shared_floor;
pub(crate) mod status_service;
pub(crate) mod supervisor;
pub(crate) mod tasks;
pub(crate) mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream;
use discord_bridge_schemas::subject;
use tokio_util::sync::CancellationToken;

use crate::config::gateway_url::check_gateway_url;
use crate::config::{Config, ConfigError, ConfigErrors, PublishMode};
use crate::error::RunError;
use crate::gateway::ShardId;
use crate::gateway::machine::MachineConfig;
use crate::health::Stage;
use crate::secret::Secret;
use crate::tls::DiscordTls;

use self::commands::{CommandCounters, CommandService, Routes};
use self::core_sink::CoreSink;
use self::discovery::DiscoveryError;
use self::http::HttpServer;
use self::identify::{IdentifyQueue, SessionStartLimit};
use self::nats::NatsError;
use self::observe::Observed;
use self::ownership::Owner;
use self::publisher::Target;
use self::reports::Reports;
use self::session_starts::{Refresh, SessionStarts};
pub use self::supervisor::Bridge;
use self::supervisor::{Coordination, ShardContext};
use self::tasks::{TaskId, Tasks};

/// Runs the bridge until `shutdown` is cancelled (then returns `Ok`) or it
/// cannot continue (then returns why).
///
/// # Errors
/// Configuration problems found at start-up, fatal Discord close codes,
/// NATS set-up failures and tasks that died; see [`RunError`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    match Bridge::start(config, shutdown).await? {
        Some(bridge) => bridge.wait().await,
        None => Ok(()),
    }
}

/// The shard ownership view of NATS KV, for `discord-bridge shards`.
///
/// # Errors
/// No token, NATS unreachable (after the connection timeout) or without
/// JetStream KV.
pub async fn shard_view(config: &Config) -> Result<Vec<ownership::ShardView>, RunError> {
    let Some(token) = config.discord.token.clone() else {
        return Err(RunError::Config(ConfigErrors(vec![ConfigError {
            key: "discord.token".into(),
            env: "DISCORD_BOT_TOKEN".into(),
            message: "is required: the shard keys are named after a hash of the bot's token".into(),
        }])));
    };
    let give_up = CancellationToken::new();
    let client = tokio::select! {
        client = nats::connect(&config.nats, "discord-bridge shards", &give_up) => client?,
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            give_up.cancel();
            return Err(RunError::Nats(NatsError::Unreachable {
                servers: config.nats.urls.iter().map(|u| nats::redact(u)).collect::<Vec<_>>().join(", "),
            }));
        }
    };
    let js = jetstream::new(client);
    let store = ownership::ShardStore::open(
        &js,
        &token,
        config.discord.shard_lease,
        config.nats.stream_replicas,
    )
    .await
    .map_err(RunError::Ownership)?;
    store.view().await.map_err(RunError::Ownership)
}

impl Bridge {
    /// Connects to NATS, prepares the stream, asks Discord where to connect,
    /// and starts every configured shard. `None` when `shutdown` came first.
    ///
    /// # Errors
    /// See [`run`].
    pub async fn start(
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>, RunError> {
        let Some(token) = config.discord.token.clone() else {
            return Err(RunError::Config(ConfigErrors(vec![ConfigError {
                key: "discord.token".into(),
                env: "DISCORD_BOT_TOKEN".into(),
                message: "is required: set DISCORD_BOT_TOKEN to the bot's token".into(),
            }])));
        };
        let discord_tls = DiscordTls::new(config.discord.tls_ca.as_deref()).map_err(|e| {
            RunError::Config(ConfigErrors(vec![ConfigError {
                key: "discord.tls_ca".into(),
                env: "DISCORD_TLS_CA".into(),
                message: e.to_string(),
            }]))
        })?;
        // The endpoint comes first: /healthz answers and /readyz says what
        // start-up waits for while it waits (NATS, Discord). Returning early
        // drops it, which stops it.
        let tasks = Tasks::new();
        let observed = Arc::new(Observed::new(&config));
        let http = match config.http.listen {
            Some(addr) => Some(HttpServer::start(addr, Arc::clone(&observed), &tasks).await?),
            None => None,
        };
        let client = match nats::connect(&config.nats, "discord-bridge", &shutdown).await {
            Err(NatsError::Cancelled) => return Ok(None),
            other => other?,
        };
        observed.set_nats(client.clone());
        let agent_subject = subject::agent_events(&config.nats.subject_prefix);
        let mut shared_floor = None;
        let mut store = None;
        let target = match config.nats.publish {
            PublishMode::JetStream => {
                observed.set_stage(Stage::Starting(
                    "preparing the JetStream stream and KV buckets",
                ));
                let js = jetstream::ContextBuilder::new()
                    .timeout(config.nats.ack_timeout)
                    .build(client.clone());
                nats::ensure_stream(&js, &config.nats, &agent_subject).await?;
                match shared_floor::SharedFloor::open(
                    &js,
                    &token,
                    identify::IDENTIFY_FLOOR,
                    config.nats.stream_replicas,
                )
                .await
                {
                    Ok(floor) => shared_floor = Some(floor),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "no shared identify floor (needs JetStream KV with per-key TTL, nats-server 2.11+); \
                         bridges sharing this bot must not identify in the same bucket at once"
                    ),
                }
                match ownership::ShardStore::open(
                    &js,
                    &token,
                    config.discord.shard_lease,
                    config.nats.stream_replicas,
                )
                .await
                {
                    Ok(s) => store = Some(s),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "no shard coordination (needs JetStream KV with per-key TTL, nats-server 2.11+): \
                         this process runs its configured shards alone, and a restart starts new sessions"
                    ),
                }
                Target::JetStream {
                    js: Box::new(js),
                    client: client.clone(),
                }
            }
            PublishMode::Core => {
                tracing::info!(
                    "core NATS publishing: at-most-once, nothing is stored; no shard coordination \
                     (it needs JetStream KV): this process runs its configured shards alone"
                );
                Target::Core(client.clone())
            }
        };

        observed.set_stage(Stage::Starting(
            "asking Discord where to connect (GET /gateway/bot)",
        ));
        let (gateway_url, recommended, limit) = match &config.discord.gateway_url {
            Some(url) => (url.clone(), 1, SessionStartLimit::default()),
            None => {
                let info = match discovery::discover(
                    &config.discord.api_base,
                    &token,
                    &discord_tls,
                    &shutdown,
                )
                .await
                {
                    Err(DiscoveryError::Cancelled) => return Ok(None),
                    other => other?,
                };
                check_gateway_url(&info.url, config.discord.allow_insecure_gateway).map_err(
                    |e| DiscoveryError::UnusableGatewayUrl {
                        reason: e.to_string(),
                    },
                )?;
                (info.url, info.shards, info.limit)
            }
        };
        let shards = config.discord.shards.shards(recommended);
        tracing::info!(
            shards = shards.len(),
            total = shards.first().map_or(0, |s| s.total),
            recommended,
            max_concurrency = limit.max_concurrency,
            session_starts_left = limit.remaining,
            gateway = %gateway_url,
            "starting shards"
        );

        let reports = Reports::new(&shards, config.nats.publish.as_str());
        let status_stop = CancellationToken::new();
        let status = tasks.spawn(
            TaskId::process("status service"),
            status_service::serve(
                client.clone(),
                config.nats.subject_prefix.clone(),
                reports.clone(),
                status_stop.clone(),
            ),
        );
        let (sink, sink_task) =
            CoreSink::spawn(client.clone(), &config.nats.subject_prefix, &tasks);
        let routes = Routes::default();
        let command_counters = Arc::new(CommandCounters::default());
        observed.set_commands(Arc::clone(&command_counters));
        let commands = tasks.spawn(
            TaskId::process("gateway commands"),
            commands::serve(
                CommandService {
                    client: client.clone(),
                    prefix: config.nats.subject_prefix.clone(),
                    total: shards.first().map_or(recommended, |s| s.total),
                    routes: routes.clone(),
                    leases: store.clone(),
                    counters: command_counters,
                },
                status_stop.clone(),
            ),
        );
        let reserve = config.discord.session_start_reserve;
        let mut identify = IdentifyQueue::new(limit).with_reserve(reserve);
        if config.discord.gateway_url.is_some() {
            identify = identify.with_unknown_limit();
        }
        if let Some(shared) = shared_floor {
            identify = identify.with_shared(shared);
        }
        if let Some(store) = &store
            && let Some(starts) =
                SessionStarts::shared(store.starts_budget(), &limit, reserve).await
        {
            let mut starts = starts.with_sink(sink.clone());
            if config.discord.gateway_url.is_none() {
                starts = starts.with_refresh(Refresh {
                    api_base: config.discord.api_base.clone(),
                    token: token.clone(),
                    tls: discord_tls.clone(),
                });
            }
            identify = identify.with_starts(starts);
        }
        let identify = Arc::new(identify);
        observed.set_shards(reports.clone(), &identify, sink.drop_count());
        let ctx = ShardContext {
            config,
            token,
            gateway_url,
            target,
            agent_subject,
            identify,
            sink,
            reports,
            routes,
            discord_tls,
        };
        let coordination = store.map(|store| {
            let owner = Owner::this_process();
            tracing::info!(owner = %owner.id, lease_secs = store.lease_period().as_secs(), "shard ownership coordinated in NATS KV");
            Coordination {
                store,
                owner_id: Arc::from(owner.id.as_str()),
                owner,
                wanted: shards.clone(),
                leases: HashMap::new(),
            }
        });
        let coordinated = coordination.is_some();
        let mut bridge = Self::new(
            ctx,
            tasks,
            client,
            shutdown,
            status_stop,
            vec![sink_task, status, commands],
            coordination,
        )
        .with_endpoint(observed, http);
        // With coordination the lease loop starts the shards it wins; its
        // first round runs now.
        if coordinated {
            bridge.coordinate().await;
        } else {
            for shard in shards {
                bridge.start_shard_with(shard, None);
            }
        }
        bridge.running();
        Ok(Some(bridge))
    }
}

/// The machine settings of one shard.
#[must_use]
pub(crate) fn machine_config(
    config: &Config,
    shard: ShardId,
    token: Secret,
    gateway_url: String,
) -> MachineConfig {
    let mut m = MachineConfig::new(shard, token, gateway_url);
    m.intents = config.discord.intents;
    m.compression = config.discord.compression;
    m.allow_insecure_gateway = config.discord.allow_insecure_gateway;
    m.backoff_base = config.discord.backoff_base;
    m.backoff_max = config.discord.backoff_max;
    m.raw_dispatch.clone_from(&config.nats.raw_dispatch);
    m.stall_timeout = config.nats.stall_timeout;
    m
}
