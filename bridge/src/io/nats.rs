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
    /// The server refused the credentials (or their absence).
    #[error("NATS at {servers} refused {what}: {reason}; {fix}")]
    Refused {
        /// The servers, credentials redacted.
        servers: String,
        /// Which credentials were sent, by setting name.
        what: &'static str,
        /// What the server said (never a credential).
        reason: String,
        /// What to change.
        fix: &'static str,
        /// What the client reported.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The TLS set-up or handshake failed in a way retrying cannot fix.
    #[error("TLS to NATS at {servers} failed: {problem}; {fix}")]
    Tls {
        /// The servers, credentials redacted.
        servers: String,
        /// What went wrong, as the TLS library says it.
        problem: String,
        /// What to change, naming the settings.
        fix: String,
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
/// Every failed attempt is classified ([`classify`]): credentials the server
/// refuses and TLS problems (an untrusted server certificate, a client
/// certificate the server wants or refuses) repeat identically on every
/// attempt, so they end the process naming the setting; anything else (no
/// listener, a DNS failure, a listener speaking another protocol, a timeout)
/// may be a server still starting, and is logged with the URLs and retried.
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
    let servers = shown.join(", ");
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        let options = options(cfg, name).await?;
        let error = match async_nats::connect_with_options(addrs.clone(), options).await {
            Ok(client) => {
                tracing::info!(servers = %servers, "connected to NATS");
                return Ok(client);
            }
            Err(e) => e,
        };
        match classify(&error) {
            Failure::Refused { reason } => {
                let (what, fix) = credentials(cfg);
                return Err(NatsError::Refused {
                    servers,
                    what,
                    reason,
                    fix,
                    source: error,
                });
            }
            Failure::Tls { problem, fix } => {
                return Err(NatsError::Tls {
                    servers,
                    problem,
                    fix,
                    source: error,
                });
            }
            Failure::Retry => {
                let wait = backoff.next_delay(fastrand::f64());
                tracing::warn!(
                    servers = %servers,
                    error = %error,
                    retry_ms = wait.as_millis(),
                    "cannot reach NATS; retrying (check nats.url / NATS_URL if this goes on)"
                );
                tokio::select! {
                    () = cancel.cancelled() => return Err(NatsError::Cancelled),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// What one failed connection attempt means.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The server refused the credentials; `reason` is its word for it.
    Refused { reason: String },
    /// TLS cannot work with these settings.
    Tls { problem: String, fix: String },
    /// Perhaps the server is not up yet: try again.
    Retry,
}

/// Sorts a connection error: the client's own kinds first, then what is in
/// its source chain (tokio-rustls reports handshake failures, and the server
/// its `-ERR` lines, as IO errors).
fn classify(error: &async_nats::ConnectError) -> Failure {
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation => {
            return Failure::Refused {
                reason: "authorization violation".to_owned(),
            };
        }
        // Signing the server's nonce failed: the seed itself is unusable.
        ConnectErrorKind::Authentication => {
            return Failure::Refused {
                reason: "its nkey seed cannot sign the server's challenge".to_owned(),
            };
        }
        _ => {}
    }
    if let Some(tls) = crate::tls::rustls_error(error) {
        return Failure::Tls {
            problem: tls.to_string(),
            fix: tls_fix(tls),
        };
    }
    if error.kind() == ConnectErrorKind::Tls {
        // The TLS configuration itself (a CA, certificate or key file the
        // client cannot load), before any handshake.
        return Failure::Tls {
            problem: source_text(error),
            fix: "check the files of nats.tls_ca / nats.tls_cert / nats.tls_key (NATS_CA, \
                  NATS_CERT, NATS_KEY)"
                .to_owned(),
        };
    }
    if let Some(reason) = server_refusal(error) {
        return Failure::Refused { reason };
    }
    Failure::Retry
}

/// A `-ERR` the server sends when it refuses who we are: an authorization
/// violation, or an expired or revoked user or account (JWT).
fn server_refusal(error: &async_nats::ConnectError) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(server) = e.downcast_ref::<async_nats::ServerError>() {
            let text = match server {
                async_nats::ServerError::AuthorizationViolation => {
                    return Some("authorization violation".to_owned());
                }
                async_nats::ServerError::Other(text) => text.to_ascii_lowercase(),
                async_nats::ServerError::SlowConsumer(_) => return None,
            };
            let refused = (text.contains("authorization") || text.contains("authentication"))
                && !text.contains("timeout");
            return refused.then_some(text);
        }
        next = e.source();
    }
    None
}

/// What to change for a TLS failure, by who refused what.
fn tls_fix(error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            "the server's certificate does not name the host of nats.url (NATS_URL): connect by a \
             name the certificate holds"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired: renew it".to_owned()
        }
        rustls::Error::InvalidCertificate(_) => {
            "the server's certificate is not signed by a trusted CA: set nats.tls_ca (NATS_CA) to \
             the PEM file of the CA that signed it"
                .to_owned()
        }
        rustls::Error::AlertReceived(_) if crate::tls::is_certificate_problem(error) => {
            "the server refused the client certificate, or wants one: set nats.tls_cert and \
             nats.tls_key (NATS_CERT, NATS_KEY) to a certificate and key its CA signed"
                .to_owned()
        }
        _ => "check that the URL scheme matches the server (tls:// and wss:// need a TLS \
              listener) and nats.tls_ca / nats.tls_cert / nats.tls_key (NATS_CA, NATS_CERT, \
              NATS_KEY)"
            .to_owned(),
    }
}

