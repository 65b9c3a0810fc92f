//! Errors that end the process, and their exit codes.
//!
//! Exit code 2 means "a setting is wrong": the message names it and what to
//! change. Exit code 1 means the bridge ran and something stopped it that no
//! setting explains (a fatal close code, a task that died). Each concern has
//! its own enum ([`NatsError`], [`DiscoveryError`], [`TaskFailure`]), kept
//! whole with its source here, so callers and tests match variants rather
//! than parse messages.

use crate::config::ConfigErrors;
use crate::gateway::ShardId;
pub use crate::io::discovery::DiscoveryError;
pub use crate::io::http::HttpError;
pub use crate::io::nats::NatsError;
pub use crate::io::ownership::OwnershipError;
pub use crate::io::tasks::TaskFailure;

/// Why `run` or `demo` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// NATS could not be used: address, credentials, TLS, JetStream.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// `GET /gateway/bot` failed for good.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Discord refused the bot for good (bad token, invalid shard,
    /// disallowed intents…) on every shard this process ran (exit code 1).
    /// The message names the close code and the fix.
    #[error("{message}")]
    Fatal {
        /// The (first) shard Discord refused.
        shard: ShardId,
        /// Discord's close code.
        code: u16,
        /// What it means and what to do.
        message: String,
    },
    /// The operations endpoint (`http.listen`) could not be opened (exit
    /// code 1: the setting is valid, the address is not free here).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Shard ownership in NATS KV could not be read (exit code 1).
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    /// A task of the bridge died (exit code 1).
    #[error(transparent)]
    Task(#[from] TaskFailure),
    /// The process cannot watch for SIGINT/SIGTERM (exit code 1).
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The demo could not set itself up (exit code 1).
    #[cfg(feature = "demo")]
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
}

impl RunError {
    /// The process exit code for this error: 2 for configuration, 1 otherwise.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Nats(e) => e.exit_code(),
            Self::Discovery(e) => e.exit_code(),
            Self::Fatal { .. }
            | Self::Http(_)
            | Self::Ownership(_)
            | Self::Task(_)
            | Self::Signals(_) => 1,
            #[cfg(feature = "demo")]
            Self::Demo(e) => e.exit_code(),
        }
    }
}
