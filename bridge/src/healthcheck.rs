//! `discord-bridge healthcheck`: asks a running bridge's `/readyz` and says
//! whether it is ready, for probes that can only run a command (docker
//! compose `healthcheck`, a Kubernetes `exec` probe): the distroless image
//! has no shell and no curl.
//!
//! The URL is the process's own endpoint from the same configuration
//! (`http.listen`, with a wildcard address asked on loopback), or `--url`.
//! Exit codes: 0 ready, 1 not ready or no answer (the reason is printed),
//! 2 nothing to ask (`http.listen` unset and no `--url`, or a bad URL).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long the whole request may take: probes run often and must not
/// pile up behind a bridge that does not answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the check did not say "ready".
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// Neither `http.listen` nor `--url`: nothing to ask (exit code 2).
    #[error(
        "http.listen (BRIDGE_HTTP_LISTEN) is not set, so the bridge serves no /readyz: set it \
         as the bridge runs with it (e.g. 0.0.0.0:9090), or pass --url http://HOST:PORT/readyz"
    )]
    NoEndpoint,
    /// `http.listen` has port 0: the port is only known from the bridge's
    /// log (exit code 2).
    #[error(
        "http.listen (BRIDGE_HTTP_LISTEN) is {0} (port 0: the system chose the port, which \
         the bridge logged at start-up): pass --url http://HOST:PORT/readyz"
    )]
    AnyPort(SocketAddr),
    /// `--url` is not an http(s) URL (exit code 2).
    #[error(
        "--url {url:?} is not an http:// or https:// URL ({reason}); use e.g. http://127.0.0.1:9090/readyz"
    )]
    BadUrl {
        /// What was given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The bridge answered that it is not ready (exit code 1).
    #[error("not ready ({status}): {reason}")]
    NotReady {
        /// The HTTP status.
        status: u16,
        /// The bridge's one-line reason.
        reason: String,
    },
    /// No answer (exit code 1).
    #[error("no answer from {url}: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why there is no answer.
        reason: String,
    },
}

impl HealthcheckError {
    /// 2 when there is nothing valid to ask, 1 when the bridge is not ready
    /// or does not answer.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::NoEndpoint | Self::AnyPort(_) | Self::BadUrl { .. } => 2,
            Self::NotReady { .. } | Self::Unreachable { .. } => 1,
        }
    }
}

/// The URL to ask: `--url` (with `/readyz` added when it has no path), or
/// `http://{http.listen}/readyz` with a wildcard address replaced by
/// loopback.
///
/// # Errors
/// Nothing to ask, port 0, or a `--url` that does not parse.
pub fn readiness_url(
    listen: Option<SocketAddr>,
    url: Option<&str>,
) -> Result<String, HealthcheckError> {
    if let Some(given) = url {
        let bad = |reason: String| HealthcheckError::BadUrl {
            url: given.to_owned(),
            reason,
        };
        let mut parsed = reqwest::Url::parse(given).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(format!("scheme {}", parsed.scheme())));
        }
        if parsed.path().is_empty() || parsed.path() == "/" {
            parsed.set_path("/readyz");
        }
        return Ok(parsed.to_string());
    }
    let addr = listen.ok_or(HealthcheckError::NoEndpoint)?;
    if addr.port() == 0 {
        return Err(HealthcheckError::AnyPort(addr));
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!(
        "http://{}/readyz",
        SocketAddr::new(ip, addr.port())
    ))
}

/// Asks `url`; the bridge's one-line answer when it is ready (200).
///
/// # Errors
/// Any other status (with the bridge's reason), or no answer within
/// [`TIMEOUT`].
pub async fn check(url: &str) -> Result<String, HealthcheckError> {
    let unreachable = |reason: String| HealthcheckError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| unreachable(root_cause(&e)))?;
    let response = client.get(url).send().await.map_err(|e| {
        unreachable(if e.is_timeout() {
            format!("no answer within {} s", TIMEOUT.as_secs())
        } else {
            root_cause(&e)
        })
    })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| unreachable(root_cause(&e)))?;
    let text = one_line(&body);
    if status.is_success() {
        Ok(text)
    } else {
        Err(HealthcheckError::NotReady {
            status: status.as_u16(),
            reason: text,
        })
    }
}

/// The innermost error's message ("Connection refused (os error 111)"),
/// which says more than reqwest's "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The first line of an answer, bounded: probes log what they print.
fn one_line(body: &str) -> String {
    let line = body.lines().next().unwrap_or_default().trim();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_comes_from_http_listen_or_url() {
        let listen = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            readiness_url(listen("0.0.0.0:9090"), None).unwrap(),
            "http://127.0.0.1:9090/readyz"
        );
        assert_eq!(
            readiness_url(listen("[::]:9090"), None).unwrap(),
            "http://[::1]:9090/readyz"
        );
        assert_eq!(
            readiness_url(listen("10.1.2.3:80"), None).unwrap(),
            "http://10.1.2.3:80/readyz"
        );
        assert_eq!(
            readiness_url(listen("0.0.0.0:9090"), Some("http://bridge:9091")).unwrap(),
            "http://bridge:9091/readyz",
            "--url wins, and gets /readyz when it has no path"
        );
        assert_eq!(
            readiness_url(None, Some("http://h:1/healthz")).unwrap(),
            "http://h:1/healthz"
        );
    }

    #[test]
    fn nothing_to_ask_is_exit_code_2() {
        let e = readiness_url(None, None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("BRIDGE_HTTP_LISTEN"), "{e}");
        let e = readiness_url(Some("127.0.0.1:0".parse().unwrap()), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--url"), "{e}");
        for bad in ["localhost:9090", "ftp://h/readyz", "not a url"] {
            let e = readiness_url(None, Some(bad)).unwrap_err();
            assert!(matches!(e, HealthcheckError::BadUrl { .. }), "{bad}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn answers_are_cut_to_one_line() {
        assert_eq!(one_line("shard 0: backoff\nmore"), "shard 0: backoff");
        assert_eq!(one_line(&"x".repeat(1000)).len(), 300);
        let e = HealthcheckError::NotReady {
            status: 503,
            reason: "nats: disconnected".into(),
        };
        assert_eq!(e.to_string(), "not ready (503): nats: disconnected");
        assert_eq!(e.exit_code(), 1);
    }
}