/// The innermost message of an error chain, where the client puts the cause.
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Which credentials the bridge sent, and what to change when they are
/// refused.
fn credentials(cfg: &NatsConfig) -> (&'static str, &'static str) {
    if cfg.creds_file.is_some() {
        (
            "the credentials file nats.creds_file (NATS_CREDS)",
            "check that the user JWT in it is signed by an account the server trusts, has not \
             expired and goes with the seed beside it",
        )
    } else if cfg.nkey_seed.is_some() {
        (
            "the nkey of nats.nkey_seed (NATS_NKEY_SEED)",
            "check that the server lists this seed's public key (U...) as a user",
        )
    } else if cfg.token.is_some() {
        (
            "the token nats.token (NATS_TOKEN)",
            "set it to the server's authorization token",
        )
    } else if cfg.user.is_some() {
        (
            "the user and password nats.user / nats.password (NATS_USER, NATS_PASSWORD)",
            "check both against the server's authorization users",
        )
    } else {
        (
            "a connection without credentials",
            "the server requires them: set one of nats.creds_file, nats.nkey_seed, nats.token \
             or nats.user + nats.password (NATS_CREDS, NATS_NKEY_SEED, NATS_TOKEN, NATS_USER + \
             NATS_PASSWORD)",
        )
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

    fn io(inner: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> async_nats::ConnectError {
        async_nats::ConnectError::with_source(
            ConnectErrorKind::Io,
            std::io::Error::new(std::io::ErrorKind::InvalidData, inner),
        )
    }

    #[test]
    fn each_connect_failure_is_refused_tls_or_retried() {
        use rustls::{AlertDescription, CertificateError};
        let refused = |reason: &str| Failure::Refused {
            reason: reason.to_owned(),
        };
        let violation = async_nats::ConnectError::with_source(
            ConnectErrorKind::AuthorizationViolation,
            async_nats::ServerError::AuthorizationViolation,
        );
        assert_eq!(classify(&violation), refused("authorization violation"));
        let expired = async_nats::ConnectError::with_source(
            ConnectErrorKind::Io,
            async_nats::ServerError::Other("User Authentication Expired".into()),
        );
        assert_eq!(classify(&expired), refused("user authentication expired"));
        let timeout = async_nats::ConnectError::with_source(
            ConnectErrorKind::Io,
            async_nats::ServerError::Other("Authentication Timeout".into()),
        );
        assert_eq!(classify(&timeout), Failure::Retry);

        let untrusted = io(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let Failure::Tls { fix, .. } = classify(&untrusted) else {
            panic!("an untrusted certificate is a TLS failure");
        };
        assert!(fix.contains("nats.tls_ca"), "{fix}");
        let no_client_cert = io(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        let Failure::Tls { fix, .. } = classify(&no_client_cert) else {
            panic!("a missing client certificate is a TLS failure");
        };
        assert!(fix.contains("nats.tls_cert"), "{fix}");
        let files = async_nats::ConnectError::with_source(ConnectErrorKind::Tls, "bad key file");
        assert!(matches!(classify(&files), Failure::Tls { .. }));

        for retried in [
            async_nats::ConnectError::with_source(
                ConnectErrorKind::Io,
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ),
            async_nats::ConnectError::new(ConnectErrorKind::TimedOut),
            async_nats::ConnectError::with_source(ConnectErrorKind::Dns, "no such host"),
        ] {
            assert_eq!(classify(&retried), Failure::Retry, "{retried}");
        }
    }

    #[test]
    fn refusals_name_the_credentials_in_use() {
        let mut cfg = NatsConfig::default();
        assert!(credentials(&cfg).0.contains("without credentials"));
        cfg.token = Some(crate::secret::Secret::new("t".to_owned()));
        assert!(credentials(&cfg).0.contains("nats.token"));
        cfg.token = None;
        cfg.nkey_seed = Some(crate::secret::Secret::new("s".to_owned()));
        assert!(credentials(&cfg).0.contains("nats.nkey_seed"));
        cfg.creds_file = Some("user.creds".into());
        assert!(credentials(&cfg).0.contains("nats.creds_file"));
    }

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(
            redact("nats://u:p@host:4222"),
            "nats://<redacted>@host:4222"
        );
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact("tok@host"), "<redacted>@host");
        assert_eq!(
            redact("wss://u:p@host:443/path"),
            "wss://<redacted>@host:443/path"
        );
    }
}
