//! The table of configuration keys: the single source of truth for key names,
//! environment variables, defaults and which values are secret.
//!
//! The loader builds its default layer and its environment layer from this
//! table, `check-config` walks it to print every key, and the README and
//! docker-compose tests check their own tables against it, so a key added here
//! is documented, loadable from the environment and rendered in one go.

/// One configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Dotted key as written in the TOML file, e.g. `discord.intents`
    /// (`[discord]` table, `intents` entry).
    pub key: &'static str,
    /// The environment variable that sets it; a public contract that
    /// deployments depend on, so it is never renamed.
    pub env: &'static str,
    /// The default as it would be written in the environment variable;
    /// `None` when the key is unset by default. This is the only place a
    /// default is written: [`super::Config::default`] is these strings loaded.
    pub default: Option<&'static str>,
    /// Whether the value must never be printed, logged or put in an error.
    pub secret: bool,
    /// One line for operators: what it does and which values it takes.
    pub description: &'static str,
}

impl Key {
    /// The table (`discord`, `nats`, `http` or `log`) and the entry name
    /// inside it.
    #[must_use]
    pub fn split(&self) -> (&'static str, &'static str) {
        self.key.split_once('.').unwrap_or(("", self.key))
    }
}

const fn key(
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    description: &'static str,
) -> Key {
    Key {
        key,
        env,
        default,
        secret: false,
        description,
    }
}

const fn secret(key: &'static str, env: &'static str, description: &'static str) -> Key {
    Key {
        key,
        env,
        default: None,
        secret: true,
        description,
    }
}

