//! Finding the stream and creating, checking or resetting the durable
//! consumer. Everything here is request/response; the message loop lives in
//! `consumer.rs`.

use std::time::Duration;

use async_nats::jetstream::consumer::{
    self, AckPolicy, DeliverPolicy, FromConsumer, PullConsumer, pull,
};
use async_nats::jetstream::context::{
    GetStreamError, GetStreamErrorKind, RequestError, RequestErrorKind,
};
use async_nats::jetstream::{self, ErrorCode, stream::Stream};
use tokio_util::sync::CancellationToken;

use crate::config::AdapterConfig;
use crate::error::AdapterError;

/// Delay between retries while the stream is missing or NATS is away.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// Sleeps for the current delay and doubles it; `false` when cancelled.
    pub(crate) async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// Waits until the stream exists. The bridge creates it; an adapter started
/// first waits for it instead of creating a stream with other settings.
///
/// `first` is the adapter's start: a server without JetStream is then an
/// error to report, while later (after an outage) "no responders" only means
/// JetStream is not back yet.
///
/// Returns `None` when cancelled.
pub(crate) async fn open_stream(
    js: &jetstream::Context,
    cfg: &AdapterConfig,
    first: bool,
    cancel: &CancellationToken,
) -> Result<Option<Stream>, AdapterError> {
    let mut backoff = Backoff::new();
    let mut announced = false;
    loop {
        match js.get_stream(&cfg.stream).await {
            Ok(stream) => {
                check_subjects(&stream, cfg)?;
                return Ok(Some(stream));
            }
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(err)
                    if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    if !announced {
                        announced = true;
                        tracing::warn!(stream = %cfg.stream, "JetStream stream does not exist yet; waiting for the bridge to create it");
                    }
                }
                GetStreamErrorKind::JetStream(err) if first && not_enabled(err.error_code()) => {
                    return Err(AdapterError::JetStreamNotEnabled);
                }
                GetStreamErrorKind::Request if first && no_responders(&e) => {
                    return Err(AdapterError::JetStreamNotEnabled);
                }
                GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => {
                    return Err(AdapterError::stream(
                        &cfg.stream,
                        "is not a valid stream name",
                        Some(Box::new(e)),
                    ));
                }
                _ => {
                    tracing::warn!(stream = %cfg.stream, error = %e, "cannot read the JetStream stream; retrying")
                }
            },
        }
        if !backoff.wait(cancel).await {
            return Ok(None);
        }
    }
}

/// Whether a request found nobody serving the JetStream API: a server
/// without JetStream (or one still starting).
pub(crate) fn no_responders(e: &GetStreamError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<RequestError>())
        .is_some_and(|r| r.kind() == RequestErrorKind::NoResponders)
}

pub(crate) fn not_enabled(code: ErrorCode) -> bool {
    code == ErrorCode::JETSTREAM_NOT_ENABLED || code == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
}

/// A stream that cannot hold the subject would leave the consumer empty
/// forever: say so instead.
fn check_subjects(stream: &Stream, cfg: &AdapterConfig) -> Result<(), AdapterError> {
    let subject = cfg.subject();
    let subjects = &stream.cached_info().config.subjects;
    // A mirror or sourced stream lists no subjects of its own.
    if subjects.is_empty() || subjects.iter().any(|p| overlaps(p, &subject)) {
        Ok(())
    } else {
        Err(AdapterError::stream(
            &cfg.stream,
            format!(
                "does not capture {subject} (its subjects: {subjects:?}): set AdapterConfig::stream \
                 to the bridge's stream (BRIDGE_STREAM) or fix filter_subject"
            ),
            None,
        ))
    }
}

