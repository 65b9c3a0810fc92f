//! `discord-bridge demo`: the whole pipeline on one machine, no token needed.
//!
//! The gateway simulator plays Discord with realistic traffic (guild
//! messages, DMs, slash commands, and noise the bridge must filter out), a
//! local `nats-server -js` is started when none answers at `NATS_URL`, the
//! real bridge runs against both, and the astridd adapter feeds an
//! in-process EventBus where a simulated capsule prints every event it
//! receives. The capsule reloads once (the adapter holds events meanwhile)
//! and Discord asks for a reconnect once (the bridge RESUMEs). Ctrl-C (or
//! `--duration`) stops everything and leaves no process behind.
//!
//! * [`local_nats`] — find or start the NATS server;
//! * [`capsule`] — the EventBus side: a capsule that subscribes like
//!   astridd's capsule host;
//! * [`display`] — one readable line per event.

pub mod capsule;
pub mod display;
mod error;
pub mod local_nats;

pub use error::DemoError;

use std::sync::Arc;
use std::time::Duration;

use astrid_discord_adapter::{Adapter, AdapterConfig, DeliveryCheck, Mode};
use astrid_events::EventBus;
use async_nats::jetstream::{self, consumer};
use discord_bridge_schemas::{StatusEvent, subject};
use discord_gateway_sim::{SimConfig, Simulator, TrafficOptions, TrafficReport, run_demo_traffic};
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PublishMode};
use crate::error::RunError;
use crate::gateway::ShardSpec;
use crate::secret::Secret;

use self::capsule::{Capsule, Received};
use self::local_nats::LocalNats;

/// What the `demo` command was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoOptions {
    /// Stop on its own after this long (scripted demos, smoke tests); `None`
    /// runs until Ctrl-C.
    pub duration: Option<Duration>,
}

/// The demo's own durable consumer: it never takes events from a real
/// astridd adapter sharing the server.
const DURABLE: &str = "discord-bridge-demo";
/// The capsule reloads after receiving this many events…
const RELOAD_AFTER: u64 = 2;
/// …and stays away this long.
const RELOAD_FOR: Duration = Duration::from_secs(3);

#[allow(
    clippy::print_stdout,
    reason = "printing events is what the demo is for"
)]
fn say(line: &str) {
    println!("{line}");
}

/// Runs the demo until `shutdown` is cancelled or `options.duration` elapses.
///
/// # Errors
/// Set-up failures of the simulator, NATS or the adapter, or the bridge
/// stopping with an error; see [`RunError`].
pub async fn run(
    config: Config,
    options: DemoOptions,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let sim = Arc::new(
        Simulator::start(SimConfig {
            shards: 1,
            ..SimConfig::default()
        })
        .await
        .map_err(|e| DemoError::Start {
            what: "gateway simulator",
            source: Box::new(e),
        })?,
    );
    let mut nats = LocalNats::ensure(&config.nats.urls).await?;
    let result = pipeline(config, &options, &shutdown, &sim, &nats).await;
    sim.shutdown().await;
    nats.stop().await;
    result
}