/// Every key, in the order `check-config` prints them.
pub const KEYS: &[Key] = &[
    secret(
        "discord.token",
        "DISCORD_BOT_TOKEN",
        "bot token from the Developer Portal, without the `Bot ` prefix; required by `run`",
    ),
    key(
        "discord.intents",
        "DISCORD_GATEWAY_INTENTS",
        Some("4609"),
        "gateway intents: a number or intent names (GUILDS,GUILD_MESSAGES,...); default GUILDS|GUILD_MESSAGES|DIRECT_MESSAGES",
    ),
    key(
        "discord.api_base",
        "DISCORD_API_BASE",
        Some("https://discord.com/api/v10"),
        "Discord REST API base URL (http:// or https://)",
    ),
    key(
        "discord.gateway_url",
        "DISCORD_GATEWAY_URL",
        None,
        "fixed gateway URL; when set, GET /gateway/bot is skipped (wss:// on discord.gg unless allow_insecure_gateway)",
    ),
    key(
        "discord.allow_insecure_gateway",
        "DISCORD_ALLOW_INSECURE_GATEWAY",
        Some("false"),
        "accept ws:// and non-discord.gg gateway and resume URLs; for the simulator and tests only",
    ),
    key(
        "discord.tls_ca",
        "DISCORD_TLS_CA",
        None,
        "extra CA certificate file (PEM) trusted for Discord's REST API and gateway besides the webpki roots, e.g. behind a TLS-intercepting proxy",
    ),
    key(
        "discord.compression",
        "DISCORD_GATEWAY_COMPRESSION",
        Some("zlib-stream"),
        "gateway transport compression: zstd-stream, zlib-stream or none",
    ),
    key(
        "discord.shards",
        "DISCORD_SHARDS",
        Some("auto"),
        "shards run by this process: auto (all recommended), ID/TOTAL or A-B/TOTAL",
    ),
    key(
        "discord.max_frame_bytes",
        "DISCORD_MAX_FRAME_BYTES",
        Some("33554432"),
        "gateway payloads larger than this (decompressed) are dropped with a warning; at least 65536",
    ),
    key(
        "discord.backoff_base_ms",
        "DISCORD_BACKOFF_BASE_MS",
        Some("1000"),
        "first reconnect backoff step in milliseconds (full jitter, doubling)",
    ),
    key(
        "discord.backoff_max_ms",
        "DISCORD_BACKOFF_MAX_MS",
        Some("60000"),
        "largest reconnect backoff in milliseconds",
    ),
    key(
        "discord.shard_lease_secs",
        "DISCORD_SHARD_LEASE_SECS",
        Some("10"),
        "shard ownership lease in NATS KV (JetStream mode): a standby takes over a dead owner's shard within about this long; at least 2",
    ),
    key(
        "discord.session_start_reserve",
        "DISCORD_SESSION_START_RESERVE",
        Some("0"),
        "IDENTIFYs are never spent when session_start_limit.remaining is at or below this; RESUMEs go on",
    ),
    key(
        "nats.url",
        "NATS_URL",
        Some("nats://127.0.0.1:4222"),
        "NATS server URLs (nats://, tls://, ws://, wss://), comma-separated or a TOML list",
    ),
    key(
        "nats.creds_file",
        "NATS_CREDS",
        None,
        "NATS credentials file (JWT + nkey seed)",
    ),
    key(
        "nats.user",
        "NATS_USER",
        None,
        "NATS user name; needs nats.password",
    ),
    secret(
        "nats.password",
        "NATS_PASSWORD",
        "NATS password; needs nats.user",
    ),
    secret("nats.token", "NATS_TOKEN", "NATS authentication token"),
    secret("nats.nkey_seed", "NATS_NKEY_SEED", "NATS nkey seed (SU...)"),
    key(
        "nats.tls_ca",
        "NATS_CA",
        None,
        "CA certificate file (PEM) to trust for the NATS server",
    ),
    key(
        "nats.tls_cert",
        "NATS_CERT",
        None,
        "client certificate file (PEM) for NATS mutual TLS; needs nats.tls_key",
    ),
    key(
        "nats.tls_key",
        "NATS_KEY",
        None,
        "client private key file (PEM) for NATS mutual TLS; needs nats.tls_cert",
    ),
    key(
        "nats.subject_prefix",
        "BRIDGE_CAPSULE_ID",
        Some(discord_bridge_schemas::subject::DEFAULT_PREFIX),
        "subject prefix, the capsule id: events go to {prefix}.agent.events",
    ),
    key(
        "nats.publish",
        "BRIDGE_PUBLISH_MODE",
        Some("jetstream"),
        "jetstream (stored, acked, de-duplicated) or core (at-most-once)",
    ),
    key(
        "nats.stream",
        "BRIDGE_STREAM",
        Some("ASTRID_DISCORD"),
        "JetStream stream name (no spaces, dots or wildcards)",
    ),
    key(
        "nats.raw_dispatch",
        "BRIDGE_RAW_DISPATCH",
        None,
        "dispatch types also published raw on {prefix}.gateway.dispatch.{T}, comma-separated or a TOML list",
    ),
    key(
        "nats.duplicate_window_secs",
        "BRIDGE_DUPLICATE_WINDOW_SECS",
        Some("120"),
        "stream de-duplication window in seconds; at least 120",
    ),
    key(
        "nats.stream_max_age_secs",
        "BRIDGE_STREAM_MAX_AGE_SECS",
        Some("604800"),
        "stream max age in seconds; 0 = no limit",
    ),
    key(
        "nats.stream_max_bytes",
        "BRIDGE_STREAM_MAX_BYTES",
        Some("0"),
        "stream max size in bytes; 0 = no limit",
    ),
    key(
        "nats.stream_replicas",
        "BRIDGE_STREAM_REPLICAS",
        Some("1"),
        "replicas of the stream and KV buckets the bridge creates: 1, 3 or 5 (a NATS cluster)",
    ),
    key(
        "nats.buffer_events",
        "BRIDGE_BUFFER_EVENTS",
        Some("10000"),
        "events a shard buffers while NATS is slow or away; when full the shard stops reading the gateway (TCP back-pressure), and closes it resumably only if NATS is down or stalled",
    ),
    key(
        "nats.buffer_bytes",
        "BRIDGE_BUFFER_BYTES",
        Some("67108864"),
        "bytes a shard buffers while NATS is slow or away",
    ),
    key(
        "nats.max_inflight",
        "BRIDGE_MAX_INFLIGHT",
        Some("1024"),
        "JetStream publishes awaiting their ack, per shard",
    ),
    key(
        "nats.ack_timeout_ms",
        "BRIDGE_ACK_TIMEOUT_MS",
        Some("5000"),
        "milliseconds to wait for a JetStream ack before retrying",
    ),
    key(
        "nats.stall_timeout_secs",
        "BRIDGE_STALL_TIMEOUT_SECS",
        Some("30"),
        "seconds a full buffer may wait with no publish acknowledged before the shard closes the gateway and RESUMEs later",
    ),
    key(
        "http.listen",
        "BRIDGE_HTTP_LISTEN",
        None,
        "IP:PORT serving /metrics (Prometheus), /healthz and /readyz, e.g. 0.0.0.0:9090; unset = no HTTP server",
    ),
    key(
        "log.format",
        "BRIDGE_LOG_FORMAT",
        Some("text"),
        "log lines on stderr: text (for people) or json (one JSON object per line, with the shard and connection span fields)",
    ),
];

