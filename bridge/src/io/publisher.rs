//! The publisher of one shard: moves events from the outbox to NATS, in
//! order, with a bounded window of unacknowledged JetStream publishes, and
//! reports the highest acknowledged sequence back to the shard (its resume
//! point).
//!
//! A failed or timed-out publish rewinds the window: everything not yet
//! acknowledged is sent again, in order, under the same `Nats-Msg-Id`, so the
//! stream's duplicate window drops what had in fact been stored.

use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{HeaderMap, HeaderName, HeaderValue, Subject};
use discord_bridge_schemas::{AgentEventKind, ShardState, StatusEvent, header};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::core_sink::CoreSink;
use super::outbox::{Entry, Outbox};
use super::reports::ShardReporter;
use super::tasks::TaskError;
use crate::gateway::ShardId;
use crate::gateway::backoff::Backoff;
use crate::gateway::machine::{Publish, PublishKind};

/// Where events go.
#[derive(Clone)]
pub(crate) enum Target {
    /// JetStream: acknowledged, stored, de-duplicated.
    JetStream {
        /// The JetStream context (its timeout is the ack timeout).
        js: Box<jetstream::Context>,
        /// The client, to watch the connection state.
        client: async_nats::Client,
    },
    /// Core NATS: at most once.
    Core(async_nats::Client),
}

impl Target {
    /// The NATS client, whose connection state the shard watches.
    pub(crate) const fn client(&self) -> &async_nats::Client {
        match self {
            Self::JetStream { client, .. } | Self::Core(client) => client,
        }
    }
}

/// Settings of one publisher.
#[derive(Debug, Clone)]
pub(crate) struct PublisherConfig {
    /// `{prefix}.agent.events`.
    pub subject: String,
    /// The shard, for headers and logs.
    pub shard: ShardId,
    /// Unacknowledged publishes at most.
    pub max_inflight: usize,
    /// How long a shutdown may spend flushing the outbox.
    pub drain_timeout: Duration,
    /// Where what was published, dropped or retried is counted.
    pub reporter: ShardReporter,
}

/// How one publish ended.
enum Outcome {
    /// Stored (JetStream, with how long the ack took) or sent (core).
    Stored(Option<Duration>),
    /// Larger than the server accepts: skipped for good.
    TooLarge(String),
    /// A header could not be built: skipped for good.
    BadHeader(HeaderError),
    Failed(String),
}

type InFlight = Pin<Box<dyn Future<Output = (Entry, Outcome)> + Send>>;

/// A header value that is not one line (it cannot happen for values the
/// machine validated; refusing beats the panic of async-nats' infallible
/// conversions).
#[derive(Debug, thiserror::Error)]
#[error("header {name} would carry a line break; the event is not published")]
pub struct HeaderError {
    /// The header.
    pub name: &'static str,
}

/// The headers every published event carries (see the README's NATS
/// contract), built per event without re-deriving what does not change:
/// header names are constants, the shard value is made once per publisher,
/// the session value once per session, the event names once. What is left
/// per event is the message id, the sequence and the guild.
#[derive(Debug, Clone)]
pub struct EventHeaders {
    shard: HeaderValue,
    session: Option<(Arc<str>, HeaderValue)>,
    message: HeaderValue,
    interaction: HeaderValue,
}

const MSG_ID: HeaderName = HeaderName::from_static(header::MSG_ID);
const SHARD: HeaderName = HeaderName::from_static(header::SHARD);
const SEQ: HeaderName = HeaderName::from_static(header::SEQ);
const EVENT: HeaderName = HeaderName::from_static(header::EVENT);
const SESSION: HeaderName = HeaderName::from_static(header::SESSION);
const GUILD: HeaderName = HeaderName::from_static(header::GUILD);

fn value(name: &'static str, v: &str) -> Result<HeaderValue, HeaderError> {
    v.parse::<HeaderValue>().map_err(|_| HeaderError { name })
}

impl EventHeaders {
    /// The headers of `shard`'s events.
    #[must_use]
    pub fn new(shard: ShardId) -> Self {
        Self {
            shard: HeaderValue::from(shard.to_string()),
            session: None,
            message: HeaderValue::from("MESSAGE_CREATE"),
            interaction: HeaderValue::from("INTERACTION_CREATE"),
        }
    }

    /// The headers of one event.
    ///
    /// # Errors
    /// A value with a line break (the machine validates session ids, event
    /// names and guild ids, so this does not happen; refusing beats the
    /// panic of async-nats' infallible conversions).
    pub fn build(&mut self, meta: &Publish) -> Result<HeaderMap, HeaderError> {
        let session = match &self.session {
            Some((id, v)) if Arc::ptr_eq(id, &meta.session_id) || **id == *meta.session_id => {
                v.clone()
            }
            _ => {
                let v = value(header::SESSION, &meta.session_id)?;
                self.session = Some((Arc::clone(&meta.session_id), v.clone()));
                v
            }
        };
        let event = match &meta.kind {
            PublishKind::Agent(AgentEventKind::Message) => self.message.clone(),
            PublishKind::Agent(AgentEventKind::Interaction) => self.interaction.clone(),
            PublishKind::Raw(t) => value(header::EVENT, t)?,
        };
        let mut h = HeaderMap::new();
        // The session value was checked: with a number after it, the id
        // is one line too.
        h.insert(
            MSG_ID,
            HeaderValue::from(discord_bridge_schemas::subject::msg_id(
                &meta.session_id,
                meta.seq,
            )),
        );
        h.insert(SHARD, self.shard.clone());
        h.insert(SEQ, HeaderValue::from(meta.seq));
        h.insert(EVENT, event);
        h.insert(SESSION, session);
        if let Some(g) = &meta.guild_id {
            h.insert(GUILD, value(header::GUILD, g)?);
        }
        Ok(h)
    }
}