async fn pipeline(
    config: Config,
    options: &DemoOptions,
    shutdown: &CancellationToken,
    sim: &Arc<Simulator>,
    nats: &LocalNats,
) -> Result<(), RunError> {
    say(&format!(
        "demo: simulated Discord gateway at {}",
        sim.gateway_url()
    ));
    say(&format!(
        "demo: NATS at {} ({})",
        crate::io::nats::redact(&nats.url),
        if nats.is_ours() {
            "started for this demo"
        } else {
            "already running"
        }
    ));
    let mut bridge = config;
    bridge.discord.token = Some(Secret::new(sim.config().token.clone()));
    bridge.discord.api_base = sim.api_base();
    bridge.discord.gateway_url = None;
    bridge.discord.allow_insecure_gateway = true;
    bridge.discord.shards = ShardSpec::Auto;
    bridge.nats.urls = vec![nats.url.clone()];
    let prefix = bridge.nats.subject_prefix.clone();
    let stream = bridge.nats.stream.clone();
    let mode = bridge.nats.publish;

    let stop = shutdown.child_token();
    if let Some(d) = options.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(d) => stop.cancel(),
            }
        });
    }
    let client = crate::io::nats::connect(&bridge.nats, "discord-bridge-demo", &stop).await?;
    let mut statuses = client
        .subscribe(subject::gateway_status(&prefix))
        .await
        .map_err(|e| DemoError::nats("cannot subscribe to status events", e))?;

    let mut bridge_task = Some(tokio::spawn(crate::run(bridge, stop.child_token())));
    if mode == PublishMode::JetStream {
        let agent_subject = subject::agent_events(&prefix);
        let ready = tokio::select! {
            r = fresh_durable(&client, &stream, &agent_subject) => r,
            joined = async { bridge_task.as_mut().expect("bridge task").await } => {
                return joined.unwrap_or_else(|e| Err(DemoError::Bridge(e).into()));
            }
        };
        ready?;
    }
    let bus = Arc::new(EventBus::new());
    let adapter = Adapter::new(
        client.clone(),
        Arc::clone(&bus),
        AdapterConfig {
            prefix: prefix.clone(),
            stream: stream.clone(),
            durable_name: DURABLE.to_owned(),
            mode: match mode {
                PublishMode::JetStream => Mode::JetStream,
                PublishMode::Core => Mode::Core,
            },
            // No kernel announces capsules here: the demo's capsule leases
            // its subscription, as a capsule host without those signals would.
            delivery_check: DeliveryCheck::RequireListener,
            ..AdapterConfig::default()
        },
    )
    .map_err(|e| DemoError::Start {
        what: "adapter",
        source: Box::new(e),
    })?;
    let topic = adapter.config().topic();
    let mut capsule = Capsule::new(bus, adapter.listeners().clone(), topic.clone());
    capsule.subscribe();
    let adapter = adapter.spawn(stop.child_token());
    say(&format!(
        "demo: the adapter relays {topic} to an in-process EventBus; the capsule prints what it receives. Ctrl-C stops"
    ));

    let traffic_stop = stop.child_token();
    let traffic = tokio::spawn({
        let sim = Arc::clone(sim);
        let traffic_stop = traffic_stop.clone();
        async move { run_demo_traffic(&sim, traffic_stop, TrafficOptions::default()).await }
    });

    let mut show = Show::default();
    let mut bridge_result = None;
    loop {
        let reload_at = show.back_at;
        tokio::select! {
            () = stop.cancelled() => break,
            Some(received) = capsule.recv() => show.event(&received, &mut capsule),
            Some(msg) = statuses.next() => status(&msg.payload),
            () = sleep_until(reload_at) => show.back(&mut capsule),
            joined = async { bridge_task.as_mut().expect("bridge task").await }, if bridge_task.is_some() => {
                bridge_task = None;
                bridge_result = Some(joined.unwrap_or_else(|e| Err(DemoError::Bridge(e).into())));
                break;
            }
        }
    }
    stop.cancel();
    traffic_stop.cancel();
    let report = traffic.await.unwrap_or_default();
    let result = match (bridge_result, bridge_task) {
        (Some(r), _) => r,
        (None, Some(task)) => task
            .await
            .unwrap_or_else(|e| Err(DemoError::Bridge(e).into())),
        (None, None) => Ok(()),
    };
    if !capsule.is_subscribed() {
        show.back(&mut capsule);
    }
    // What the bridge flushed on shutdown, and the last status transitions.
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(300)) => break,
            Some(received) = capsule.recv() => show.event(&received, &mut capsule),
            Some(msg) = statuses.next() => status(&msg.payload),
        }
    }
    let stats = adapter.stats();
    if let Err(e) = adapter.shutdown().await {
        tracing::warn!(error = %e, "adapter shutdown");
    }
    if mode == PublishMode::JetStream && !nats.is_ours() {
        let js = jetstream::new(client.clone());
        if let Ok(s) = js.get_stream(&stream).await {
            let _ = s.delete_consumer(DURABLE).await;
        }
    }
    say(&summary(&report, show.received, stats.duplicates));
    // Closed before the demo's server is stopped, not when dropped after.
    if let Err(e) = client.drain().await {
        tracing::warn!(error = %e, "closing the demo's NATS connection");
    }
    result
}

