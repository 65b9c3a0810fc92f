//! Core-NATS mode, for servers without JetStream: **at most once**.
//!
//! A plain subscription to the subject. There is nothing to ack and nothing
//! stored: what is published while the adapter is disconnected never
//! arrives, and events held for a missing listener live only in this
//! process (at most `max_ack_pending`; newer ones are dropped and counted;
//! held ones are lost at shutdown). The bridge's `Nats-Msg-Id` still lets
//! the adapter drop the duplicates a gateway RESUME replays, which core NATS
//! does not filter. The client resubscribes by itself after a reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::adapter::Shared;
use crate::driver::{Driver, Signals, Turn};
use crate::error::AdapterError;
use crate::map::EnvelopeMeta;
use crate::pump::{Incoming, Pump, PumpConfig};

/// Runs the subscription until cancelled.
pub(crate) async fn run(
    shared: Arc<Shared>,
    signals: Signals,
    cancel: CancellationToken,
) -> Result<(), AdapterError> {
    let cfg = &shared.config;
    let subject = cfg.subject();
    let mut subscription = shared
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|e| AdapterError::Subscribe {
            subject: subject.clone(),
            source: Box::new(e),
        })?;
    // Make sure the server has the subscription before reporting readiness:
    // anything published after `run` logs "consuming" is received.
    if let Err(e) = shared.client.flush().await {
        tracing::warn!(error = %e, "cannot flush the subscription");
    }
    tracing::info!(subject = %subject, topic = %shared.deliverer.topic(), "consuming (core NATS: at most once)");
    let pump: Pump<()> = Pump::new(
        Arc::clone(&shared.deliverer),
        Arc::clone(&shared.counters),
        PumpConfig {
            dedupe_window: cfg.dedupe_window,
            capacity: Some(cfg.max_ack_pending),
            reach: cfg.replay_window,
            capsule_acks: false,
        },
        None,
    );
    let mut driver = Driver::new(
        pump,
        cfg,
        signals,
        shared.deliverer.listeners().clone(),
        shared.deliverable.clone(),
    );
    // Nothing to keep alive in core mode; the interval never fires while
    // the pump holds nothing to settle anyway.
    let mut keepalive = tokio::time::interval(Duration::from_secs(3600));
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut arrival: u64 = 0;
    loop {
        match driver
            .turn(&cancel, subscription.next(), &mut keepalive)
            .await
        {
            Turn::Busy => {}
            Turn::Cancelled => break,
            Turn::Intake(None) => {
                return Err(AdapterError::Subscribe {
                    subject,
                    source: "the NATS client closed the subscription".into(),
                });
            }
            Turn::Intake(Some(msg)) => {
                arrival = arrival.wrapping_add(1);
                driver
                    .pump
                    .admit(Incoming {
                        key: arrival,
                        stream_seq: None,
                        meta: EnvelopeMeta::from_headers(msg.headers.as_ref()),
                        payload: &msg.payload,
                        settle: (),
                    })
                    .await;
            }
        }
    }
    driver.abandon();
    let mut pump = driver.pump;
    let lost = pump.clear();
    if lost > 0 {
        tracing::warn!(
            lost,
            "core mode: events held for a missing listener are lost at shutdown"
        );
    }
    if let Err(e) = subscription.unsubscribe().await {
        tracing::debug!(error = %e, "unsubscribe at shutdown");
    }
    tracing::info!("core subscription stopped");
    Ok(())
}
