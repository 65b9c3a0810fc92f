//! Logging: `tracing` events to stderr, filtered by `RUST_LOG`.
//!
//! # Why dependencies are capped at `info`
//!
//! The bot token travels in the IDENTIFY payload, and NATS passwords, tokens
//! and nkey signatures in the CONNECT options. Our own code never logs them
//! (they are [`Secret`](crate::secret::Secret)s), but the libraries underneath
//! log what they send and receive at `debug` and `trace`: tungstenite and
//! tokio-tungstenite (raw WebSocket frames), async-nats (connection options),
//! reqwest, hyper, hyper-util, h2 (request headers such as `Authorization:
//! Bot …`) and rustls. A `RUST_LOG=trace` typed while chasing a bug would
//! write the token into the logs. So every target that is not ours — those
//! named above and any other dependency — is capped at `info` whatever
//! `RUST_LOG` says, while our own targets (`discord_bridge*`,
//! `astrid_discord_adapter`) follow `RUST_LOG` fully.
//!
//! For the same reason the `log`-crate bridge stays disabled: the workspace
//! builds `tracing-subscriber` without its `tracing-log` feature, so records
//! of crates that use `log` directly are dropped rather than routed around
//! this cap. Keep it that way.

use std::io::IsTerminal as _;

use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// The environment variable holding the filter, e.g. `discord_bridge=debug`.
pub const FILTER_ENV: &str = "RUST_LOG";

/// Crate targets whose events follow `RUST_LOG` at every level.
const OUR_TARGETS: &[&str] = &["discord_bridge", "astrid_discord_adapter"];

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `RUST_LOG` does not parse.
    #[error("{FILTER_ENV} is not a valid filter ({0}); use e.g. `info` or `discord_bridge=debug`")]
    Filter(String),
    /// Another subscriber was installed first.
    #[error("a tracing subscriber is already installed")]
    AlreadySet,
}

/// Whether `target` is capped at `info`: anything that is not our code.
#[must_use]
pub fn is_capped(target: &str) -> bool {
    !OUR_TARGETS.iter().any(|ours| {
        target
            .strip_prefix(ours)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    })
}

fn allowed(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !is_capped(meta.target())
}

/// The formatting layer with both filters, writing to `writer`.
fn layer<S, W>(filter: Option<&str>, writer: W, ansi: bool) -> Result<impl Layer<S>, LogError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env_filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(filter.unwrap_or_default())
        .map_err(|e| LogError::Filter(e.to_string()))?;
    Ok(tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(env_filter.and(filter_fn(allowed))))
}

/// Installs the process-wide subscriber: stderr, `RUST_LOG` (default
/// `info`), dependencies capped at `info`.
///
/// # Errors
/// An invalid `RUST_LOG`, or a subscriber that is already installed.
pub fn init() -> Result<(), LogError> {
    let filter = std::env::var(FILTER_ENV).ok();
    init_with(filter.as_deref())
}

/// [`init`] with an explicit filter instead of `RUST_LOG`.
///
/// # Errors
/// An invalid filter, or a subscriber that is already installed.
pub fn init_with(filter: Option<&str>) -> Result<(), LogError> {
    let ansi = std::io::stderr().is_terminal();
    let subscriber = Registry::default().with(layer(filter, std::io::stderr, ansi)?);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Self;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(filter: &str, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber =
            Registry::default().with(layer(Some(filter), buffer.clone(), false).unwrap());
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn targets() {
        for ours in [
            "discord_bridge",
            "discord_bridge::io::shard",
            "discord_bridge_e2e",
            "astrid_discord_adapter::consumer",
        ] {
            assert!(!is_capped(ours), "{ours}");
        }
        for theirs in [
            "tungstenite::protocol",
            "tokio_tungstenite",
            "async_nats::connector",
            "reqwest::connect",
            "hyper",
            "hyper_util::client",
            "h2::codec",
            "rustls::client",
            "discord_bridgex",
        ] {
            assert!(is_capped(theirs), "{theirs}");
        }
    }

    #[test]
    fn dependencies_stay_at_info_even_with_rust_log_trace() {
        let out = capture("trace", || {
            tracing::trace!(target: "tungstenite::protocol", "frame IDENTIFY-SECRET");
            tracing::debug!(target: "async_nats::connector", "connect PASSWORD-SECRET");
            tracing::info!(target: "async_nats::connector", "connected to server");
            tracing::trace!(target: "discord_bridge::io", "our trace line");
        });
        assert!(!out.contains("SECRET"), "{out}");
        assert!(out.contains("connected to server"), "{out}");
        assert!(out.contains("our trace line"), "{out}");
    }

    #[test]
    fn rust_log_still_narrows_and_defaults_to_info() {
        let out = capture("warn", || {
            tracing::info!(target: "discord_bridge::io", "an info line");
            tracing::warn!(target: "discord_bridge::io", "a warning");
        });
        assert!(
            !out.contains("an info line") && out.contains("a warning"),
            "{out}"
        );
        let out = capture("", || {
            tracing::debug!(target: "discord_bridge::io", "a debug line");
            tracing::info!(target: "discord_bridge::io", "an info line");
        });
        assert!(
            !out.contains("a debug line") && out.contains("an info line"),
            "{out}"
        );
    }

    #[test]
    fn a_bad_filter_is_an_error() {
        let err = layer::<Registry, _>(Some("discord_bridge=loud"), Buffer::default(), false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("RUST_LOG"), "{err}");
    }
}
