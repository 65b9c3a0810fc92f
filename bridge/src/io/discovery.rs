//! `GET /gateway/bot`: where to connect, how many shards Discord recommends,
//! and the session start limit.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, USER_AGENT};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::identify::SessionStartLimit;
use crate::gateway::backoff::Backoff;
use crate::gateway::shard::MAX_SHARDS;
use crate::secret::Secret;
use crate::tls::{DiscordTls, is_certificate_problem, rustls_error};

/// `GET /gateway/bot` failed in a way retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Discord rejected the token (exit code 1, like close code 4004).
    #[error(
        "Discord answered {status} to GET /gateway/bot: the bot token was rejected; set \
         DISCORD_BOT_TOKEN (discord.token) to the token from Developer Portal > your \
         application > Bot"
    )]
    TokenRejected {
        /// 401 or 403.
        status: StatusCode,
    },
    /// The token cannot be sent in an HTTP header.
    #[error(
        "discord.token (DISCORD_BOT_TOKEN) contains characters that cannot be sent in a header"
    )]
    TokenNotSendable,
    /// The route does not exist: `discord.api_base` is wrong.
    #[error(
        "{url} does not exist (404): check discord.api_base (DISCORD_API_BASE), e.g. \
         https://discord.com/api/v10"
    )]
    NotFound {
        /// The URL asked.
        url: String,
    },
    /// The answer is not Discord's.
    #[error(
        "{url} answered with an unexpected body ({source}); check discord.api_base \
         (DISCORD_API_BASE)"
    )]
    BadBody {
        /// The URL asked.
        url: String,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The gateway URL Discord returned is refused.
    #[error(
        "GET /gateway/bot returned an unusable gateway URL: {reason} (set \
         discord.allow_insecure_gateway only for the simulator)"
    )]
    UnusableGatewayUrl {
        /// Why it is refused.
        reason: String,
    },
    /// The REST API's certificate is refused: every attempt would fail the
    /// same way until the trusted roots change.
    #[error(
        "{url}: the TLS certificate is refused ({problem}); check discord.api_base \
         (DISCORD_API_BASE), and if a proxy or the simulator serves it with its own CA, set \
         discord.tls_ca (DISCORD_TLS_CA) to that CA's PEM file{}",
        if *.extra_ca { " (the one set does not sign this certificate)" } else { "" }
    )]
    Tls {
        /// The URL asked.
        url: String,
        /// What rustls says.
        problem: String,
        /// Whether `discord.tls_ca` was set.
        extra_ca: bool,
    },
    /// The HTTP client cannot be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Shutdown was requested first.
    #[error("cancelled while asking Discord for the gateway")]
    Cancelled,
}

impl DiscoveryError {
    /// 2 when a setting fixes it, 1 otherwise.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::TokenNotSendable
            | Self::NotFound { .. }
            | Self::Tls { .. }
            | Self::BadBody { .. }
            | Self::UnusableGatewayUrl { .. } => 2,
            Self::TokenRejected { .. } | Self::Client(_) | Self::Cancelled => 1,
        }
    }
}

/// The largest body read from `GET /gateway/bot`; Discord's is about 150
/// bytes.
const MAX_BODY: usize = 64 * 1024;

/// The longest `reset_after` believed: Discord's session start budget
/// resets daily.
const MAX_RESET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What `GET /gateway/bot` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GatewayInfo {
    /// The gateway URL for new sessions.
    pub url: String,
    /// Recommended shard count.
    pub shards: u32,
    /// Identify budget and concurrency.
    pub limit: SessionStartLimit,
}

#[derive(Deserialize)]
struct Body {
    url: String,
    shards: u32,
    session_start_limit: LimitBody,
}

#[derive(Deserialize)]
struct LimitBody {
    total: u32,
    remaining: u32,
    reset_after: u64,
    max_concurrency: u32,
}

#[derive(Deserialize)]
struct RateLimited {
    retry_after: f64,
}

/// One failed attempt.
#[derive(Debug)]
enum Failure {
    /// Retrying cannot help.
    Fatal(DiscoveryError),
    /// Try again after this long (or after the backoff when `None`).
    Retry(String, Option<Duration>),
}

