//! Logging: `tracing` events to stderr, filtered by `RUST_LOG`, as text
//! lines for people or JSON lines for a log pipeline (`log.format`).
//!
//! Both formats carry the same fields: a JSON line has the event's fields,
//! its current span and the list of spans it is in, so a shard's lines name
//! the shard (`shard`) and the connection (`conn` span, `n`) as the text
//! lines do. Both are filtered by the same two filters below, so what a
//! dependency may log does not depend on the format.
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

/// How log lines are written (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `tracing`'s human-readable lines (colours on a terminal).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), `span` and `spans`.
    Json,
}

impl LogFormat {
    /// The configuration spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// A `log.format` value that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a log format: use text or json{}", match .suggestion {
    Some(s) => format!(" (did you mean {s}?)"),
    None => String::new(),
})]
pub struct UnknownLogFormat {
    /// What was given.
    pub value: String,
    /// The format it looks like, if any.
    pub suggestion: Option<&'static str>,
}

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => {
                // `jsonl`, `ndjson`, `plain`, `txt`, typos: what was meant
                // is usually plain to see.
                let suggestion = match lower.as_str() {
                    "jsonl" | "ndjson" | "json-lines" | "structured" => Some("json"),
                    "plain" | "txt" | "pretty" | "human" | "full" => Some("text"),
                    _ => ["text", "json"]
                        .into_iter()
                        .map(|f| (strsim::levenshtein(f, &lower), f))
                        .filter(|(d, _)| *d <= 2)
                        .min_by_key(|(d, _)| *d)
                        .map(|(_, f)| f),
                };
                Err(UnknownLogFormat {
                    value: s.to_owned(),
                    suggestion,
                })
            }
        }
    }
}

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

/// The boxed formatting layer of one subscriber.
type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// The formatting layer with both filters, writing to `writer`.
fn layer<S, W>(
    filter: Option<&str>,
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Result<BoxedLayer<S>, LogError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env_filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(filter.unwrap_or_default())
        .map_err(|e| LogError::Filter(e.to_string()))?;
    let filters = env_filter.and(filter_fn(allowed));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    Ok(match format {
        LogFormat::Text => fmt.with_ansi(ansi).with_filter(filters).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filters)
            .boxed(),
    })
}

/// Installs the process-wide subscriber: text lines on stderr, `RUST_LOG`
/// (default `info`), dependencies capped at `info`.
///
/// # Errors
/// An invalid `RUST_LOG`, or a subscriber that is already installed.
pub fn init() -> Result<(), LogError> {
    let filter = std::env::var(FILTER_ENV).ok();
    init_with(filter.as_deref(), LogFormat::Text)
}

/// [`init`] with an explicit filter instead of `RUST_LOG`, and a format.
///
/// # Errors
/// An invalid filter, or a subscriber that is already installed.
pub fn init_with(filter: Option<&str>, format: LogFormat) -> Result<(), LogError> {
    let ansi = std::io::stderr().is_terminal();
    let subscriber = Registry::default().with(layer(filter, format, std::io::stderr, ansi)?);
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

    fn capture_as(format: LogFormat, filter: &str, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber =
            Registry::default().with(layer(Some(filter), format, buffer.clone(), false).unwrap());
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    fn capture(filter: &str, emit: impl FnOnce()) -> String {
        capture_as(LogFormat::Text, filter, emit)
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
        let err = layer::<Registry, _>(
            Some("discord_bridge=loud"),
            LogFormat::Text,
            Buffer::default(),
            false,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("RUST_LOG"), "{err}");
    }

    #[test]
    fn json_lines_carry_span_fields_and_the_same_cap() {
        let out = capture_as(LogFormat::Json, "trace", || {
            let shard =
                tracing::info_span!(target: "discord_bridge::io::shard", "shard", shard = "0/1");
            let _shard = shard.enter();
            let conn = tracing::info_span!(target: "discord_bridge::io::shard", "conn", n = 2);
            let _conn = conn.enter();
            tracing::info!(target: "discord_bridge::io::shard", code = 4000, "closing");
            tracing::trace!(target: "tungstenite::protocol", "frame IDENTIFY-SECRET");
            tracing::debug!(target: "async_nats::connector", "connect PASSWORD-SECRET");
        });
        assert!(!out.contains("SECRET"), "{out}");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "closing");
        assert_eq!(line["fields"]["code"], 4000);
        assert_eq!(line["span"]["name"], "conn");
        assert_eq!(line["span"]["n"], 2);
        assert_eq!(line["spans"][0]["name"], "shard");
        assert_eq!(line["spans"][0]["shard"], "0/1");
    }

    #[test]
    fn log_formats_and_their_suggestions() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!(" JSON ".parse(), Ok(LogFormat::Json));
        for (given, meant) in [
            ("jsno", Some("json")),
            ("ndjson", Some("json")),
            ("txt", Some("text")),
            ("plain", Some("text")),
            ("logfmt", None),
        ] {
            let err = given.parse::<LogFormat>().unwrap_err();
            assert_eq!(err.suggestion, meant, "{given}");
            let message = err.to_string();
            assert!(message.contains("use text or json"), "{message}");
            if let Some(meant) = meant {
                assert!(
                    message.ends_with(&format!("(did you mean {meant}?)")),
                    "{message}"
                );
            }
        }
    }
}
