//! The NATS connection and the JetStream stream (the README's Delivery guarantees).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use tokio_util::sync::CancellationToken;

use crate::config::NatsConfig;
use crate::gateway::backoff::Backoff;

/// NATS cannot be used. Most variants name the setting that fixes them
/// (exit code 2); the others are runtime failures of the server (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// `nats.url` does not parse.
    #[error("nats.url (NATS_URL): {url} is not a server address: {source}")]
    BadUrl {
        /// The URL, credentials redacted.
        url: String,
        /// Why it does not parse.
        #[source]
        source: std::io::Error,
    },
    /// `nats.creds_file` cannot be read or parsed.
    #[error("nats.creds_file (NATS_CREDS): cannot use {}: {source}", path.display())]
    CredsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the credentials.
    #[error(
        "NATS at {servers} refused the credentials: check nats.creds_file / nats.nkey_seed / \
         nats.token / nats.user + nats.password (NATS_CREDS, NATS_NKEY_SEED, NATS_TOKEN, \
         NATS_USER, NATS_PASSWORD)"
    )]
    Refused {
        /// The servers, credentials redacted.
        servers: String,
        /// What the client reported.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The TLS handshake failed.
    #[error(
        "TLS to NATS at {servers} failed ({source}): check nats.tls_ca / nats.tls_cert / \
         nats.tls_key (NATS_CA, NATS_CERT, NATS_KEY) and the URL scheme"
    )]
    Tls {
        /// The servers, credentials redacted.
        servers: String,
        /// What the client reported.
        #[source]
        source: async_nats::ConnectError,
    },
    /// Shutdown was requested while waiting for the server.
    #[error("cancelled while waiting for NATS")]
    Cancelled,
    /// No server answered in time (a one-shot command, not the bridge,
    /// which keeps retrying).
    #[error(
        "no NATS server answers at {servers}: check nats.url (NATS_URL) and that the server runs"
    )]
    Unreachable {
        /// The servers, credentials redacted.
        servers: String,
    },
    /// The server has no JetStream.
    #[error(
        "JetStream is not enabled on the NATS server: start nats-server with -js (or a \
         `jetstream {{}}` block in its configuration), or set nats.publish = \"core\" \
         (BRIDGE_PUBLISH_MODE=core) to publish without durability"
    )]
    JetStreamDisabled,
    /// Another stream already captures the agent subject.
    #[error(
        "another JetStream stream already captures {subject}: set nats.stream (BRIDGE_STREAM) \
         to that stream's name, or remove the overlap"
    )]
    SubjectOverlap {
        /// The agent subject.
        subject: String,
    },
    /// The configured stream exists but does not capture the agent subject.
    #[error(
        "JetStream stream {stream} exists but does not capture {subject} (its subjects: \
         {subjects:?}): add the subject to it, or set nats.stream (BRIDGE_STREAM) to another \
         stream name"
    )]
    StreamMismatch {
        /// The stream.
        stream: String,
        /// The agent subject.
        subject: String,
        /// What the stream captures.
        subjects: Vec<String>,
    },
    /// The stream could not be read.
    #[error("cannot read JetStream stream {stream}: {source}")]
    ReadStream {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: jetstream::context::GetStreamError,
    },
    /// The stream could not be created.
    #[error("cannot create JetStream stream {stream}: {source}")]
    CreateStream {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: jetstream::context::CreateStreamError,
    },
}

impl NatsError {
    /// 2 when a setting fixes it, 1 otherwise.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::BadUrl { .. }
            | Self::CredsFile { .. }
            | Self::Refused { .. }
            | Self::Tls { .. }
            | Self::JetStreamDisabled
            | Self::SubjectOverlap { .. }
            | Self::StreamMismatch { .. } => 2,
            Self::Cancelled
            | Self::Unreachable { .. }
            | Self::ReadStream { .. }
            | Self::CreateStream { .. } => 1,
        }
    }
}