/// Runs until cancelled and the outbox is flushed (or the drain times out).
///
/// # Errors
/// Only through its failpoint, for the supervisor's tests: a publisher that
/// cannot go on ends the process.
pub(crate) async fn run(
    target: Target,
    outbox: Arc<Outbox>,
    sink: CoreSink,
    cfg: PublisherConfig,
    cancel: CancellationToken,
) -> Result<(), TaskError> {
    let mut inflight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut drain_until: Option<Instant> = None;
    let shard = cfg.shard;
    let subject = Subject::from(cfg.subject.as_str());
    let mut headers = EventHeaders::new(shard);
    loop {
        while inflight.len() < cfg.max_inflight {
            let Some(entry) = outbox.next_unsent() else {
                break;
            };
            crate::failpoint::hit("publisher")?;
            inflight.push_back(send(&target, &subject, &mut headers, entry).await);
        }
        if drain_until.is_some() && outbox.is_empty() {
            break;
        }
        let deadline = drain_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            Some((entry, outcome)) = inflight.next(), if !inflight.is_empty() => match outcome {
                Outcome::Stored(ack) => {
                    backoff.reset();
                    outbox.complete_front();
                    cfg.reporter.published(ack);
                }
                Outcome::TooLarge(why) => {
                    outbox.complete_front();
                    cfg.reporter.too_large();
                    report_too_large(&sink, shard, &entry, &why);
                }
                Outcome::BadHeader(e) => {
                    outbox.complete_front();
                    cfg.reporter.bad_header();
                    tracing::error!(seq = entry.meta.seq, error = %e, "event dropped");
                }
                Outcome::Failed(why) => {
                    cfg.reporter.publish_failed();
                    inflight = FuturesOrdered::new();
                    outbox.rewind();
                    let wait = backoff.next_delay(fastrand::f64());
                    tracing::warn!(seq = entry.meta.seq, error = %why, retry_ms = wait.as_millis(), buffered = outbox.len(), "publish failed; retrying in order");
                    if !wait_for_nats(target.client(), wait, drain_until).await {
                        break;
                    }
                }
            },
            () = outbox.work(), if inflight.len() < cfg.max_inflight => {}
            () = cancel.cancelled(), if drain_until.is_none() => {
                drain_until = Some(Instant::now() + cfg.drain_timeout);
            }
            () = tokio::time::sleep_until(deadline), if drain_until.is_some() => break,
        }
    }
    let left = outbox.len();
    if left > 0 {
        tracing::warn!(
            unpublished = left,
            "shutdown: events still buffered were not stored in NATS"
        );
    } else {
        tracing::debug!("publisher flushed");
    }
    Ok(())
}

async fn send(
    target: &Target,
    subject: &Subject,
    headers: &mut EventHeaders,
    entry: Entry,
) -> InFlight {
    let hdrs = match headers.build(&entry.meta) {
        Ok(h) => h,
        // Never retried: the same values would fail again.
        Err(e) => return Box::pin(async move { (entry, Outcome::BadHeader(e)) }),
    };
    match target {
        Target::JetStream { js, .. } => {
            let msg = jetstream::message::PublishMessage::build()
                .payload(entry.body.clone())
                .headers(hdrs);
            let sent = Instant::now();
            match js.send_publish(subject.clone(), msg).await {
                Ok(ack) => Box::pin(async move {
                    let outcome = match ack.into_future().await {
                        Ok(_) => Outcome::Stored(Some(sent.elapsed())),
                        Err(e) => classify(&e),
                    };
                    (entry, outcome)
                }),
                Err(e) => {
                    let outcome = classify(&e);
                    Box::pin(async move { (entry, outcome) })
                }
            }
        }
        Target::Core(client) => {
            let outcome = match client
                .publish_with_headers(subject.clone(), hdrs, entry.body.clone())
                .await
            {
                Ok(()) => Outcome::Stored(None),
                Err(e) if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                    Outcome::TooLarge(e.to_string())
                }
                Err(e) => Outcome::Failed(e.to_string()),
            };
            Box::pin(async move { (entry, outcome) })
        }
    }
}

fn classify(e: &jetstream::context::PublishError) -> Outcome {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => Outcome::TooLarge(e.to_string()),
        _ => Outcome::Failed(e.to_string()),
    }
}

fn report_too_large(sink: &CoreSink, shard: ShardId, entry: &Entry, why: &str) {
    let message = format!(
        "{} seq {} ({} bytes) is larger than the NATS server's max_payload and was not published: {why}",
        entry.meta.event_name(),
        entry.meta.seq,
        entry.body.len()
    );
    tracing::error!(
        seq = entry.meta.seq,
        size = entry.body.len(),
        event = entry.meta.event_name(),
        "{message}"
    );
    let mut ev = StatusEvent::new(ShardState::Error, shard.pair(), message.clone());
    ev.session_id = Some(entry.meta.session_id.to_string());
    ev.reason = Some("event_too_large".into());
    ev.message = Some(message);
    ev.fatal = Some(false);
    ev.lost = Some(discord_bridge_schemas::status::SeqRange {
        from: entry.meta.seq,
        to: entry.meta.seq,
    });
    sink.status(ev);
}

/// Waits `wait`, and then for the connection to be up again; `false` when
/// the drain deadline passed first.
async fn wait_for_nats(
    client: &async_nats::Client,
    wait: Duration,
    drain_until: Option<Instant>,
) -> bool {
    let deadline =
        drain_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
    let until = Instant::now() + wait;
    if until >= deadline {
        return false;
    }
    tokio::time::sleep_until(until).await;
    while client.connection_state() != async_nats::connection::State::Connected {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}
