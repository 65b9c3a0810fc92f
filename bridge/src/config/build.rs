//! From merged raw values to a typed [`Config`], collecting every problem.
//!
//! Each key is parsed on its own, so one bad value never hides another; the
//! rules that involve several keys (user and password, backoff base and max,
//! the gateway URL and `allow_insecure_gateway`) run only on values that
//! parsed, so one mistake is reported once.
//!
//! Nothing here knows a default: a key that is unset everywhere takes the
//! key table's default as its raw value (see [`super::load`]), and
//! [`Config::default`] is this builder run on those defaults alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::gateway_url::check_gateway_url;
use super::keys;
use super::load::{Setting, Source};
use super::render::redact_url;
use super::rules::{
    MAX_SUBJECT_PREFIX, check_event_name, check_nats_url, check_stream_name, check_token,
    check_user_seed,
};
use super::value;
use super::{
    Config, ConfigError, DiscordConfig, HttpConfig, LogConfig, LogFormat, NatsConfig, PublishMode,
};
use crate::codec::Compression;
use crate::gateway::ShardSpec;
use crate::secret::Secret;

/// Smallest accepted `discord.max_frame_bytes`: a GUILD_CREATE of a small
/// guild already needs tens of KiB.
pub(super) const MIN_FRAME_BYTES: u64 = 64 * 1024;

/// Largest accepted `discord.max_frame_bytes`: 1 GiB. The WebSocket layer
/// lets messages of 4 × the cap through, and a decompression context may
/// inflate 8 × the cap per message (`codec::ceiling`); past this that is
/// more memory and CPU than one payload can be worth.
pub(super) const MAX_FRAME_BYTES: u64 = 1 << 30;

/// Smallest accepted duplicate window: Discord replays at most what it holds
/// for a RESUME, and JetStream must recognise those replays.
pub(super) const MIN_DUPLICATE_WINDOW_SECS: u64 = 120;

/// Upper bounds of the other numeric keys. Durations end up added to clock
/// readings (`Instant + Duration` panics on overflow) or sent to NATS as
/// nanoseconds in an `i64`; counts and sizes bound memory. Each bound is far
/// beyond any sensible setting, so only a typo or a unit mistake meets it.
pub(super) mod bounds {
    /// One hour, in milliseconds: backoff steps and the JetStream ack timeout.
    pub(crate) const HOUR_MS: u64 = 3_600_000;
    /// One hour, in seconds: the shard lease.
    pub(crate) const HOUR_SECS: u64 = 3_600;
    /// One day, in seconds: the duplicate window and the stall timeout.
    pub(crate) const DAY_SECS: u64 = 86_400;
    /// Ten years, in seconds: the stream's max age.
    pub(crate) const TEN_YEARS_SECS: u64 = 315_360_000;
    /// The stream's max bytes: what JetStream's signed 64-bit field holds.
    pub(crate) const STREAM_BYTES: u64 = i64::MAX as u64;
    /// Events buffered per shard.
    pub(crate) const BUFFER_EVENTS: u64 = 10_000_000;
    /// Bytes buffered per shard: 64 GiB.
    pub(crate) const BUFFER_BYTES: u64 = 64 << 30;
    /// Unacknowledged JetStream publishes per shard.
    pub(crate) const MAX_INFLIGHT: u64 = 65_536;
    /// Session starts kept in reserve (Discord grants at most a few
    /// thousand a day, even to the largest bots).
    pub(crate) const SESSION_START_RESERVE: u64 = 1_000_000;
}

