//! Replays: re-emitting stored events from a stream sequence or a time,
//! through an ephemeral ordered consumer.
//!
//! The ordered consumer has no acks and its own position, so the durable
//! consumer — its ack floor, pending count and held events — is untouched,
//! and the live relay keeps running meanwhile (replayed and live events may
//! interleave on the bus). A replay covers what is stored when it starts:
//! it ends at the stream's last sequence at that moment, or earlier at
//! `until`.
//!
//! Replays are deliberate, so they bypass the de-duplication of the live
//! relay (and do not feed it): every stored event in range is emitted again.
//! They wait while the relay holds (the capsule is away), through the same
//! reserved lane; they do not enter the reload replay window. A replayed event has the
//! live shape except `EventMetadata::correlation_id`, which is the replay's
//! id ([`ReplayReport::id`]) so host-side observers can tell replays apart;
//! the capsule's `IpcMessage` is identical.

use std::sync::Arc;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{OrderedConfig, OrderedErrorKind};
use async_nats::jetstream::{self, context::GetStreamErrorKind};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::deliver::Deliverer;
use crate::error::AdapterError;
use crate::map;
use crate::setup;
use crate::stats::{Count, Counters};

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// At this stream sequence (inclusive).
    Sequence(u64),
    /// At the first event stored at or after this time.
    Time(OffsetDateTime),
}

/// Where a replay ends (inclusive); never past what was stored when it
/// started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayUntil {
    /// The last event stored when the replay started.
    #[default]
    Now,
    /// At this stream sequence.
    Sequence(u64),
    /// At the last event stored at or before this time.
    Time(OffsetDateTime),
}

/// A replay request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRequest {
    /// The first event.
    pub from: ReplayFrom,
    /// The last event.
    pub until: ReplayUntil,
}

impl ReplayRequest {
    /// Everything stored from `from` on.
    #[must_use]
    pub fn from(from: ReplayFrom) -> Self {
        Self {
            from,
            until: ReplayUntil::Now,
        }
    }

    /// The same request, ending at `until`.
    #[must_use]
    pub fn until(mut self, until: ReplayUntil) -> Self {
        self.until = until;
        self
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The `correlation_id` stamped on every replayed event.
    pub id: Uuid,
    /// Events emitted.
    pub emitted: u64,
    /// Stored messages that could not become events (not JSON, too large).
    pub skipped: u64,
    /// Stream sequence of the first emitted or skipped message.
    pub first_sequence: Option<u64>,
    /// Stream sequence of the last emitted or skipped message.
    pub last_sequence: Option<u64>,
}

/// Runs replays; cheap to clone. Get one from
/// [`Adapter::replayer`](crate::Adapter::replayer) or use
/// [`AdapterHandle::replay`](crate::AdapterHandle::replay).
#[derive(Debug, Clone)]
pub struct Replayer {
    pub(crate) js: jetstream::Context,
    pub(crate) stream: String,
    pub(crate) subject: String,
    pub(crate) deliverer: Arc<Deliverer>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) deliverable: tokio::sync::watch::Receiver<bool>,
}

