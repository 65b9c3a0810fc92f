//! Relays the bridge's `{prefix}.gateway.status` (core NATS) onto the bus as
//! IPC on the same topic, so the capsule can show connection health.
//!
//! Status is a stream of snapshots: each message supersedes the last, so it
//! is relayed at most once, with an ordinary publication that never waits
//! for a capsule queue (a full queue drops it, and the next one follows).

use std::sync::Arc;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::adapter::Shared;
use crate::map;
use crate::stats::Count;

/// Relays until cancelled; a subscription the client refuses is logged and
/// ends the relay (events are unaffected).
pub(crate) async fn relay(shared: Arc<Shared>, cancel: CancellationToken) {
    let subject = shared.config.status_topic();
    let mut sub = match shared.client.subscribe(subject.clone()).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(subject = %subject, error = %e, "cannot subscribe to gateway status; not relaying it");
            return;
        }
    };
    let bus = Arc::clone(shared.deliverer.bus());
    let source = shared.config.source_id();
    tracing::debug!(subject = %subject, "relaying gateway status");
    loop {
        let msg = tokio::select! {
            () = cancel.cancelled() => break,
            msg = sub.next() => match msg {
                Some(msg) => msg,
                None => break,
            },
        };
        match map::decode(&subject, &msg.payload) {
            Ok(data) => {
                let _ = bus.publish(map::ipc_event(&subject, data, source, None));
                shared.counters.bump(Count::StatusRelayed);
            }
            Err(e) => tracing::warn!(error = %e, "gateway status that is not JSON; not relayed"),
        }
    }
    if let Err(e) = sub.unsubscribe().await {
        tracing::debug!(error = %e, "unsubscribe gateway status");
    }
}