pub(super) struct Builder<'a> {
    settings: &'a [Setting],
    base_dir: &'a Path,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Builder<'a> {
    pub(super) const fn new(
        settings: &'a [Setting],
        base_dir: &'a Path,
        errors: &'a mut Vec<ConfigError>,
    ) -> Self {
        Self {
            settings,
            base_dir,
            errors,
        }
    }

    /// The configuration, or `None` when a value is invalid; every problem
    /// is in the error list by then (a `None` always comes with an error).
    pub(super) fn build(&mut self, require_token: bool) -> Option<Config> {
        let discord = self.discord(require_token);
        let nats = self.nats();
        let http = self.http();
        let log = self.log();
        Some(Config {
            discord: discord?,
            nats: nats?,
            http: http?,
            log: log?,
        })
    }

    fn http(&mut self) -> Option<HttpConfig> {
        let text = self.get("http.listen", value::optional_string);
        if self.failed("http.listen") {
            return None;
        }
        let listen = match text.flatten() {
            None => None,
            Some(text) => match parse_listen(&text) {
                Ok(addr) => Some(addr),
                Err(message) => {
                    self.error("http.listen", message);
                    return None;
                }
            },
        };
        Some(HttpConfig { listen })
    }

    fn log(&mut self) -> Option<LogConfig> {
        let format = self.required("log.format", |v| {
            let text = value::string(v)?;
            text.parse::<LogFormat>().map_err(|e| e.to_string())
        });
        Some(LogConfig { format: format? })
    }

    fn setting(&self, key: &str) -> Option<&'a Setting> {
        self.settings.iter().find(|s| s.key.key == key)
    }

    /// Records a problem with `key`, saying where its value came from when
    /// that was the file (the environment variable is in every message).
    fn error(&mut self, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        let env = keys::by_key(key).map_or("", |k| k.env);
        if let Some(Source::File(path)) = self.setting(key).map(|s| &s.source) {
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
        let value = self.setting(key)?.value.as_ref()?;
        match value::check_size(value).and_then(|()| parse(value)) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    /// Like [`Self::get`] for a key the configuration cannot do without; the
    /// key table gives each of them a default, so "unset" is only possible
    /// if the table lost one, and is reported rather than papered over.
    fn required<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        if self.setting(key).is_some_and(|s| s.value.is_some()) {
            self.get(key, parse)
        } else {
            self.error(key, "has no value and no default");
            None
        }
    }

    /// A whole number in `min..=max`; `why` says what to use instead when
    /// the value is too small, and the bound is quoted when it is too large.
    fn number(&mut self, key: &str, (min, max): (u64, u64), why: &str) -> Option<u64> {
        let n = self.required(key, value::unsigned)?;
        if n < min {
            self.error(key, format!("{n} is too small: {why}"));
            return None;
        }
        if n > max {
            self.error(
                key,
                format!(
                    "{n} is too large: use at most {max} (the default is {})",
                    default_of(key)
                ),
            );
            return None;
        }
        Some(n)
    }

    fn size(&mut self, key: &str, range: (u64, u64), why: &str) -> Option<usize> {
        let n = self.number(key, range, why)?;
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

    /// A CA file (PEM) that holds at least one certificate: a file the TLS
    /// client would refuse at the first connection is a setting to fix now.
    fn ca_file(&mut self, key: &str) -> Option<PathBuf> {
        let path = self.file(key)?;
        match crate::tls::read_ca_file(&self.base_dir.join(&path)) {
            Ok(_) => Some(path),
            Err(e) => {
                self.error(key, format!("{e}; give a PEM file of CA certificates"));
                None
            }
        }
    }

    fn discord(&mut self, require_token: bool) -> Option<DiscordConfig> {
        let raw_token = self.get("discord.token", value::optional_string).flatten();
        let token = match raw_token.map(|t| check_token(&t).map(|()| Secret::new(t))) {
            Some(Ok(t)) => Some(t),
            Some(Err(message)) => {
                self.error("discord.token", message);
                None
            }
            None => {
                if require_token && !self.failed("discord.token") {
                    self.error(
                        "discord.token",
                        "missing: set DISCORD_BOT_TOKEN (or discord.token) to your bot token \
                         (Developer Portal > your application > Bot > Reset Token)",
                    );
                }
                None
            }
        };
        let intents = self.required("discord.intents", value::intents);
        let api_base = self.required("discord.api_base", |v| {
            let base = value::string(v)?;
            let lower = base.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            if rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
                Ok(base.trim_end_matches('/').to_owned())
            } else {
                Err(format!(
                    "{base:?} is not an http:// or https:// URL; the default is {}",
                    default_of("discord.api_base")
                ))
            }
        });
        let allow_insecure_gateway =
            self.required("discord.allow_insecure_gateway", value::boolean);
        let gateway_url = self
            .get("discord.gateway_url", value::optional_string)
            .flatten()
            .and_then(|url| {
                // An invalid allow_insecure_gateway is reported on its own;
                // the URL is then judged by the strict rule.
                match check_gateway_url(&url, allow_insecure_gateway.unwrap_or(false)) {
                    Ok(()) => Some(url),
                    Err(reason) => {
                        self.error(
                            "discord.gateway_url",
                            format!(
                                "{reason}; use wss://gateway.discord.gg or leave it unset to ask Discord \
                                 (discord.allow_insecure_gateway / DISCORD_ALLOW_INSECURE_GATEWAY is for the simulator and tests only)"
                            ),
                        );
                        None
                    }
                }
            });
        let tls_ca = self.ca_file("discord.tls_ca");
        let compression = self.required("discord.compression", |v| {
            value::string(v)?
                .parse::<Compression>()
                .map_err(|e| e.to_string())
        });
        let shards = self.required("discord.shards", |v| {
            ShardSpec::parse(&value::string(v)?).map_err(|e| e.to_string())
        });
        let max_frame_bytes = self.size(
            "discord.max_frame_bytes",
            (MIN_FRAME_BYTES, MAX_FRAME_BYTES),
            &format!(
                "use at least {MIN_FRAME_BYTES} ({} KiB); Discord's payloads routinely exceed smaller caps",
                MIN_FRAME_BYTES / 1024
            ),
        );
        let base = self.number(
            "discord.backoff_base_ms",
            (1, bounds::HOUR_MS),
            &format!(
                "use at least 1 ms (the default is {})",
                default_of("discord.backoff_base_ms")
            ),
        );
        let max = self.number(
            "discord.backoff_max_ms",
            (1, bounds::HOUR_MS),
            &format!(
                "use at least 1 ms (the default is {})",
                default_of("discord.backoff_max_ms")
            ),
        );
        let (backoff_base, backoff_max) = match (base, max) {
            (Some(base), Some(max)) if base > max => {
                self.error(
                    "discord.backoff_base_ms",
                    format!("{base} ms is larger than discord.backoff_max_ms ({max} ms); lower it or raise the max"),
                );
                (None, None)
            }
            (base, max) => (
                base.map(Duration::from_millis),
                max.map(Duration::from_millis),
            ),
        };
        let shard_lease = self
            .number(
                "discord.shard_lease_secs",
                (2, bounds::HOUR_SECS),
                "use at least 2 (a lease is renewed three times per period)",
            )
            .map(Duration::from_secs);
        let reserve = self.number(
            "discord.session_start_reserve",
            (0, bounds::SESSION_START_RESERVE),
            "",
        );
        // Within u32 by the bound above.
        let session_start_reserve = reserve.and_then(|n| u32::try_from(n).ok());
        Some(DiscordConfig {
            token,
            intents: intents?,
            api_base: api_base?,
            gateway_url,
            allow_insecure_gateway: allow_insecure_gateway?,
            tls_ca,
            compression: compression?,
            shards: shards?,
            max_frame_bytes: max_frame_bytes?,
            backoff_base: backoff_base?,
            backoff_max: backoff_max?,
            shard_lease: shard_lease?,
            session_start_reserve: session_start_reserve?,
        })
    }

    fn failed(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }

    fn nats(&mut self) -> Option<NatsConfig> {
        let urls = self.required("nats.url", value::list).and_then(|urls| {
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
                None
            } else if !bad.is_empty() {
                self.error("nats.url", bad.join("; "));
                None
            } else if mixes_websocket(&urls) {
                // async-nats refuses such a server pool when it connects.
                self.error(
                    "nats.url",
                    "mixes WebSocket (ws://, wss://) and NATS (nats://, tls://) URLs; a client \
                     uses one transport: list the servers' URLs of one kind",
                );
                None
            } else {
                Some(urls)
            }
        });
        let creds_file = self.file("nats.creds_file");
        let user = self.get("nats.user", value::optional_string).flatten();
        let password = self.secret("nats.password");
        let token = self.secret("nats.token");
        let nkey_seed =
            self.secret("nats.nkey_seed")
                .and_then(|seed| match check_user_seed(seed.expose()) {
                    Ok(()) => Some(seed),
                    Err(e) => {
                        self.error("nats.nkey_seed", e.to_string());
                        None
                    }
                });
        match (user.is_some(), password.is_some()) {
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
            (creds_file.is_some(), "nats.creds_file", "nats.creds_file"),
            (
                user.is_some() || password.is_some(),
                "nats.user/password",
                "nats.user",
            ),
            (token.is_some(), "nats.token", "nats.token"),
            (nkey_seed.is_some(), "nats.nkey_seed", "nats.nkey_seed"),
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
        let tls_ca = self.ca_file("nats.tls_ca");
        let tls_cert = self.file("nats.tls_cert");
        let tls_key = self.file("nats.tls_key");
        match (tls_cert.is_some(), tls_key.is_some()) {
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
        let subject_prefix = self.required("nats.subject_prefix", |v| {
            let p = value::string(v)?;
            if p.len() > MAX_SUBJECT_PREFIX {
                return Err(format!(
                    "is {} bytes long; a subject prefix may have at most {MAX_SUBJECT_PREFIX}",
                    p.len()
                ));
            }
            discord_bridge_schemas::subject::validate_prefix(&p)
                .map(|()| p)
                .map_err(|e| {
                    format!(
                        "subject prefix {e}; use the capsule id, e.g. {}",
                        default_of("nats.subject_prefix")
                    )
                })
        });
        let publish = self.required("nats.publish", |v| {
            match value::string(v)?.to_ascii_lowercase().as_str() {
                "jetstream" => Ok(PublishMode::JetStream),
                "core" => Ok(PublishMode::Core),
                other => Err(format!(
                    "{other:?} is not a publish mode; use jetstream or core"
                )),
            }
        });
        let stream = self.required("nats.stream", |v| {
            let s = value::string(v)?;
            check_stream_name(&s).map(|()| s)
        });
        // Unset (the table's default) is the empty list.
        let raw_dispatch = self
            .get("nats.raw_dispatch", |v| {
                value::list(v)?
                    .into_iter()
                    .map(|e| check_event_name(&e))
                    .collect()
            })
            .or_else(|| (!self.failed("nats.raw_dispatch")).then(Vec::new));
        let duplicate_window = self
            .number(
                "nats.duplicate_window_secs",
                (MIN_DUPLICATE_WINDOW_SECS, bounds::DAY_SECS),
                &format!(
                    "use at least {MIN_DUPLICATE_WINDOW_SECS} s so JetStream recognises Discord's replays after a RESUME"
                ),
            )
            .map(Duration::from_secs);
        // 0 means "no limit" for both.
        let stream_max_age = self
            .number("nats.stream_max_age_secs", (0, bounds::TEN_YEARS_SECS), "")
            .map(|age| (age > 0).then(|| Duration::from_secs(age)));
        let stream_max_bytes = self
            .number("nats.stream_max_bytes", (0, bounds::STREAM_BYTES), "")
            .map(|bytes| (bytes > 0).then_some(bytes));
        // JetStream refuses a stream whose duplicate window is longer than
        // its max age.
        if let (Some(window), Some(Some(age))) = (duplicate_window, stream_max_age)
            && window > age
        {
            self.error(
                "nats.duplicate_window_secs",
                format!(
                    "{} s is longer than nats.stream_max_age_secs ({} s); JetStream refuses such a stream: \
                     shorten the window or keep events longer",
                    window.as_secs(),
                    age.as_secs()
                ),
            );
        }
        let positive = "use at least 1";
        let stream_replicas = self.size("nats.stream_replicas", (1, 5), "use 1, 3 or 5");
        let stream_replicas = stream_replicas.and_then(|r| {
            if matches!(r, 1 | 3 | 5) {
                Some(r)
            } else {
                self.error(
                    "nats.stream_replicas",
                    format!("{r} is not a JetStream replica count: use 1, 3 or 5 (at most the cluster's size)"),
                );
                None
            }
        });
        let buffer_events = self.size("nats.buffer_events", (1, bounds::BUFFER_EVENTS), positive);
        let buffer_bytes = self.size("nats.buffer_bytes", (1, bounds::BUFFER_BYTES), positive);
        let max_inflight = self.size("nats.max_inflight", (1, bounds::MAX_INFLIGHT), positive);
        let ack_timeout = self
            .number(
                "nats.ack_timeout_ms",
                (1, bounds::HOUR_MS),
                &format!(
                    "use at least 1 ms (the default is {})",
                    default_of("nats.ack_timeout_ms")
                ),
            )
            .map(Duration::from_millis);
        let stall_timeout = self
            .number(
                "nats.stall_timeout_secs",
                (1, bounds::DAY_SECS),
                "use at least 1 s",
            )
            .map(Duration::from_secs);
        Some(NatsConfig {
            urls: urls?,
            creds_file,
            user,
            password,
            token,
            nkey_seed,
            tls_ca,
            tls_cert,
            tls_key,
            subject_prefix: subject_prefix?,
            publish: publish?,
            stream: stream?,
            raw_dispatch: raw_dispatch?,
            duplicate_window: duplicate_window?,
            stream_max_age: stream_max_age?,
            stream_max_bytes: stream_max_bytes?,
            stream_replicas: stream_replicas?,
            buffer_events: buffer_events?,
            buffer_bytes: buffer_bytes?,
            max_inflight: max_inflight?,
            ack_timeout: ack_timeout?,
            stall_timeout: stall_timeout?,
        })
    }
}

/// Whether `urls` holds both WebSocket and plain NATS URLs.
fn mixes_websocket(urls: &[String]) -> bool {
    let websocket = |u: &String| {
        let scheme = u.split_once("://").map_or("", |(s, _)| s);
        scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("wss")
    };
    urls.iter().any(websocket) && !urls.iter().all(websocket)
}

/// An `http.listen` value: `IP:PORT` (`[IPv6]:PORT` for IPv6). Host names
/// are refused rather than resolved: a listener binds an interface, and a
/// name that resolves differently later would move it silently.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint = if text.parse::<std::net::IpAddr>().is_ok() {
        format!("add a port, e.g. {text}:9090")
    } else if let Some(port) = text.strip_prefix(':') {
        format!("name the interface too, e.g. 0.0.0.0:{port} (every interface) or 127.0.0.1:{port}")
    } else if let Some((host, port)) = text.rsplit_once(':')
        && port.parse::<u16>().is_ok()
        && !host.is_empty()
    {
        format!("use an IP address, not a host name, e.g. 0.0.0.0:{port} or 127.0.0.1:{port}")
    } else {
        "use IP:PORT, e.g. 0.0.0.0:9090 (every interface) or 127.0.0.1:9090 (this host only)"
            .to_owned()
    };
    Err(format!("{text:?} is not an address to listen on: {hint}"))
}

/// The key table's default of `key`, for messages that quote it.
fn default_of(key: &str) -> &'static str {
    keys::by_key(key).and_then(|k| k.default).unwrap_or("unset")
}
