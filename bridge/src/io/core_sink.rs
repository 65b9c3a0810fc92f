//! Fire-and-forget publishing on core NATS: status events and the raw
//! dispatch firehose. Neither is durable by design, so a bounded queue that
//! drops (and counts) when NATS is away is the right trade: shards never wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::HeaderMap;
use bytes::Bytes;
use discord_bridge_schemas::StatusEvent;
use discord_bridge_schemas::subject;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::tasks::{TaskError, TaskId, Tasks};

const QUEUE: usize = 4096;

enum Msg {
    Status(StatusEvent),
    Raw {
        subject: String,
        headers: HeaderMap,
        body: Bytes,
    },
}

/// A handle for shards; the task ends when every handle is dropped.
#[derive(Clone)]
pub(crate) struct CoreSink {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for CoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreSink")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl CoreSink {
    /// Starts the publishing task; it ends once every handle is dropped and
    /// what they queued is flushed.
    #[must_use]
    pub(crate) fn spawn(
        client: async_nats::Client,
        prefix: &str,
        tasks: &Tasks,
    ) -> (Self, JoinHandle<Option<()>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let status_subject = subject::gateway_status(prefix);
        let task = tasks.spawn(
            TaskId::process("status and firehose publisher"),
            run(client, rx, status_subject),
        );
        let sink = Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            prefix: Arc::from(prefix),
        };
        (sink, task)
    }

    /// Publishes a status event (stamped with the time).
    pub(crate) fn status(&self, mut event: StatusEvent) {
        event.at = OffsetDateTime::now_utc().format(&Rfc3339).ok();
        let _ = self.send(Msg::Status(event));
    }

    /// Publishes a raw dispatch on `{prefix}.gateway.dispatch.{event}`;
    /// `false` when the queue was full and it was dropped (and counted).
    pub(crate) fn raw(&self, event: &str, headers: HeaderMap, body: Bytes) -> bool {
        let subject = subject::gateway_dispatch(&self.prefix, event);
        self.send(Msg::Raw {
            subject,
            headers,
            body,
        })
    }

    /// The count of messages dropped because the queue was full, for the
    /// metrics: a handle on the number, not on the queue (holding a sink
    /// would keep its task from ending).
    #[must_use]
    pub(crate) fn drop_count(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }

    fn send(&self, msg: Msg) -> bool {
        let queued = self.tx.try_send(msg).is_ok();
        if !queued {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "core NATS queue full: status/firehose messages dropped"
                );
            }
        }
        queued
    }
}

async fn run(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Msg>,
    status_subject: String,
) -> Result<(), TaskError> {
    while let Some(msg) = rx.recv().await {
        let result = match msg {
            Msg::Status(event) => match serde_json::to_vec(&event) {
                Ok(body) => client.publish(status_subject.clone(), body.into()).await,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a status event");
                    continue;
                }
            },
            Msg::Raw {
                subject,
                headers,
                body,
            } => client.publish_with_headers(subject, headers, body).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "core NATS publish failed");
        }
    }
    let _ = client.flush().await;
    Ok(())
}
