//! The NATS connection and the JetStream stream (DESIGN §5.5).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use tokio_util::sync::CancellationToken;

use crate::config::NatsConfig;
use crate::error::RunError;
use crate::gateway::backoff::Backoff;

/// Connects, retrying with backoff while the server is unreachable.
///
/// # Errors
/// Credentials or TLS the server refuses ([`RunError::Setup`], naming the
/// settings), or cancellation.
pub async fn connect(
    cfg: &NatsConfig,
    name: &str,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, RunError> {
    let addrs = cfg
        .urls
        .iter()
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|e| {
                RunError::Setup(format!(
                    "nats.url (NATS_URL): {} is not a server address: {e}",
                    redact(u)
                ))
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
                    return Err(RunError::Setup(format!(
                        "NATS at {shown:?} refused the credentials: check nats.creds_file / \
                         nats.nkey_seed / nats.token / nats.user + nats.password (NATS_CREDS, \
                         NATS_NKEY_SEED, NATS_TOKEN, NATS_USER, NATS_PASSWORD)"
                    )));
                }
                ConnectErrorKind::Tls => {
                    return Err(RunError::Setup(format!(
                        "TLS to NATS at {shown:?} failed ({e}): check nats.tls_ca / nats.tls_cert / \
                         nats.tls_key (NATS_CA, NATS_CERT, NATS_KEY) and the URL scheme"
                    )));
                }
                _ => {
                    let wait = backoff.next_delay(fastrand::f64());
                    tracing::warn!(servers = ?shown, error = %e, retry_ms = wait.as_millis(), "waiting for NATS");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(RunError::Runtime("cancelled while waiting for NATS".into())),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            },
        }
    }
}

async fn options(cfg: &NatsConfig, name: &str) -> Result<ConnectOptions, RunError> {
    let mut o = match &cfg.creds_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| {
                RunError::Setup(format!(
                    "nats.creds_file (NATS_CREDS): cannot use {}: {e}",
                    path.display()
                ))
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
pub fn redact(url: &str) -> String {
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
/// agent subject, or another stream already owning that subject
/// ([`RunError::Setup`]).
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &NatsConfig,
    subject: &str,
) -> Result<(), RunError> {
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
                Err(not_enabled())
            }
            jetstream::context::GetStreamErrorKind::Request if no_responders(&e) => {
                Err(not_enabled())
            }
            _ => Err(RunError::Runtime(format!(
                "cannot read JetStream stream {}: {e}",
                cfg.stream
            ))),
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

fn not_enabled() -> RunError {
    RunError::Setup(
        "JetStream is not enabled on the NATS server: start nats-server with -js (or a \
         `jetstream {}` block in its configuration), or set nats.publish = \"core\" \
         (BRIDGE_PUBLISH_MODE=core) to publish without durability"
            .into(),
    )
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
        ..Default::default()
    }
}

async fn create(
    js: &jetstream::Context,
    wanted: stream::Config,
    subject: &str,
) -> Result<(), RunError> {
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
                Err(RunError::Setup(format!(
                    "another JetStream stream already captures {subject}: set nats.stream \
                     (BRIDGE_STREAM) to that stream's name, or remove the overlap"
                )))
            }
            jetstream::context::CreateStreamErrorKind::JetStreamUnavailable => Err(not_enabled()),
            jetstream::context::CreateStreamErrorKind::JetStream(err)
                if is_not_enabled(err.error_code()) =>
            {
                Err(not_enabled())
            }
            _ => Err(RunError::Runtime(format!(
                "cannot create JetStream stream {name}: {e}"
            ))),
        },
    }
}

fn check_existing(
    have: &stream::Config,
    wanted: &stream::Config,
    subject: &str,
) -> Result<(), RunError> {
    if !have
        .subjects
        .iter()
        .any(|pattern| subject_matches(pattern, subject))
    {
        return Err(RunError::Setup(format!(
            "JetStream stream {} exists but does not capture {subject} (its subjects: {:?}): add \
             the subject to it, or set nats.stream (BRIDGE_STREAM) to another stream name",
            have.name, have.subjects
        )));
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
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
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