/// The key with this dotted name.
#[must_use]
pub fn by_key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.key == name)
}

/// The key set by this environment variable.
#[must_use]
pub fn by_env(env: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.env == env)
}

/// The key that looks most like an unknown one, for "did you mean" hints:
/// first a key with the same entry name in another table (`token` or
/// `discord.token` written under `[nats]`), then the nearest dotted key by
/// edit distance, if at most three edits away (further than that the hint
/// is more confusing than helpful).
#[must_use]
pub fn suggest(unknown: &str) -> Option<&'static Key> {
    let last = unknown.rsplit('.').next().unwrap_or(unknown);
    KEYS.iter().find(|k| k.split().1 == last).or_else(|| {
        KEYS.iter()
            .map(|k| (strsim::levenshtein(k.key, unknown), k))
            .filter(|(d, _)| *d <= 3)
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_and_env_names_are_unique_and_well_formed() {
        let mut keys = HashSet::new();
        let mut envs = HashSet::new();
        for k in KEYS {
            assert!(keys.insert(k.key), "duplicate key {}", k.key);
            assert!(envs.insert(k.env), "duplicate env {}", k.env);
            let (table, name) = k.split();
            assert!(
                matches!(table, "discord" | "nats" | "http" | "log"),
                "{}",
                k.key
            );
            assert!(!name.is_empty() && !name.contains('.'), "{}", k.key);
            assert!(
                k.env.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{}",
                k.env
            );
            assert!(!k.description.is_empty());
            assert!(
                !(k.secret && k.default.is_some()),
                "{} secret default",
                k.key
            );
        }
    }

    /// The variables deployments already set (docker-compose.yml, the
    /// README's configuration section): renaming one would break them
    /// silently, because a variable nobody reads is simply ignored.
    #[test]
    fn the_public_contract_of_environment_names() {
        let contract = [
            ("discord.token", "DISCORD_BOT_TOKEN"),
            ("discord.intents", "DISCORD_GATEWAY_INTENTS"),
            ("discord.api_base", "DISCORD_API_BASE"),
            ("discord.gateway_url", "DISCORD_GATEWAY_URL"),
            (
                "discord.allow_insecure_gateway",
                "DISCORD_ALLOW_INSECURE_GATEWAY",
            ),
            ("discord.compression", "DISCORD_GATEWAY_COMPRESSION"),
            ("discord.shards", "DISCORD_SHARDS"),
            ("nats.url", "NATS_URL"),
            ("nats.creds_file", "NATS_CREDS"),
            ("nats.user", "NATS_USER"),
            ("nats.password", "NATS_PASSWORD"),
            ("nats.token", "NATS_TOKEN"),
            ("nats.nkey_seed", "NATS_NKEY_SEED"),
            ("nats.tls_ca", "NATS_CA"),
            ("nats.tls_cert", "NATS_CERT"),
            ("nats.tls_key", "NATS_KEY"),
            ("nats.subject_prefix", "BRIDGE_CAPSULE_ID"),
            ("nats.publish", "BRIDGE_PUBLISH_MODE"),
            ("nats.stream", "BRIDGE_STREAM"),
            ("http.listen", "BRIDGE_HTTP_LISTEN"),
            ("log.format", "BRIDGE_LOG_FORMAT"),
        ];
        for (key, env) in contract {
            assert_eq!(by_key(key).map(|k| k.env), Some(env), "{key}");
            assert_eq!(by_env(env).map(|k| k.key), Some(key), "{env}");
        }
        let secrets: Vec<_> = KEYS.iter().filter(|k| k.secret).map(|k| k.key).collect();
        assert_eq!(
            secrets,
            [
                "discord.token",
                "nats.password",
                "nats.token",
                "nats.nkey_seed"
            ]
        );
    }

    #[test]
    fn suggestions_for_typos() {
        assert_eq!(
            suggest("discord.tokn").map(|k| k.key),
            Some("discord.token")
        );
        assert_eq!(suggest("token").map(|k| k.key), Some("discord.token"));
        assert_eq!(suggest("nats.urls").map(|k| k.key), Some("nats.url"));
        assert_eq!(suggest("completely.different.thing"), None);
    }
}