/// Whether some subject matches both NATS patterns (`*` one token, `>` the rest).
fn overlaps(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Gets the durable consumer, creating it when missing and bringing its
/// tunable limits (`max_ack_pending`, `ack_wait`) to the configuration.
///
/// An operator may pre-create the durable (e.g. with `DeliverPolicy::New`);
/// it is used as it is, provided it is a pull consumer with explicit acks on
/// the right subject. `resume_after` is where a re-created consumer starts
/// (after the last event this process delivered); a first creation starts at
/// the beginning of the stream.
pub(crate) async fn ensure_consumer(
    stream: &Stream,
    cfg: &AdapterConfig,
    resume_after: Option<u64>,
) -> Result<PullConsumer, AdapterError> {
    let err = |message: String, source: Option<crate::error::BoxError>| AdapterError::Consumer {
        stream: cfg.stream.clone(),
        consumer: cfg.durable_name.clone(),
        message,
        source,
    };
    let max_ack_pending = i64::try_from(cfg.max_ack_pending).unwrap_or(i64::MAX);
    match stream.consumer_info(&cfg.durable_name).await {
        Ok(info) => {
            let mut config = info.config;
            check_existing(&config, cfg).map_err(|m| err(m, None))?;
            if config.max_ack_pending != max_ack_pending || config.ack_wait != cfg.ack_wait {
                tracing::info!(consumer = %cfg.durable_name, max_ack_pending, ack_wait = ?cfg.ack_wait, "updating the durable consumer's limits");
                config.max_ack_pending = max_ack_pending;
                config.ack_wait = cfg.ack_wait;
                let config = pull::Config::try_from_consumer_config(config)
                    .map_err(|e| err("cannot read its configuration".into(), Some(e)))?;
                stream
                    .update_consumer(config)
                    .await
                    .map_err(|e| err("cannot update its limits".into(), Some(Box::new(e))))
            } else {
                stream
                    .get_consumer(&cfg.durable_name)
                    .await
                    .map_err(|e| err("cannot open it".into(), Some(e)))
            }
        }
        Err(e) if e.kind() == consumer_not_found() => {
            let deliver_policy = match resume_after {
                Some(seq) => DeliverPolicy::ByStartSequence {
                    start_sequence: seq.saturating_add(1),
                },
                None => DeliverPolicy::All,
            };
            tracing::info!(consumer = %cfg.durable_name, stream = %cfg.stream, deliver_policy = ?deliver_policy, "creating the durable consumer");
            stream
                .create_consumer(pull::Config {
                    durable_name: Some(cfg.durable_name.clone()),
                    description: Some(
                        "astrid-discord-adapter: relays agent events to the Astrid EventBus".into(),
                    ),
                    filter_subject: cfg.subject(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: cfg.ack_wait,
                    max_ack_pending,
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| err("cannot create it".into(), Some(Box::new(e))))
        }
        Err(e) => Err(err("cannot read it".into(), Some(Box::new(e)))),
    }
}

fn consumer_not_found() -> async_nats::jetstream::context::ConsumerInfoErrorKind {
    async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound
}

fn check_existing(have: &consumer::Config, cfg: &AdapterConfig) -> Result<(), String> {
    if have.deliver_subject.is_some() {
        return Err("is a push consumer; delete it or choose another durable_name".into());
    }
    if have.ack_policy != AckPolicy::Explicit {
        return Err(format!(
            "acks with {:?}, not Explicit; delete it or choose another durable_name",
            have.ack_policy
        ));
    }
    let subject = cfg.subject();
    let filters: Vec<&String> = std::iter::once(&have.filter_subject)
        .filter(|f| !f.is_empty())
        .chain(have.filter_subjects.iter())
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| **f == subject) {
        return Err(format!(
            "filters {filters:?}, not {subject}; delete it or choose another durable_name"
        ));
    }
    Ok(())
}

/// Sends back to the ack floor a durable left with unacked messages by a
/// previous instance that did not shut down cleanly, so they are delivered
/// again now and in order, instead of after `ack_wait` behind newer ones.
/// Needs nats-server 2.14 (ADR-60); on older servers the messages come back
/// after `ack_wait`.
pub(crate) async fn reset_orphans(
    stream: &Stream,
    consumer: &mut PullConsumer,
    cfg: &AdapterConfig,
) {
    let pending = match consumer.info().await {
        Ok(info) => info.num_ack_pending,
        Err(e) => {
            tracing::warn!(consumer = %cfg.durable_name, error = %e, "cannot read the durable consumer's state");
            return;
        }
    };
    if pending == 0 {
        return;
    }
    match tokio::time::timeout(
        Duration::from_secs(5),
        stream.reset_consumer(&cfg.durable_name, None),
    )
    .await
    {
        Ok(Ok(reply)) => {
            tracing::info!(consumer = %cfg.durable_name, orphaned = pending, ack_floor = reply.reset_seq, "rewound the durable consumer to its ack floor: events a previous instance held are delivered again, in order")
        }
        Ok(Err(e)) => {
            tracing::warn!(consumer = %cfg.durable_name, orphaned = pending, error = %e, "cannot rewind the durable consumer (needs nats-server 2.14); events a previous instance held come back after ack_wait")
        }
        Err(_) => {
            tracing::warn!(consumer = %cfg.durable_name, orphaned = pending, "rewinding the durable consumer timed out; events a previous instance held come back after ack_wait")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_overlap() {
        let s = "astrid-discord.agent.events";
        assert!(overlaps(s, s));
        assert!(overlaps("astrid-discord.>", s));
        assert!(overlaps("*.agent.*", s));
        assert!(overlaps(s, "astrid-discord.*.events"));
        assert!(!overlaps("astrid-discord.gateway.status", s));
        assert!(!overlaps("astrid-discord.agent", s));
    }

    #[test]
    fn existing_consumers_must_be_pull_explicit_on_the_subject() {
        let cfg = AdapterConfig::default();
        let good = consumer::Config {
            durable_name: Some(cfg.durable_name.clone()),
            filter_subject: cfg.subject(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        };
        assert!(check_existing(&good, &cfg).is_ok());
        let push = consumer::Config {
            deliver_subject: Some("x".into()),
            ..good.clone()
        };
        assert!(check_existing(&push, &cfg).unwrap_err().contains("push"));
        let none = consumer::Config {
            ack_policy: AckPolicy::None,
            ..good.clone()
        };
        assert!(
            check_existing(&none, &cfg)
                .unwrap_err()
                .contains("Explicit")
        );
        let other = consumer::Config {
            filter_subject: "x.agent.events".into(),
            ..good
        };
        assert!(
            check_existing(&other, &cfg)
                .unwrap_err()
                .contains("filters")
        );
    }
}
