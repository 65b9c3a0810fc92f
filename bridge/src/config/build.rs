//! From merged figment values to a typed [`Config`], collecting every problem.
//!
//! Each key is parsed on its own, so one bad value never hides another; the
//! rules that involve several keys (user and password, backoff base and max,
//! the gateway URL and `allow_insecure_gateway`) run only on values that
//! parsed, so one mistake is reported once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::value::Value;

use super::gateway_url::check_gateway_url;
use super::keys::{self, Key};
use super::load::Source;
use super::render::redact_url;
use super::rules::{check_event_name, check_nats_url, check_stream_name, check_token};
use super::value;
use super::{Config, ConfigError, DiscordConfig, NatsConfig, PublishMode};
use crate::codec::Compression;
use crate::gateway::ShardSpec;
use crate::secret::Secret;

/// Smallest accepted `discord.max_frame_bytes`: a GUILD_CREATE of a small
/// guild already needs tens of KiB.
pub(super) const MIN_FRAME_BYTES: u64 = 64 * 1024;

/// Smallest accepted duplicate window: Discord replays at most what it holds
/// for a RESUME, and JetStream must recognise those replays.
pub(super) const MIN_DUPLICATE_WINDOW_SECS: u64 = 120;

pub(super) struct Builder<'a> {
    figment: &'a Figment,
    sources: &'a [(&'static Key, Source)],
    base_dir: &'a Path,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        figment: &'a Figment,
        sources: &'a [(&'static Key, Source)],
        base_dir: &'a Path,
        errors: &'a mut Vec<ConfigError>,
    ) -> Self {
        Self {
            figment,
            sources,
            base_dir,
            errors,
        }
    }

    pub(super) fn build(&mut self, require_token: bool) -> Config {
        let mut config = Config::default();
        self.discord(&mut config.discord, require_token);
        self.nats(&mut config.nats);
        config
    }

    /// Records a problem with `key`, saying where its value came from when
    /// that was the file (the environment variable is in every message).
    fn error(&mut self, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        let env = keys::by_key(key).map_or("", |k| k.env);
        if let Some(Source::File(path)) = self
            .sources
            .iter()
            .find(|(k, _)| k.key == key)
            .map(|(_, s)| s)
        {
            message = format!("{message} (set in {})", path.display());
        }
        self.errors.push(ConfigError {
            key: key.to_owned(),
            env: env.to_owned(),
            message,
        });
    }

    /// The value of `key` converted by `parse`; `None` when unset or invalid
    /// (then the error is recorded).
    fn get<T>(&mut self, key: &str, parse: impl FnOnce(&Value) -> Result<T, String>) -> Option<T> {
        let value = self.figment.find_value(key).ok()?;
        match parse(&value) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    fn number(&mut self, key: &str, min: u64, why: &str) -> Option<u64> {
        let n = self.get(key, value::unsigned)?;
        if n < min {
            self.error(key, format!("{n} is too small: {why}"));
            return None;
        }
        Some(n)
    }

    fn size(&mut self, key: &str, min: u64, why: &str) -> Option<usize> {
        let n = self.number(key, min, why)?;
        usize::try_from(n).map_or_else(
            |_| {
                self.error(key, format!("{n} is too large for this machine"));
                None
            },
            Some,
        )
    }

    fn secret(&mut self, key: &str) -> Option<Secret> {
        self.get(key, value::optional_string)
            .flatten()
            .map(Secret::new)
    }

    fn file(&mut self, key: &str) -> Option<PathBuf> {
        let path = PathBuf::from(self.get(key, value::optional_string).flatten()?);
        if !self.base_dir.join(&path).is_file() {
            self.error(
                key,
                format!(
                    "file {} does not exist or is not a file; fix the path",
                    path.display()
                ),
            );
            return None;
        }
        Some(path)
    }

    fn discord(&mut self, d: &mut DiscordConfig, require_token: bool) {
        let token = self.get("discord.token", value::optional_string).flatten();
        match token.map(|t| check_token(&t).map(|()| Secret::new(t))) {
            Some(Ok(t)) => d.token = Some(t),
            Some(Err(message)) => self.error("discord.token", message),
            None if require_token && !self.failed("discord.token") => self.error(
                "discord.token",
                "missing: set DISCORD_BOT_TOKEN (or discord.token) to your bot token \
                 (Developer Portal > your application > Bot > Reset Token)",
            ),
            None => {}
        }
        if let Some(i) = self.get("discord.intents", value::intents) {
            d.intents = i;
        }
        if let Some(base) = self.get("discord.api_base", value::string) {
            let lower = base.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            if rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
                d.api_base = base.trim_end_matches('/').to_owned();
            } else {
                self.error(
                    "discord.api_base",
                    format!("{base:?} is not an http:// or https:// URL; the default is https://discord.com/api/v10"),
                );
            }
        }
        if let Some(b) = self.get("discord.allow_insecure_gateway", value::boolean) {
            d.allow_insecure_gateway = b;
        }
        if let Some(url) = self
            .get("discord.gateway_url", value::optional_string)
            .flatten()
        {
            match check_gateway_url(&url, d.allow_insecure_gateway) {
                Ok(()) => d.gateway_url = Some(url),
                Err(reason) => self.error(
                    "discord.gateway_url",
                    format!(
                        "{reason}; use wss://gateway.discord.gg or leave it unset to ask Discord \
                         (discord.allow_insecure_gateway / DISCORD_ALLOW_INSECURE_GATEWAY is for the simulator and tests only)"
                    ),
                ),
            }
        }
        if let Some(c) = self.get("discord.compression", |v| {
            value::string(v)?
                .parse::<Compression>()
                .map_err(|e| e.to_string())
        }) {
            d.compression = c;
        }
        if let Some(s) = self.get("discord.shards", |v| {
            ShardSpec::parse(&value::string(v)?).map_err(|e| e.to_string())
        }) {
            d.shards = s;
        }
        if let Some(n) = self.size(
            "discord.max_frame_bytes",
            MIN_FRAME_BYTES,
            "use at least 65536 (64 KiB); Discord's payloads routinely exceed smaller caps",
        ) {
            d.max_frame_bytes = n;
        }
        let base = self.number(
            "discord.backoff_base_ms",
            1,
            "use at least 1 ms (the default is 1000)",
        );
        let max = self.number(
            "discord.backoff_max_ms",
            1,
            "use at least 1 ms (the default is 60000)",
        );
        if let (Some(base), Some(max)) = (base, max) {
            if base > max {
                self.error(
                    "discord.backoff_base_ms",
                    format!("{base} ms is larger than discord.backoff_max_ms ({max} ms); lower it or raise the max"),
                );
            } else {
                d.backoff_base = Duration::from_millis(base);
                d.backoff_max = Duration::from_millis(max);
            }
        }
    }

    fn failed(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }

    fn nats(&mut self, n: &mut NatsConfig) {
        if let Some(urls) = self.get("nats.url", value::list) {
            let bad: Vec<String> = urls
                .iter()
                .filter_map(|u| {
                    check_nats_url(u)
                        .err()
                        .map(|e| format!("{}: {e}", redact_url(u)))
                })
                .collect();
            if urls.is_empty() {
                self.error("nats.url", "no URL given; use e.g. nats://127.0.0.1:4222");
            } else if !bad.is_empty() {
                self.error("nats.url", bad.join("; "));
            } else {
                n.urls = urls;
            }
        }
        n.creds_file = self.file("nats.creds_file");
        n.user = self.get("nats.user", value::optional_string).flatten();
        n.password = self.secret("nats.password");
        n.token = self.secret("nats.token");
        n.nkey_seed = self.secret("nats.nkey_seed");
        match (n.user.is_some(), n.password.is_some()) {
            (true, false) if !self.failed("nats.password") => {
                self.error(
                    "nats.password",
                    "nats.user is set without a password; set NATS_PASSWORD too",
                );
            }
            (false, true) if !self.failed("nats.user") => {
                self.error(
                    "nats.user",
                    "nats.password is set without a user; set NATS_USER too",
                );
            }
            _ => {}
        }
        let methods: Vec<(&str, &str)> = [
            (n.creds_file.is_some(), "nats.creds_file", "nats.creds_file"),
            (
                n.user.is_some() || n.password.is_some(),
                "nats.user/password",
                "nats.user",
            ),
            (n.token.is_some(), "nats.token", "nats.token"),
            (n.nkey_seed.is_some(), "nats.nkey_seed", "nats.nkey_seed"),
        ]
        .into_iter()
        .filter_map(|(set, label, key)| set.then_some((label, key)))
        .collect();
        if let [_, (_, second), ..] = methods[..] {
            let labels: Vec<&str> = methods.iter().map(|(label, _)| *label).collect();
            self.error(
                second,
                format!(
                    "several NATS authentication methods are set ({}); keep only one",
                    labels.join(", ")
                ),
            );
        }
        n.tls_ca = self.file("nats.tls_ca");
        n.tls_cert = self.file("nats.tls_cert");
        n.tls_key = self.file("nats.tls_key");
        match (n.tls_cert.is_some(), n.tls_key.is_some()) {
            (true, false) if !self.failed("nats.tls_key") => {
                self.error(
                    "nats.tls_key",
                    "nats.tls_cert is set without its key; set NATS_KEY too",
                );
            }
            (false, true) if !self.failed("nats.tls_cert") => {
                self.error(
                    "nats.tls_cert",
                    "nats.tls_key is set without its certificate; set NATS_CERT too",
                );
            }
            _ => {}
        }
        if let Some(p) = self.get("nats.subject_prefix", |v| {
            let p = value::string(v)?;
            discord_bridge_schemas::subject::validate_prefix(&p)
                .map(|()| p)
                .map_err(|e| format!("subject prefix {e}; use the capsule id, e.g. astrid-discord"))
        }) {
            n.subject_prefix = p;
        }
        if let Some(mode) = self.get("nats.publish", |v| {
            match value::string(v)?.to_ascii_lowercase().as_str() {
                "jetstream" => Ok(PublishMode::JetStream),
                "core" => Ok(PublishMode::Core),
                other => Err(format!(
                    "{other:?} is not a publish mode; use jetstream or core"
                )),
            }
        }) {
            n.publish = mode;
        }
        if let Some(s) = self.get("nats.stream", |v| {
            let s = value::string(v)?;
            check_stream_name(&s).map(|()| s)
        }) {
            n.stream = s;
        }
        if let Some(events) = self.get("nats.raw_dispatch", |v| {
            value::list(v)?
                .into_iter()
                .map(|e| check_event_name(&e))
                .collect()
        }) {
            n.raw_dispatch = events;
        }
        if let Some(w) = self.number(
            "nats.duplicate_window_secs",
            MIN_DUPLICATE_WINDOW_SECS,
            "use at least 120 s so JetStream recognises Discord's replays after a RESUME",
        ) {
            n.duplicate_window = Duration::from_secs(w);
        }
        if let Some(age) = self.get("nats.stream_max_age_secs", value::unsigned) {
            n.stream_max_age = (age > 0).then(|| Duration::from_secs(age));
        }
        if let Some(bytes) = self.get("nats.stream_max_bytes", value::unsigned) {
            n.stream_max_bytes = (bytes > 0).then_some(bytes);
        }
        let positive = "use at least 1";
        if let Some(v) = self.size("nats.buffer_events", 1, positive) {
            n.buffer_events = v;
        }
        if let Some(v) = self.size("nats.buffer_bytes", 1, positive) {
            n.buffer_bytes = v;
        }
        if let Some(v) = self.size("nats.max_inflight", 1, positive) {
            n.max_inflight = v;
        }
        if let Some(ms) = self.number(
            "nats.ack_timeout_ms",
            1,
            "use at least 1 ms (the default is 5000)",
        ) {
            n.ack_timeout = Duration::from_millis(ms);
        }
        if let Some(s) = self.number("nats.stall_timeout_secs", 1, "use at least 1 s") {
            n.stall_timeout = Duration::from_secs(s);
        }
    }
}