impl Replayer {
    /// Re-emits the stored events of `request` on the bus, in stream order,
    /// and returns when the last one was delivered.
    ///
    /// # Errors
    /// [`AdapterError::Cancelled`] when `cancel` fires first (events emitted
    /// so far stay emitted); [`AdapterError::Replay`] when the stream cannot
    /// be read; [`AdapterError::JetStreamNotEnabled`].
    pub async fn replay(
        &self,
        request: ReplayRequest,
        cancel: &CancellationToken,
    ) -> Result<ReplayReport, AdapterError> {
        let id = Uuid::new_v4();
        let mut report = ReplayReport {
            id,
            emitted: 0,
            skipped: 0,
            first_sequence: None,
            last_sequence: None,
        };
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| match e.kind() {
                GetStreamErrorKind::JetStream(err) if setup::not_enabled(err.error_code()) => {
                    AdapterError::JetStreamNotEnabled
                }
                GetStreamErrorKind::Request if setup::no_responders(&e) => {
                    AdapterError::JetStreamNotEnabled
                }
                _ => AdapterError::replay(
                    format!("cannot read stream {}", self.stream),
                    Some(Box::new(e)),
                ),
            })?;
        let last = stream.cached_info().state.last_sequence;
        let end = match request.until {
            ReplayUntil::Sequence(s) => s.min(last),
            ReplayUntil::Now | ReplayUntil::Time(_) => last,
        };
        let until_time = match request.until {
            ReplayUntil::Time(t) => Some(t),
            _ => None,
        };
        let deliver_policy = match request.from {
            ReplayFrom::Sequence(s) if s > end => return Ok(report),
            ReplayFrom::Sequence(s) => DeliverPolicy::ByStartSequence {
                start_sequence: s.max(1),
            },
            ReplayFrom::Time(t) => DeliverPolicy::ByStartTime { start_time: t },
        };
        if end == 0 {
            return Ok(report);
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                AdapterError::replay("cannot create the replay consumer", Some(Box::new(e)))
            })?;
        let consumer_name = consumer.cached_info().name.clone();
        if consumer.cached_info().num_pending == 0 {
            let _ = stream.delete_consumer(&consumer_name).await;
            return Ok(report);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| AdapterError::replay("cannot pull for the replay", Some(Box::new(e))))?;
        tracing::info!(replay = %id, from = ?request.from, until = ?request.until, end_sequence = end, "replay started");
        loop {
            let msg = tokio::select! {
                () = cancel.cancelled() => return Err(AdapterError::Cancelled),
                next = messages.next() => match next {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) if e.kind() == OrderedErrorKind::MissingHeartbeat => continue,
                    Some(Err(e)) => return Err(AdapterError::replay("pulling failed", Some(Box::new(e)))),
                    None => return Err(AdapterError::replay("the replay consumer ended early", None)),
                },
            };
            let info = msg
                .info()
                .map_err(|e| AdapterError::replay("message without JetStream metadata", Some(e)))?;
            let (seq, published, remaining) = (info.stream_sequence, info.published, info.pending);
            if seq > end || until_time.is_some_and(|t| published > t) {
                break;
            }
            report.first_sequence.get_or_insert(seq);
            report.last_sequence = Some(seq);
            match map::decode(self.deliverer.topic(), &msg.payload) {
                Ok(data) => {
                    self.emit(&data, id, cancel).await?;
                    report.emitted += 1;
                    self.counters.bump(Count::Replayed);
                }
                Err(e) => {
                    tracing::warn!(replay = %id, stream_seq = seq, error = %e, "stored message skipped");
                    report.skipped += 1;
                }
            }
            if seq >= end || remaining == 0 {
                break;
            }
        }
        drop(messages);
        // Ephemeral consumers expire on their own; deleting it now is tidier.
        let _ = stream.delete_consumer(&consumer_name).await;
        tracing::info!(replay = %id, emitted = report.emitted, skipped = report.skipped, "replay finished");
        Ok(report)
    }

    async fn emit(
        &self,
        data: &serde_json::Value,
        id: Uuid,
        cancel: &CancellationToken,
    ) -> Result<(), AdapterError> {
        // Like live events, wait while the relay holds (the capsule is away).
        let mut deliverable = self.deliverable.clone();
        tokio::select! {
            () = cancel.cancelled() => return Err(AdapterError::Cancelled),
            ready = deliverable.wait_for(|may| *may) => if ready.is_err() {
                return Err(AdapterError::Cancelled);
            },
        }
        if self.deliverer.deliver_until(data, Some(id), cancel).await {
            Ok(())
        } else if cancel.is_cancelled() {
            Err(AdapterError::Cancelled)
        } else {
            Err(AdapterError::replay(
                "the capsule dispatcher cannot represent a stored event",
                None,
            ))
        }
    }
}
