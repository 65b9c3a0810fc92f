//! `discord-bridge demo`: the whole pipeline on one machine, no token needed.
//!
//! The gateway simulator plays Discord with realistic traffic (guild
//! messages, DMs, slash commands, and noise the bridge must filter out), a
//! local `nats-server -js` is started when none answers at `NATS_URL`, the
//! real bridge runs against both, and every event is printed as the capsule
//! receives it. Ctrl-C (or `--duration`) stops everything and leaves no
//! process behind.
//!
//! * [`local_nats`] — find or start the NATS server;
//! * [`display`] — one readable line per event.

pub mod display;
pub mod local_nats;

use std::sync::Arc;
use std::time::Duration;

use discord_bridge_schemas::{AgentEvent, StatusEvent, header, subject};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::RunError;
use crate::gateway::ShardSpec;
use crate::secret::Secret;
use crate::sim::{SimConfig, Simulator, TrafficOptions, TrafficReport, run_demo_traffic};

use self::local_nats::LocalNats;

/// What the `demo` command was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoOptions {
    /// Stop on its own after this long (scripted demos, smoke tests); `None`
    /// runs until Ctrl-C.
    pub duration: Option<Duration>,
}

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
/// Set-up failures of the simulator or NATS, or the bridge stopping with an
/// error; see [`RunError`].
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
        .map_err(|e| RunError::Runtime(e.to_string()))?,
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
    let mut events = client
        .subscribe(subject::agent_events(&prefix))
        .await
        .map_err(|e| RunError::Runtime(format!("cannot subscribe: {e}")))?;
    let mut statuses = client
        .subscribe(subject::gateway_status(&prefix))
        .await
        .map_err(|e| RunError::Runtime(format!("cannot subscribe: {e}")))?;
    say(&format!(
        "demo: printing {} as the capsule receives it, and lifecycle status; Ctrl-C stops",
        subject::agent_events(&prefix)
    ));

    let bridge_task = tokio::spawn(crate::run(bridge, stop.child_token()));
    let traffic_stop = stop.child_token();
    let traffic = tokio::spawn({
        let sim = Arc::clone(sim);
        let traffic_stop = traffic_stop.clone();
        async move {
            // Start once the bridge holds a session, so nothing is undelivered.
            let ready = sim
                .wait_for(Duration::from_secs(60), |s| {
                    s.session_of(0).and_then(|x| x.attached)
                })
                .await;
            if ready.is_err() {
                return TrafficReport::default();
            }
            run_demo_traffic(&sim, traffic_stop, TrafficOptions::default()).await
        }
    });

    let mut received = 0u64;
    let mut bridge_task = Some(bridge_task);
    let mut bridge_result = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(msg) = events.next() => {
                received += 1;
                let h = |name| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
                match serde_json::from_slice::<AgentEvent>(&msg.payload) {
                    Ok(ev) => say(&display::agent_line(&ev, h(header::SHARD).as_deref(), h(header::SEQ).as_deref())),
                    Err(e) => say(&format!("event        (does not match the schema: {e})")),
                }
            }
            Some(msg) = statuses.next() => {
                if let Ok(ev) = serde_json::from_slice::<StatusEvent>(&msg.payload) {
                    say(&display::status_line(&ev));
                }
            }
            joined = async { bridge_task.as_mut().expect("bridge task").await }, if bridge_task.is_some() => {
                bridge_task = None;
                bridge_result = Some(joined.unwrap_or_else(|e| Err(RunError::Runtime(format!("bridge task failed: {e}")))));
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
            .unwrap_or_else(|e| Err(RunError::Runtime(format!("bridge task failed: {e}")))),
        (None, None) => Ok(()),
    };
    // Events and statuses still in flight when the bridge flushed on shutdown.
    loop {
        let idle = tokio::time::sleep(Duration::from_millis(200));
        tokio::select! {
            () = idle => break,
            Some(msg) = events.next() => {
                received += 1;
                if let Ok(ev) = serde_json::from_slice::<AgentEvent>(&msg.payload) {
                    say(&display::agent_line(&ev, None, None));
                }
            }
            Some(msg) = statuses.next() => {
                if let Ok(ev) = serde_json::from_slice::<StatusEvent>(&msg.payload) {
                    say(&display::status_line(&ev));
                }
            }
        }
    }
    say(&summary(&report, received));
    result
}

fn summary(r: &TrafficReport, received: u64) -> String {
    format!(
        "demo: Discord sent {} events for the agent ({} guild messages, {} DMs, {} slash \
         commands) and {} the bridge filtered out ({} by the bot itself, {} typing, {} presence, \
         {} guild updates), with {} reconnect requests; the capsule received {received}",
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
