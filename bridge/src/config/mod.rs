//! Configuration: defaults < `discord-bridge.toml` < environment.
//!
//! The typed [`Config`] is what the rest of the bridge reads. Every key has
//! exactly one environment variable (the table in [`keys`]); those names are a
//! public contract: deployment scripts, `docker-compose.yml` and the README's
//! configuration section use them, so a key is never renamed, only added.
//!
//! # One mechanism: the key table
//!
//! [`keys::KEYS`] lists every key with its variable, its default, whether it
//! is secret and a description. Loading is that table walked once:
//!
//! 1. the TOML file is parsed once into a [`toml::Table`], and each of its
//!    entries that is not in the table is reported with a "did you mean";
//! 2. each key takes its environment variable if set, else the file's entry,
//!    else the table's default, and remembers which ([`Source`]);
//! 3. each raw value is converted and checked on its own (`build.rs`), and
//!    every problem is collected as a [`ConfigError`] naming the key, the
//!    variable and, for a file value, the file.
//!
//! There is deliberately no figment here. Its typed extraction would stop at
//! the first bad field (serde deserialises a struct until its first error)
//! where an operator must see every problem of a deployment in one run; its
//! type errors quote the offending value, which for `discord.token` is the
//! token; its unknown-field check names one key without a suggestion; and its
//! environment provider maps variables by prefix, while ours (`NATS_CREDS`,
//! `BRIDGE_CAPSULE_ID`) are a fixed list. What was left for it was merging
//! three layers to look every key up again, which the per-key merge above does
//! in one short loop (`resolve` in `load.rs`).
//!
//! Each default lives in the key table only: [`Config::default`] is the
//! loader run with no file and an empty environment, so the defaults the
//! README documents, `check-config` prints and the bridge runs with are one
//! set of values.

mod build;
pub mod gateway_url;
pub mod keys;
mod load;
mod render;
mod rules;
#[cfg(test)]
mod tests;
mod value;

pub use gateway_url::check_gateway_url;
pub use load::{
    CONFIG_FILE_ENV, DEFAULT_FILE, LoadOptions, Loaded, MAX_FILE_BYTES, Source, load,
    load_from_process, process_env,
};
pub use render::{redact_url, render};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::codec::Compression;
use crate::gateway::{Intents, ShardSpec};
pub use crate::logging::LogFormat;
use crate::secret::Secret;

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Discord side.
    pub discord: DiscordConfig,
    /// The NATS side.
    pub nats: NatsConfig,
    /// The operations endpoint (metrics and probes).
    pub http: HttpConfig,
    /// How logs are written.
    pub log: LogConfig,
}

/// The HTTP endpoint for Prometheus and health probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`http.listen`);
    /// `None` serves nothing. Port 0 lets the system choose (the bound
    /// address is logged).
    pub listen: Option<SocketAddr>,
}

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Text or JSON lines (`log.format`).
    pub format: LogFormat,
}

/// How to reach Discord and which session to hold.
#[derive(Debug, Clone)]
pub struct DiscordConfig {
    /// The bot token (`discord.token`, `DISCORD_BOT_TOKEN`); required by `run`.
    pub token: Option<Secret>,
    /// Gateway intents (`discord.intents`).
    pub intents: Intents,
    /// REST API base, without trailing slash (`discord.api_base`).
    pub api_base: String,
    /// Fixed gateway URL; when set, `GET /gateway/bot` is skipped
    /// (`discord.gateway_url`).
    pub gateway_url: Option<String>,
    /// Accept `ws://` and non-`discord.gg` gateway and resume URLs; for the
    /// simulator and tests only (`discord.allow_insecure_gateway`).
    pub allow_insecure_gateway: bool,
    /// An extra CA file (PEM) trusted for the REST API and the gateway
    /// besides the webpki roots (`discord.tls_ca`).
    pub tls_ca: Option<PathBuf>,
    /// Transport compression (`discord.compression`).
    pub compression: Compression,
    /// Which shards this process runs (`discord.shards`).
    pub shards: ShardSpec,
    /// Payloads larger than this (decompressed) are dropped with a warning
    /// (`discord.max_frame_bytes`).
    pub max_frame_bytes: usize,
    /// First reconnect backoff step (`discord.backoff_base_ms`).
    pub backoff_base: Duration,
    /// Largest reconnect backoff (`discord.backoff_max_ms`).
    pub backoff_max: Duration,
    /// Shard ownership lease (`discord.shard_lease_secs`).
    pub shard_lease: Duration,
    /// IDENTIFYs are not spent at or below this many remaining session
    /// starts (`discord.session_start_reserve`).
    pub session_start_reserve: u32,
}

