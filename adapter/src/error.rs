//! The adapter's errors: one enum, each variant saying what to do about it.

/// A boxed error from `async-nats` or another dependency.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the adapter, or one of its replays, stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A setting is unusable; the message names it.
    #[error("invalid adapter configuration: {0}")]
    Config(String),

    /// The server answered, but has no JetStream. Only an operator can fix
    /// this, so the adapter stops instead of retrying forever.
    #[error(
        "JetStream is not enabled on the NATS server: start nats-server with -js (or a \
         `jetstream {{}}` block in its configuration), or run the adapter with \
         AdapterConfig::mode = Mode::Core (at-most-once, no replay)"
    )]
    JetStreamNotEnabled,

    /// The stream cannot be read or is not usable for the agent subject.
    #[error("JetStream stream {stream}: {message}")]
    Stream {
        /// The stream name (`AdapterConfig::stream`).
        stream: String,
        /// What is wrong and what to change.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The durable consumer cannot be created, updated or used.
    #[error("durable consumer {consumer} on stream {stream}: {message}")]
    Consumer {
        /// The stream name.
        stream: String,
        /// The durable name (`AdapterConfig::durable_name`).
        consumer: String,
        /// What is wrong and what to change.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Core-NATS mode could not subscribe.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },

    /// A replay could not run; the durable consumer is unaffected.
    #[error("replay failed: {message}")]
    Replay {
        /// What went wrong.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The operation was cancelled through its `CancellationToken` before it
    /// finished (a replay interrupted by shutdown).
    #[error("cancelled")]
    Cancelled,

    /// The adapter task panicked.
    #[error("the adapter task panicked: {0}")]
    Panicked(String),
}

impl AdapterError {
    pub(crate) fn stream(
        stream: &str,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Self::Stream {
            stream: stream.to_owned(),
            message: message.into(),
            source,
        }
    }

    pub(crate) fn replay(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Replay {
            message: message.into(),
            source,
        }
    }
}
