//! The durable JetStream consumer: one task that pulls messages, holds them
//! in order while the capsule cannot take them, and acks each one after its
//! delivery.
//!
//! Holding must neither spin nor let the server redeliver behind our back:
//! the task sleeps on host signals, and while it holds messages it sends an
//! in-progress ack (`+WPI`) for each of them every `ack_wait / 3`, which
//! restarts the server's ack timer. The server
//! stops handing out messages once `max_ack_pending` are unacked, so what is
//! held stays bounded and newer events wait, in order, in the stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, ErrorCode, Message};
use futures_util::{FutureExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::adapter::Shared;
use crate::driver::{Driver, Signals, Turn};
use crate::error::AdapterError;
use crate::map::{self, EnvelopeMeta};
use crate::pump::{Fetch, FetchError, Incoming, Pump, PumpConfig, Settle};
use crate::setup::{self, Backoff};

/// Idle heartbeat asked of the server on each pull, so a silently dead
/// connection is noticed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Largest pull batch; the server never hands out more than
/// `max_ack_pending` anyway.
const MAX_BATCH: usize = 256;
/// How long shutdown waits for the final acks and naks to reach the server.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Settles one JetStream message through its ack subject.
pub(crate) struct JsAck {
    acker: Acker,
    seq: u64,
}

impl JsAck {
    async fn send(&self, kind: AckKind, what: &'static str) {
        if let Err(e) = self.acker.ack_with(kind).await {
            // The server redelivers what it did not hear about; the dedupe
            // window absorbs a lost ack of a delivered event.
            tracing::warn!(stream_seq = self.seq, error = %e, "cannot send {what}");
        }
    }
}

impl Settle for JsAck {
    async fn ack(self) {
        self.send(AckKind::Ack, "ack").await;
    }
    async fn progress(&self) {
        self.send(AckKind::Progress, "in-progress ack").await;
    }
    async fn nak(self) {
        self.send(AckKind::Nak(None), "nak").await;
    }
    async fn term(self) {
        self.send(AckKind::Term, "term").await;
    }
}

/// Why one message loop ended.
enum Exit {
    Cancelled,
    /// The consumer or its message stream is gone: set up again.
    Recreate,
}

/// Runs the durable consumer until cancelled.
pub(crate) async fn run(
    shared: Arc<Shared>,
    signals: Signals,
    cancel: CancellationToken,
) -> Result<(), AdapterError> {
    let cfg = &shared.config;
    let js = jetstream::new(shared.client.clone());
    let pump = Pump::new(
        Arc::clone(&shared.deliverer),
        Arc::clone(&shared.counters),
        PumpConfig {
            dedupe_window: cfg.dedupe_window,
            capacity: None,
            reach: cfg.crash_reach().max(cfg.replay_window),
            capsule_acks: cfg.capsule_acks,
        },
        Some(fetcher(
            js.clone(),
            cfg.stream.clone(),
            shared.deliverer.topic().to_owned(),
        )),
    );
    let mut driver = Driver::new(
        pump,
        cfg,
        signals,
        shared.deliverer.listeners().clone(),
        shared.deliverable.clone(),
    );
    let mut first = true;
    let mut backoff = Backoff::new();
    loop {
        let Some(stream) = setup::open_stream(&js, cfg, first, &cancel).await? else {
            return Ok(());
        };
        let mut consumer = match setup::ensure_consumer(
            &stream,
            cfg,
            driver.pump.highest_delivered(),
        )
        .await
        {
            Ok(consumer) => consumer,
            // At start an unusable consumer is reported; later, NATS may
            // just be away.
            Err(e) if first => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot set the durable consumer up again; retrying");
                if !backoff.wait(&cancel).await {
                    return Ok(());
                }
                continue;
            }
        };
        if first && cfg.reset_orphans_on_start {
            setup::reset_orphans(&stream, &mut consumer, cfg).await;
        }
        first = false;
        tracing::info!(stream = %cfg.stream, consumer = %cfg.durable_name, subject = %cfg.subject(), topic = %shared.deliverer.topic(), check = ?cfg.delivery_check, "consuming");
        match pump_messages(&shared, &consumer, &mut driver, &cancel).await? {
            Exit::Cancelled => return Ok(()),
            Exit::Recreate => {
                // Whatever the lost consumer handed out comes again from the
                // new one; only delivered events are remembered.
                driver.abandon();
                let dropped = driver.pump.clear();
                tracing::warn!(consumer = %cfg.durable_name, dropped_held = dropped, "durable consumer lost; setting it up again");
                if !backoff.wait(&cancel).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads stored events back for reload replays: one request per event, by
/// sequence (the sequences come from what this adapter handed over).
fn fetcher(js: jetstream::Context, stream: String, topic: String) -> Fetch {
    Arc::new(move |seq| {
        let js = js.clone();
        let stream = stream.clone();
        let topic = topic.clone();
        Box::pin(async move {
            let handle = js
                .get_stream_no_info(&stream)
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            let msg = handle
                .get_raw_message(seq)
                .await
                .map_err(|e| match e.kind() {
                    LastRawMessageErrorKind::NoMessageFound => FetchError::Missing(e.to_string()),
                    LastRawMessageErrorKind::JetStream(err)
                        if err.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
                    {
                        FetchError::Missing(e.to_string())
                    }
                    _ => FetchError::Unavailable(e.to_string()),
                })?;
            map::decode(&topic, &msg.payload).map_err(|e| FetchError::Missing(e.to_string()))
        })
    })
}

async fn pump_messages(
    shared: &Shared,
    consumer: &PullConsumer,
    driver: &mut Driver<JsAck>,
    cancel: &CancellationToken,
) -> Result<Exit, AdapterError> {
    let cfg = &shared.config;
    let batch = cfg.max_ack_pending.clamp(1, MAX_BATCH);
    let mut messages = match consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(HEARTBEAT)
        .messages()
        .await
    {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!(consumer = %cfg.durable_name, error = %e, "cannot start pulling");
            return Ok(Exit::Recreate);
        }
    };
    let period = progress_period(cfg.ack_wait);
    let mut progress = tokio::time::interval_at(Instant::now() + period, period);
    progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backoff = Backoff::new();
    loop {
        let next = match driver.turn(cancel, messages.next(), &mut progress).await {
            Turn::Busy => continue,
            Turn::Intake(next) => next,
            Turn::Cancelled => {
                // A pending reservation is released: nothing of it was
                // published, and its event is given back with the others.
                driver.abandon();
                // Messages the client already received go back too, in order.
                while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
                    admit(&mut driver.pump, msg).await;
                }
                // Withdraw the pull request before giving anything back:
                // the server would otherwise redeliver the naked messages
                // straight into it, find nobody there, and queue them again
                // behind the others — out of order.
                drop(messages);
                flush(shared).await;
                withdrawn(consumer).await;
                let given_back = driver.pump.nak_all().await;
                flush(shared).await;
                tracing::info!(given_back, "durable consumer stopped");
                return Ok(Exit::Cancelled);
            }
        };
        match next {
            Some(Ok(msg)) => {
                backoff.reset();
                admit(&mut driver.pump, msg).await;
            }
            Some(Err(e)) => match e.kind() {
                MessagesErrorKind::MissingHeartbeat => {
                    tracing::debug!(consumer = %cfg.durable_name, "missed an idle heartbeat (NATS away?)");
                }
                MessagesErrorKind::ConsumerDeleted => return Ok(Exit::Recreate),
                MessagesErrorKind::RequestLimitExceeded | MessagesErrorKind::PushBasedConsumer => {
                    return Err(AdapterError::Consumer {
                        stream: cfg.stream.clone(),
                        consumer: cfg.durable_name.clone(),
                        message: "refuses the adapter's pull requests; delete it or choose another durable_name".into(),
                        source: Some(Box::new(e)),
                    });
                }
                _ => {
                    tracing::warn!(consumer = %cfg.durable_name, error = %e, "pulling failed; retrying");
                    if !backoff.wait(cancel).await {
                        continue;
                    }
                }
            },
            None => return Ok(Exit::Recreate),
        }
    }
}

async fn admit(pump: &mut Pump<JsAck>, msg: Message) {
    let seq = match msg.info() {
        Ok(info) => info.stream_sequence,
        Err(e) => {
            tracing::warn!(subject = %msg.subject, error = %e, "message without JetStream metadata; ignored");
            return;
        }
    };
    let meta = EnvelopeMeta::from_headers(msg.headers.as_ref());
    let (message, acker) = msg.split();
    pump.admit(Incoming {
        key: seq,
        stream_seq: Some(seq),
        meta,
        payload: &message.payload,
        settle: JsAck { acker, seq },
    })
    .await;
}

/// Waits (bounded) until the server forgot our pull requests: it drops a
/// waiting request whose subscriber is gone when it looks at it.
async fn withdrawn(consumer: &PullConsumer) {
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while Instant::now() < deadline {
        match consumer.get_info().await {
            Ok(info) if info.num_waiting == 0 => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => {
                tracing::debug!(error = %e, "shutdown: cannot read the consumer's waiting requests");
                return;
            }
        }
    }
    tracing::warn!(
        "shutdown: the server still lists a pull request of ours; held events may come back out of order"
    );
}

/// Waits (bounded) until everything sent so far reached the server.
async fn flush(shared: &Shared) {
    match tokio::time::timeout(FLUSH_TIMEOUT, shared.client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "shutdown: cannot flush to NATS"),
        Err(_) => {
            tracing::warn!("shutdown: NATS did not confirm in time; acks and naks may be lost")
        }
    }
}

/// How often held messages are kept alive: three times per `ack_wait`, so a
/// late tick still lands in time.
fn progress_period(ack_wait: Duration) -> Duration {
    (ack_wait / 3).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_beats_ack_wait() {
        assert_eq!(
            progress_period(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            progress_period(Duration::from_millis(300)),
            Duration::from_millis(100)
        );
    }
}