/// Connects, retrying with backoff while the server is unreachable.
///
/// # Errors
/// Credentials or TLS the server refuses (naming the settings), or
/// cancellation ([`NatsError::Cancelled`]).
pub(crate) async fn connect(
    cfg: &NatsConfig,
    name: &str,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, NatsError> {
    let addrs = cfg
        .urls
        .iter()
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|source| NatsError::BadUrl {
                url: redact(u),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shown: Vec<String> = cfg.urls.iter().map(|u| redact(u)).collect();
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        let options = options(cfg, name).await?;
        match async_nats::connect_with_options(addrs.clone(), options).await {
            Ok(client) => {
                tracing::info!(servers = ?shown, "connected to NATS");
                return Ok(client);
            }
            Err(e) => match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    return Err(NatsError::Refused {
                        servers: format!("{shown:?}"),
                        source: e,
                    });
                }
                ConnectErrorKind::Tls => {
                    return Err(NatsError::Tls {
                        servers: format!("{shown:?}"),
                        source: e,
                    });
                }
                _ => {
                    let wait = backoff.next_delay(fastrand::f64());
                    tracing::warn!(servers = ?shown, error = %e, retry_ms = wait.as_millis(), "waiting for NATS");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(NatsError::Cancelled),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            },
        }
    }
}

async fn options(cfg: &NatsConfig, name: &str) -> Result<ConnectOptions, NatsError> {
    let mut o = match &cfg.creds_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| NatsError::CredsFile {
                path: path.clone(),
                source,
            })?,
        None => ConnectOptions::new(),
    };
    if let Some(seed) = &cfg.nkey_seed {
        o = o.nkey(seed.expose().to_owned());
    }
    if let Some(token) = &cfg.token {
        o = o.token(token.expose().to_owned());
    }
    if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
        o = o.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(ca) = &cfg.tls_ca {
        o = o.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    if cfg.urls.iter().any(|u| u.starts_with("tls://")) {
        o = o.require_tls(true);
    }
    Ok(o.name(name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempt| {
            let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
            crate::gateway::backoff::full_jitter(
                Duration::from_millis(100),
                Duration::from_secs(5),
                attempt,
                fastrand::f64(),
            )
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connection (re)established"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS connection lost; buffering and reconnecting")
                }
                other => tracing::info!(event = %other, "NATS event"),
            }
        }))
}

/// A server URL for logs: user info (`user:password@`) removed.
#[must_use]
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://<redacted>@{host}"),
            None => url.to_owned(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("<redacted>@{host}"),
            None => url.to_owned(),
        },
    }
}

/// Creates the stream when missing; an existing stream is the operator's and
/// is left alone, with differences logged.
///
/// # Errors
/// JetStream disabled on the server, or a stream that does not capture the
/// agent subject, or another stream already owning that subject.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &NatsConfig,
    subject: &str,
) -> Result<(), NatsError> {
    let wanted = stream_config(cfg, subject);
    match js.get_stream(&cfg.stream).await {
        Ok(existing) => {
            let info = existing.cached_info();
            check_existing(&info.config, &wanted, subject)
        }
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(err)
                if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                create(js, wanted, subject).await
            }
            jetstream::context::GetStreamErrorKind::JetStream(err)
                if is_not_enabled(err.error_code()) =>
            {
                Err(NatsError::JetStreamDisabled)
            }
            jetstream::context::GetStreamErrorKind::Request if no_responders(&e) => {
                Err(NatsError::JetStreamDisabled)
            }
            _ => Err(NatsError::ReadStream {
                stream: cfg.stream.clone(),
                source: e,
            }),
        },
    }
}

/// Nobody serves the JetStream API: a server without JetStream. (The error's
/// text changed between async-nats versions; its source's kind did not.)
fn no_responders(e: &jetstream::context::GetStreamError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::context::RequestError>())
        .is_some_and(|r| r.kind() == jetstream::context::RequestErrorKind::NoResponders)
}

