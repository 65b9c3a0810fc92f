//! The `discord-bridge` NATS service (the README's Operations): `nats micro ls`, `info`
//! and `stats` list every bridge process, and the `status` endpoint on
//! `{prefix}.bridge.status` answers with the state of each shard.
//!
//! Every process joins the endpoint with its own queue group, so a request
//! with several replies (`nats req --replies 0 …`) collects every process;
//! `nats micro stats discord-bridge` shows the same reports as endpoint data.

use async_nats::service::ServiceExt as _;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::reports::Reports;

/// Serves the status endpoint until `cancel`. A server that refuses the
/// service leaves the bridge without it (warned), not stopped.
///
/// # Errors
/// None: the type is the supervisor's contract.
pub(crate) async fn serve(
    client: async_nats::Client,
    prefix: String,
    reports: Reports,
    cancel: CancellationToken,
) -> Result<(), super::tasks::TaskError> {
    let stats_reports = reports.clone();
    let service = client
        .service_builder()
        .description("Discord Gateway to NATS bridge: per-shard session status")
        .queue_group(format!("discord-bridge-{:016x}", fastrand::u64(..)))
        .stats_handler(move |_endpoint, _stats| {
            serde_json::to_value(stats_reports.snapshot()).unwrap_or_default()
        })
        .start("discord-bridge", env!("CARGO_PKG_VERSION"))
        .await;
    let service = match service {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register the discord-bridge NATS service; status endpoint unavailable");
            return Ok(());
        }
    };
    let subject = format!("{prefix}.bridge.status");
    let mut endpoint = match service.endpoint(subject.clone()).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, subject, "cannot add the status endpoint");
            return Ok(());
        }
    };
    tracing::info!(subject, "status endpoint ready");
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            request = endpoint.next() => {
                let Some(request) = request else { break };
                let body = serde_json::to_vec(&reports.snapshot()).unwrap_or_default();
                if let Err(e) = request.respond(Ok(body.into())).await {
                    tracing::debug!(error = %e, "status reply failed");
                }
            }
        }
    }
    let _ = endpoint.stop().await;
    let _ = service.stop().await;
    Ok(())
}