/// How to reach NATS and where to publish.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URLs (`nats.url`, comma-separated).
    pub urls: Vec<String>,
    /// Credentials file (`nats.creds_file`).
    pub creds_file: Option<PathBuf>,
    /// User name (`nats.user`); goes with `password`.
    pub user: Option<String>,
    /// Password (`nats.password`).
    pub password: Option<Secret>,
    /// Token (`nats.token`).
    pub token: Option<Secret>,
    /// NKey seed (`nats.nkey_seed`).
    pub nkey_seed: Option<Secret>,
    /// CA certificate file to trust (`nats.tls_ca`).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate file (`nats.tls_cert`); goes with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Client key file (`nats.tls_key`).
    pub tls_key: Option<PathBuf>,
    /// Subject prefix, the capsule id (`nats.subject_prefix`).
    pub subject_prefix: String,
    /// JetStream or core publishing (`nats.publish`).
    pub publish: PublishMode,
    /// JetStream stream name (`nats.stream`).
    pub stream: String,
    /// Dispatch types also published raw on `{prefix}.gateway.dispatch.{T}`
    /// (`nats.raw_dispatch`); empty by default.
    pub raw_dispatch: Vec<String>,
    /// Stream duplicate window; at least two minutes (`nats.duplicate_window_secs`).
    pub duplicate_window: Duration,
    /// Stream max age; `None` keeps events until `stream_max_bytes`
    /// (`nats.stream_max_age_secs`).
    pub stream_max_age: Option<Duration>,
    /// Stream max bytes; `None` is unlimited (`nats.stream_max_bytes`).
    pub stream_max_bytes: Option<u64>,
    /// Replicas of the stream and KV buckets created (`nats.stream_replicas`).
    pub stream_replicas: usize,
    /// Events a shard buffers while NATS is slow or away (`nats.buffer_events`).
    pub buffer_events: usize,
    /// Bytes a shard buffers while NATS is slow or away (`nats.buffer_bytes`).
    pub buffer_bytes: usize,
    /// JetStream publishes awaiting their ack, per shard (`nats.max_inflight`).
    pub max_inflight: usize,
    /// How long to wait for a JetStream ack before retrying (`nats.ack_timeout_ms`).
    pub ack_timeout: Duration,
    /// How long a full buffer waits with no publish acknowledged before the
    /// shard closes the gateway resumably (`nats.stall_timeout_secs`).
    pub stall_timeout: Duration,
}

/// How events are published. No `Default`: the default mode is the key
/// table's (`nats.publish`), like every other default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// JetStream publish with acks and de-duplication: at-least-once, stored.
    JetStream,
    /// Core NATS publish: at-most-once, only live subscribers see it.
    Core,
}

impl PublishMode {
    /// The configuration spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::JetStream => "jetstream",
            Self::Core => "core",
        }
    }
}

impl Default for Config {
    /// The key table's defaults, converted and checked by the loader itself
    /// (a load with no file and an empty environment).
    ///
    /// # Panics
    /// Only if a default in [`keys::KEYS`] is itself invalid: a bug in a
    /// constant table, which the configuration tests rule out by loading
    /// exactly these defaults.
    fn default() -> Self {
        match load::defaults() {
            Ok(config) => config,
            Err(errors) => panic!("the key table's defaults are invalid: {errors}"),
        }
    }
}

impl Default for DiscordConfig {
    /// The `discord` half of [`Config::default`].
    fn default() -> Self {
        Config::default().discord
    }
}

impl Default for NatsConfig {
    /// The `nats` half of [`Config::default`].
    fn default() -> Self {
        Config::default().nats
    }
}

/// One invalid setting: which key, which environment variable, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `discord.intents`.
    pub key: String,
    /// Its environment variable, e.g. `DISCORD_GATEWAY_INTENTS`; empty for
    /// an unknown key of the TOML file, which has none.
    pub env: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.env.is_empty() {
            // A key of the file that has no variable (an unknown key).
            write!(f, "{}: {}", self.key, self.message)
        } else {
            write!(f, "{} ({}): {}", self.key, self.env, self.message)
        }
    }
}

/// Every problem found in one load, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