fn is_not_enabled(code: jetstream::ErrorCode) -> bool {
    code == jetstream::ErrorCode::JETSTREAM_NOT_ENABLED
        || code == jetstream::ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
}

fn stream_config(cfg: &NatsConfig, subject: &str) -> stream::Config {
    stream::Config {
        name: cfg.stream.clone(),
        description: Some("Discord agent events relayed by discord-bridge".into()),
        subjects: vec![subject.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: cfg.duplicate_window,
        max_age: cfg.stream_max_age.unwrap_or_default(),
        max_bytes: cfg
            .stream_max_bytes
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        allow_direct: true,
        num_replicas: cfg.stream_replicas,
        ..Default::default()
    }
}

async fn create(
    js: &jetstream::Context,
    wanted: stream::Config,
    subject: &str,
) -> Result<(), NatsError> {
    let name = wanted.name.clone();
    match js.create_stream(wanted).await {
        Ok(_) => {
            tracing::info!(stream = %name, subject, "created JetStream stream");
            Ok(())
        }
        Err(e) => match e.kind() {
            jetstream::context::CreateStreamErrorKind::JetStream(err)
                if err.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP =>
            {
                Err(NatsError::SubjectOverlap {
                    subject: subject.to_owned(),
                })
            }
            jetstream::context::CreateStreamErrorKind::JetStreamUnavailable => {
                Err(NatsError::JetStreamDisabled)
            }
            jetstream::context::CreateStreamErrorKind::JetStream(err)
                if is_not_enabled(err.error_code()) =>
            {
                Err(NatsError::JetStreamDisabled)
            }
            _ => Err(NatsError::CreateStream {
                stream: name,
                source: e,
            }),
        },
    }
}

fn check_existing(
    have: &stream::Config,
    wanted: &stream::Config,
    subject: &str,
) -> Result<(), NatsError> {
    if !have
        .subjects
        .iter()
        .any(|pattern| subject_matches(pattern, subject))
    {
        return Err(NatsError::StreamMismatch {
            stream: have.name.clone(),
            subject: subject.to_owned(),
            subjects: have.subjects.clone(),
        });
    }
    let mut differences = Vec::new();
    let mut compare = |name: &str, have: String, want: String| {
        if have != want {
            differences.push(format!("{name} {have} (the bridge would use {want})"));
        }
    };
    compare(
        "storage",
        format!("{:?}", have.storage),
        format!("{:?}", wanted.storage),
    );
    compare(
        "duplicate_window",
        format!("{:?}", have.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    compare(
        "max_age",
        format!("{:?}", have.max_age),
        format!("{:?}", wanted.max_age),
    );
    compare(
        "max_bytes",
        have.max_bytes.to_string(),
        wanted.max_bytes.to_string(),
    );
    if have.duplicate_window < Duration::from_secs(120) {
        tracing::warn!(
            stream = %have.name,
            window = ?have.duplicate_window,
            "the stream's duplicate window is under 2 minutes: RESUME replays may be stored twice"
        );
    }
    if differences.is_empty() {
        tracing::info!(stream = %have.name, "using existing JetStream stream");
    } else {
        tracing::warn!(
            stream = %have.name,
            differences = %differences.join("; "),
            "using the existing JetStream stream as the operator configured it; its settings differ from the bridge's"
        );
    }
    Ok(())
}

/// NATS subject matching: `*` is one token, `>` the rest.
#[must_use]
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        let s = "astrid-discord.agent.events";
        assert!(subject_matches(s, s));
        assert!(subject_matches("astrid-discord.>", s));
        assert!(subject_matches("*.agent.*", s));
        assert!(!subject_matches("astrid-discord.agent", s));
        assert!(!subject_matches("astrid-discord.agent.events.x", s));
        assert!(subject_matches(">", s));
    }

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(
            redact("nats://u:p@host:4222"),
            "nats://<redacted>@host:4222"
        );
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact("tok@host"), "<redacted>@host");
    }
}