/// Asks Discord until it answers, a permanent error occurs, or `cancel`.
///
/// # Errors
/// A rejected token, a wrong `discord.api_base`, or cancellation; see
/// [`DiscoveryError`].
pub(crate) async fn discover(
    api_base: &str,
    token: &Secret,
    tls: &DiscordTls,
    cancel: &CancellationToken,
) -> Result<GatewayInfo, DiscoveryError> {
    // The gateway connections trust the same roots (one configuration).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .use_preconfigured_tls((*tls.client_config()).clone())
        .build()
        .map_err(DiscoveryError::Client)?;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let wait = match fetch(&http, api_base, token, tls.extra_ca).await {
            Ok(info) => return Ok(info),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(why, after)) => {
                let wait = after.unwrap_or_else(|| backoff.next_delay(fastrand::f64()));
                tracing::warn!(
                    wait_ms = wait.as_millis(),
                    "GET /gateway/bot failed, retrying: {why}"
                );
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return Err(DiscoveryError::Cancelled),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn fetch(
    http: &reqwest::Client,
    api_base: &str,
    token: &Secret,
    extra_ca: bool,
) -> Result<GatewayInfo, Failure> {
    let url = format!("{}/gateway/bot", api_base.trim_end_matches('/'));
    let mut auth = HeaderValue::from_str(&format!("Bot {}", token.expose()))
        .map_err(|_| Failure::Fatal(DiscoveryError::TokenNotSendable))?;
    auth.set_sensitive(true);
    let response = http
        .get(&url)
        .header(AUTHORIZATION, auth)
        .header(
            USER_AGENT,
            concat!(
                "DiscordBot (https://github.com/astrid-runtime/discord-bridge, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ),
        )
        .send()
        .await
        .map_err(
            |e| match rustls_error(&e).filter(|t| is_certificate_problem(t)) {
                Some(problem) => Failure::Fatal(DiscoveryError::Tls {
                    url: url.clone(),
                    problem: problem.to_string(),
                    extra_ca,
                }),
                None => Failure::Retry(format!("{url}: {}", without_url(&e)), None),
            },
        )?;
    let status = response.status();
    let Some(body) = read_body(response)
        .await
        .map_err(|e| Failure::Retry(format!("{url}: {}", without_url(&e)), None))?
    else {
        return Err(if status == StatusCode::OK {
            Failure::Fatal(DiscoveryError::BadBody {
                url,
                source: serde::de::Error::custom(format!(
                    "a body larger than {} KiB",
                    MAX_BODY / 1024
                )),
            })
        } else {
            Failure::Retry(format!("HTTP {status} with an oversized body"), None)
        });
    };
    match status {
        StatusCode::OK => {
            parse(&body).map_err(|source| Failure::Fatal(DiscoveryError::BadBody { url, source }))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(Failure::Fatal(DiscoveryError::TokenRejected { status }))
        }
        StatusCode::NOT_FOUND => Err(Failure::Fatal(DiscoveryError::NotFound { url })),
        StatusCode::TOO_MANY_REQUESTS => {
            let after = serde_json::from_slice::<RateLimited>(&body)
                .ok()
                .map(|r| Duration::from_secs_f64(r.retry_after.clamp(0.0, 3600.0)));
            Err(Failure::Retry("rate limited (429)".into(), after))
        }
        other => Err(Failure::Retry(format!("HTTP {other}"), None)),
    }
}

/// The body, or `None` past [`MAX_BODY`] (read no further).
async fn read_body(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn parse(body: &[u8]) -> Result<GatewayInfo, serde_json::Error> {
    let b: Body = serde_json::from_slice(body)?;
    if b.shards > MAX_SHARDS {
        return Err(serde::de::Error::custom(format!(
            "{} recommended shards, more than the {MAX_SHARDS} the bridge runs",
            b.shards
        )));
    }
    Ok(GatewayInfo {
        url: b.url,
        shards: b.shards.max(1),
        limit: SessionStartLimit {
            total: b.session_start_limit.total,
            remaining: b.session_start_limit.remaining,
            reset_after: Duration::from_millis(b.session_start_limit.reset_after)
                .min(MAX_RESET_AFTER),
            max_concurrency: b.session_start_limit.max_concurrency.max(1),
        },
    })
}

/// reqwest errors print the URL; ours carries no secret, but keep messages
/// short and uniform.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_discords_documented_example() {
        let body = br#"{"url":"wss://gateway.discord.gg","shards":9,"session_start_limit":{"total":1000,"remaining":999,"reset_after":14400000,"max_concurrency":1}}"#;
        let info = parse(body).unwrap();
        assert_eq!(info.url, "wss://gateway.discord.gg");
        assert_eq!(info.shards, 9);
        assert_eq!(info.limit.remaining, 999);
        assert_eq!(info.limit.reset_after, Duration::from_secs(14_400));
        assert!(parse(b"{}").is_err());
    }

    #[test]
    fn absurd_answers_are_capped_or_refused() {
        let body = |shards: u64, reset_after: u64| {
            format!(
                r#"{{"url":"wss://gateway.discord.gg","shards":{shards},"session_start_limit":{{"total":1000,"remaining":999,"reset_after":{reset_after},"max_concurrency":1}}}}"#
            )
        };
        let err = parse(body(u64::from(MAX_SHARDS) + 1, 1).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("recommended shards"), "{err}");
        assert!(parse(body(u64::from(MAX_SHARDS), 1).as_bytes()).is_ok());
        let info = parse(body(1, u64::MAX).as_bytes()).unwrap();
        assert_eq!(info.limit.reset_after, MAX_RESET_AFTER);
    }
}