/// Creates the demo's durable consumer starting after what the stream holds
/// now, once the bridge has created the stream: earlier runs' events are
/// not replayed, and a real adapter's consumer is never touched.
async fn fresh_durable(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
) -> Result<(), DemoError> {
    let js = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut handle = loop {
        match js.get_stream(stream).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => {
                return Err(DemoError::nats(
                    format!("stream {stream} did not appear"),
                    e,
                ));
            }
        }
    };
    let last = handle
        .info()
        .await
        .map_err(|e| DemoError::nats(format!("cannot read stream {stream}"), e))?
        .state
        .last_sequence;
    let _ = handle.delete_consumer(DURABLE).await;
    handle
        .create_consumer(consumer::pull::Config {
            durable_name: Some(DURABLE.to_owned()),
            description: Some("discord-bridge demo capsule".into()),
            filter_subject: subject.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| DemoError::nats("cannot create the demo consumer", e))?;
    Ok(())
}

/// What the capsule printed, and its scripted reload.
#[derive(Default)]
struct Show {
    received: u64,
    reloaded: bool,
    back_at: Option<Instant>,
    /// Wall-clock window of the reload (Unix ms), to tell held events by the
    /// creation time in their snowflake id.
    away: Option<(u64, u64)>,
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a Discord snowflake id was made (Unix ms).
fn snowflake_ms(id: &str) -> Option<u64> {
    const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
    id.parse::<u64>()
        .ok()
        .map(|id| (id >> 22) + DISCORD_EPOCH_MS)
}

impl Show {
    fn event(&mut self, received: &Received, capsule: &mut Capsule) {
        match received {
            Received::Agent(ev) => {
                self.received += 1;
                let mut line = display::agent_line(ev, None, None);
                let made = ev.payload["id"].as_str().and_then(snowflake_ms);
                if let (Some(made), Some((from, to))) = (made, self.away)
                    && (from..=to).contains(&made)
                {
                    line.push_str("  (held during the reload)");
                }
                say(&line);
            }
            Received::Other(what) => say(&format!("capsule      {what}")),
        }
        if !self.reloaded && self.received >= RELOAD_AFTER {
            self.reloaded = true;
            capsule.unsubscribe();
            self.back_at = Some(Instant::now() + RELOAD_FOR);
            self.away = Some((unix_ms(), u64::MAX));
            say(
                "capsule      reloading: unsubscribed; the adapter holds new events, unacknowledged, in JetStream",
            );
        }
    }

    fn back(&mut self, capsule: &mut Capsule) {
        self.back_at = None;
        capsule.subscribe();
        if let Some((from, _)) = self.away {
            self.away = Some((from, unix_ms()));
        }
        say("capsule      reloaded: subscribed again; what arrived meanwhile follows, in order");
    }
}

fn status(payload: &[u8]) {
    if let Ok(ev) = serde_json::from_slice::<StatusEvent>(payload) {
        say(&display::status_line(&ev));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn summary(r: &TrafficReport, received: u64, duplicates: u64) -> String {
    format!(
        "demo: Discord sent {} events for the agent ({} guild messages, {} DMs, {} slash \
         commands) and {} the bridge filtered out ({} by the bot itself, {} typing, {} presence, \
         {} guild updates), with {} reconnect request(s); the capsule received {received} \
         ({duplicates} duplicate(s) dropped by the adapter)",
        r.relayable(),
        r.guild_messages,
        r.direct_messages,
        r.interactions,
        r.own_messages + r.typing + r.presences + r.guild_creates,
        r.own_messages,
        r.typing,
        r.presences,
        r.guild_creates,
        r.reconnects,
    )
}
