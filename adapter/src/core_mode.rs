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

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::adapter::Shared;
use crate::error::AdapterError;
use crate::map::EnvelopeMeta;
use crate::pump::{Incoming, Pump};

/// Runs the subscription until cancelled.
pub(crate) async fn run(
    shared: Arc<Shared>,
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
    let mut pump: Pump<()> = Pump::new(
        Arc::clone(&shared.deliverer),
        Arc::clone(&shared.counters),
        cfg.dedupe_window,
        Some(cfg.max_ack_pending),
    );
    let mut changes = shared.deliverer.listeners().changes();
    let mut arrival: u64 = 0;
    loop {
        pump.drain().await;
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            next = subscription.next() => {
                let Some(msg) = next else {
                    return Err(AdapterError::Subscribe {
                        subject,
                        source: "the NATS client closed the subscription".into(),
                    });
                };
                arrival = arrival.wrapping_add(1);
                pump.admit(Incoming {
                    key: arrival,
                    stream_seq: None,
                    meta: EnvelopeMeta::from_headers(msg.headers.as_ref()),
                    payload: &msg.payload,
                    settle: (),
                })
                .await;
            }
            changed = changes.changed() => if changed.is_err() {
                break;
            },
        }
    }
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
