//! Why the demo could not run.

use std::path::PathBuf;

/// A demo set-up failure.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// No NATS server answers and none can be started here: a setting (or
    /// an install) fixes it, so exit code 2.
    #[error(
        "no NATS server answers at {url} and `{}` cannot be started ({source}): run \
         scripts/demo (it installs nats-server), install nats-server 2.10+ (or set \
         NATS_SERVER_BIN to it), or point NATS_URL at a running server",
        bin.display()
    )]
    NoNatsServer {
        /// The configured URL.
        url: String,
        /// The binary that could not be started.
        bin: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The local nats-server started but did not come up.
    #[error("the demo's nats-server {0}; see its log for the reason")]
    NatsServerFailed(String),
    /// A local resource (temporary store, port, log file) is unavailable.
    #[error("{what}: {source}")]
    Local {
        /// What the demo tried.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A NATS operation of the demo itself failed.
    #[error("{what}: {source}")]
    Nats {
        /// What the demo tried.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The gateway simulator or the adapter could not start.
    #[error("cannot start the {what}: {source}")]
    Start {
        /// `gateway simulator` or `adapter`.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bridge task of the demo ended abnormally.
    #[error("the demo's bridge task failed: {0}")]
    Bridge(#[source] tokio::task::JoinError),
}

impl DemoError {
    /// 2 when an install or a setting fixes it, else 1.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::NoNatsServer { .. } => 2,
            _ => 1,
        }
    }

    /// A NATS failure of the demo: `what` it tried.
    pub(crate) fn nats(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Nats {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
