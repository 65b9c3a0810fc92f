//! Errors that end the process, and their exit codes.

use crate::config::ConfigErrors;

/// Why `run` or `demo` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A deployment problem found at start-up that a setting fixes, e.g.
    /// JetStream disabled on the server (exit code 2).
    #[error("{0}")]
    Setup(String),
    /// Discord refused the bot for good: bad token, invalid shard, disallowed
    /// intents… (exit code 1). The message names the close code and the fix.
    #[error("{0}")]
    Fatal(String),
    /// Anything else that stopped the process (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

impl RunError {
    /// The process exit code for this error: 2 for configuration, 1 otherwise.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Setup(_) => 2,
            Self::Fatal(_) | Self::Runtime(_) => 1,
        }
    }
}
