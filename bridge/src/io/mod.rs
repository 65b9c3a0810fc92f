//! The async shell: sockets, timers, NATS, tasks.
//!
//! * [`run`] — the process: NATS, stream, discovery, one task tree per shard;
//! * [`shard`] — the task that drives one [`crate::gateway::Machine`];
//! * [`ws`] — one gateway WebSocket (reader half + writer task);
//! * [`outbox`] / [`publisher`] — the bounded buffer and the ordered, acked
//!   JetStream (or core) publisher behind each shard;
//! * [`core_sink`] — status events and the raw firehose on core NATS;
//! * [`identify`] — the identify rate limit; [`discovery`] — `/gateway/bot`;
//! * [`nats`] — connection options and stream management.
//!
//! Cancellation: the process token (SIGINT/SIGTERM) has one child per shard;
//! shards close their gateway first, then the publishers get a separate
//! token so they can flush what the shards handed them.

pub mod core_sink;
pub mod discovery;
pub mod identify;
pub mod nats;
pub mod outbox;
pub mod publisher;
pub mod shard;
pub mod shared_floor;
pub mod status_service;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use discord_bridge_schemas::subject;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::gateway_url::check_gateway_url;
use crate::config::{Config, ConfigError, ConfigErrors, PublishMode};
use crate::error::RunError;
use crate::gateway::machine::MachineConfig;
use crate::gateway::{Machine, ShardId};
use crate::secret::Secret;

use self::core_sink::CoreSink;
use self::identify::{IdentifyQueue, SessionStartLimit};
use self::outbox::Outbox;
use self::publisher::{PublisherConfig, Target};
use self::shard::ShardIo;
use self::status_service::Reports;

/// How long a shutdown may spend flushing buffered events to NATS.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect + WebSocket handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the bridge until `shutdown` is cancelled (then returns `Ok`) or no
/// shard can continue (then returns the error that stopped them).
///
/// # Errors
/// Configuration problems found at start-up, fatal Discord close codes, and
/// NATS set-up failures; see [`RunError`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let Some(token) = config.discord.token.clone() else {
        return Err(RunError::Config(ConfigErrors(vec![ConfigError {
            key: "discord.token".into(),
            env: "DISCORD_BOT_TOKEN".into(),
            message: "is required: set DISCORD_BOT_TOKEN to the bot's token".into(),
        }])));
    };
    let client = match nats::connect(&config.nats, "discord-bridge", &shutdown).await {
        Err(_) if shutdown.is_cancelled() => return Ok(()),
        other => other?,
    };
    let agent_subject = subject::agent_events(&config.nats.subject_prefix);
    let mut shared_floor = None;
    let target = match config.nats.publish {
        PublishMode::JetStream => {
            let js = jetstream::ContextBuilder::new()
                .timeout(config.nats.ack_timeout)
                .build(client.clone());
            nats::ensure_stream(&js, &config.nats, &agent_subject).await?;
            match shared_floor::SharedFloor::open(&js, &token, identify::IDENTIFY_FLOOR).await {
                Ok(floor) => shared_floor = Some(floor),
                Err(e) => tracing::warn!(
                    error = %e,
                    "no shared identify floor (needs JetStream KV with per-key TTL, nats-server 2.11+); \
                     bridges sharing this bot must not identify in the same bucket at once"
                ),
            }
            Target::JetStream {
                js: Box::new(js),
                client: client.clone(),
            }
        }
        PublishMode::Core => {
            tracing::info!("core NATS publishing: at-most-once, nothing is stored");
            Target::Core(client.clone())
        }
    };

    let (gateway_url, recommended, limit) = match &config.discord.gateway_url {
        Some(url) => (url.clone(), 1, SessionStartLimit::default()),
        None => {
            let info = match discovery::discover(&config.discord.api_base, &token, &shutdown).await
            {
                Err(_) if shutdown.is_cancelled() => return Ok(()),
                other => other?,
            };
            check_gateway_url(&info.url, config.discord.allow_insecure_gateway).map_err(|e| {
                RunError::Setup(format!(
                    "GET /gateway/bot returned an unusable gateway URL: {e} (set \
                     discord.allow_insecure_gateway only for the simulator)"
                ))
            })?;
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
    let status_task = tokio::spawn(status_service::serve(
        client.clone(),
        config.nats.subject_prefix.clone(),
        reports.clone(),
        status_stop.clone(),
    ));
    let identify = IdentifyQueue::new(limit);
    let identify = Arc::new(match shared_floor {
        Some(shared) => identify.with_shared(shared),
        None => identify,
    });
    let (sink, sink_task) = CoreSink::spawn(client.clone(), &config.nats.subject_prefix);
    let drain = CancellationToken::new();
    let mut publishers = Vec::with_capacity(shards.len());
    let mut tasks = JoinSet::new();
    for (index, shard) in shards.into_iter().enumerate() {
        let outbox = Arc::new(Outbox::new(
            config.nats.buffer_events,
            config.nats.buffer_bytes,
        ));
        let (ack_tx, ack_rx) = watch::channel((0, 0));
        publishers.push(tokio::spawn(publisher::run(
            target.clone(),
            Arc::clone(&outbox),
            ack_tx,
            sink.clone(),
            PublisherConfig {
                subject: agent_subject.clone(),
                shard,
                max_inflight: config.nats.max_inflight,
                drain_timeout: DRAIN_TIMEOUT,
            },
            drain.child_token(),
        )));
        let io = ShardIo {
            machine: Machine::new(machine_config(
                &config,
                shard,
                token.clone(),
                gateway_url.clone(),
            )),
            compression: config.discord.compression,
            max_payload: config.discord.max_frame_bytes,
            connect_timeout: CONNECT_TIMEOUT,
            identify: Arc::clone(&identify),
            outbox,
            acks: ack_rx,
            sink: sink.clone(),
            reporter: reports.reporter(index),
        };
        let cancel = shutdown.child_token();
        tasks.spawn(async move { (shard, shard::run(io, cancel).await) });
    }
    drop(sink);

    let mut fatal = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(message))) => {
                tracing::error!(shard = %shard, "shard stopped: {message}");
                fatal.push(message);
            }
            Err(e) => fatal.push(format!("a shard task failed: {e}")),
        }
    }
    drain.cancel();
    for p in publishers {
        let _ = p.await;
    }
    let _ = sink_task.await;
    status_stop.cancel();
    let _ = status_task.await;
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "final NATS flush failed");
    }
    if fatal.is_empty() || shutdown.is_cancelled() {
        tracing::info!("bridge stopped");
        Ok(())
    } else {
        Err(RunError::Fatal(fatal.join("\n")))
    }
}

/// The machine settings of one shard.
#[must_use]
pub fn machine_config(
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
    m
}
