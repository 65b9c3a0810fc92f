//! Runs the adapter against a NATS server and an in-process `EventBus`, and
//! prints every event as the Discord capsule would receive it.
//!
//! ```sh
//! nats-server -js &                                   # or docker compose up nats
//! discord-bridge demo                                 # or a real bridge
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p astrid-discord-adapter --example in_process
//! ```
//!
//! Ctrl-C stops it; held events are handed back to JetStream for the next run.

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use astrid_discord_adapter::{Adapter, AdapterConfig, DeliveryCheck};
use astrid_events::ipc::IpcPayload;
use astrid_events::{AstridEvent, EventBus};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());

    // What astridd's start-up does with `Kernel::event_bus`. A bare bus has
    // no kernel announcing capsules, so delivery waits for a registered
    // subscription instead of astridd's signals.
    let bus = Arc::new(EventBus::new());
    let nats = async_nats::connect(&url).await?;
    let config = AdapterConfig {
        delivery_check: DeliveryCheck::RequireListener,
        ..AdapterConfig::default()
    };
    let adapter = Adapter::new(nats, Arc::clone(&bus), config)?;

    // A subscription registered with the adapter, live as soon as it exists.
    let topic = adapter.config().topic();
    let mut capsule = adapter.listeners().subscribe_routed(
        &bus,
        Uuid::new_v4(),
        topic.clone(),
        "astrid-discord",
        "capsule_guest",
    );

    let discord = adapter.spawn(CancellationToken::new());
    println!("relaying {topic} from {url}; Ctrl-C to stop");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = capsule.recv(None) => {
                let Some(event) = event else { break };
                if let AstridEvent::Ipc { message, .. } = &*event
                    && let IpcPayload::Custom { data } = &message.payload
                {
                    println!("{} {}", message.topic, data);
                }
            }
        }
    }
    let stats = discord.stats();
    discord.shutdown().await?;
    println!(
        "stopped after {} events ({} duplicates dropped)",
        stats.delivered, stats.duplicates
    );
    Ok(())
}
