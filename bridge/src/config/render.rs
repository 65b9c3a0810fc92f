//! `check-config` output: every key, its effective value and where it came
//! from, as TOML an operator can read (and mostly paste back).
//!
//! Secrets print as `<redacted>` whatever their value, never their length;
//! credentials embedded in NATS URLs (`nats://user:pass@host`) are redacted
//! too, since a URL is not a secret key but may carry one.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::Config;
use super::keys::{KEYS, Key};
use super::load::{Loaded, Source};
use crate::secret::Secret;

/// A value as `check-config` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shown {
    Str(String),
    Int(u64),
    Bool(bool),
    List(Vec<String>),
    Redacted,
    Unset,
}

impl Shown {
    /// The value as it would be written in its environment variable; `None`
    /// when unset (or empty). Secrets are never returned.
    #[cfg(test)]
    pub(super) fn env_text(&self) -> Option<String> {
        match self {
            Self::Str(s) => Some(s.clone()),
            Self::Int(n) => Some(n.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::List(items) if !items.is_empty() => Some(items.join(",")),
            Self::List(_) | Self::Redacted | Self::Unset => None,
        }
    }

    fn toml(&self) -> Option<String> {
        match self {
            Self::Str(s) => Some(toml::Value::String(s.clone()).to_string()),
            Self::Int(n) => Some(n.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::List(items) => Some(
                toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
                    .to_string(),
            ),
            Self::Redacted => Some(toml::Value::String(Secret::REDACTED.to_owned()).to_string()),
            Self::Unset => None,
        }
    }
}

fn secret(s: Option<&Secret>) -> Shown {
    s.map_or(Shown::Unset, |_| Shown::Redacted)
}

fn text(s: Option<impl ToString>) -> Shown {
    s.map_or(Shown::Unset, |s| Shown::Str(s.to_string()))
}

fn millis(d: std::time::Duration) -> Shown {
    Shown::Int(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn int(n: usize) -> Shown {
    Shown::Int(u64::try_from(n).unwrap_or(u64::MAX))
}

/// The effective value of `key` in `config`; `None` for an unknown key.
pub(super) fn shown(config: &Config, key: &str) -> Option<Shown> {
    let d = &config.discord;
    let n = &config.nats;
    Some(match key {
        "discord.token" => secret(d.token.as_ref()),
        "discord.intents" => Shown::Int(d.intents.bits()),
        "discord.api_base" => Shown::Str(d.api_base.clone()),
        "discord.gateway_url" => text(d.gateway_url.as_ref()),
        "discord.allow_insecure_gateway" => Shown::Bool(d.allow_insecure_gateway),
        "discord.tls_ca" => text(d.tls_ca.as_ref().map(|p| p.display())),
        "discord.compression" => Shown::Str(d.compression.as_str().to_owned()),
        "discord.shards" => Shown::Str(d.shards.to_string()),
        "discord.max_frame_bytes" => int(d.max_frame_bytes),
        "discord.backoff_base_ms" => millis(d.backoff_base),
        "discord.backoff_max_ms" => millis(d.backoff_max),
        "discord.shard_lease_secs" => Shown::Int(d.shard_lease.as_secs()),
        "discord.session_start_reserve" => Shown::Int(u64::from(d.session_start_reserve)),
        "nats.url" => Shown::List(n.urls.iter().map(|u| redact_url(u).into_owned()).collect()),
        "nats.creds_file" => text(n.creds_file.as_ref().map(|p| p.display())),
        "nats.user" => text(n.user.as_ref()),
        "nats.password" => secret(n.password.as_ref()),
        "nats.token" => secret(n.token.as_ref()),
        "nats.nkey_seed" => secret(n.nkey_seed.as_ref()),
        "nats.tls_ca" => text(n.tls_ca.as_ref().map(|p| p.display())),
        "nats.tls_cert" => text(n.tls_cert.as_ref().map(|p| p.display())),
        "nats.tls_key" => text(n.tls_key.as_ref().map(|p| p.display())),
        "nats.subject_prefix" => Shown::Str(n.subject_prefix.clone()),
        "nats.publish" => Shown::Str(n.publish.as_str().to_owned()),
        "nats.stream" => Shown::Str(n.stream.clone()),
        "nats.raw_dispatch" => Shown::List(n.raw_dispatch.clone()),
        "nats.duplicate_window_secs" => Shown::Int(n.duplicate_window.as_secs()),
        "nats.stream_max_age_secs" => Shown::Int(n.stream_max_age.map_or(0, |a| a.as_secs())),
        "nats.stream_max_bytes" => Shown::Int(n.stream_max_bytes.unwrap_or(0)),
        "nats.stream_replicas" => int(n.stream_replicas),
        "nats.buffer_events" => int(n.buffer_events),
        "nats.buffer_bytes" => int(n.buffer_bytes),
        "nats.max_inflight" => int(n.max_inflight),
        "nats.ack_timeout_ms" => millis(n.ack_timeout),
        "nats.stall_timeout_secs" => Shown::Int(n.stall_timeout.as_secs()),
        "http.listen" => text(config.http.listen),
        "log.format" => Shown::Str(config.log.format.as_str().to_owned()),
        _ => return None,
    })
}

/// A URL with any `user:password@` or `token@` part replaced by
/// `<redacted>@`, for logs, errors and `check-config`.
#[must_use]
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://{}{}", Secret::REDACTED, &rest[at..])),
        None => Cow::Borrowed(url),
    }
}

/// The `check-config` report: every key with its effective value (secrets
/// redacted) and, as a trailing comment, where the value came from.
#[must_use]
pub fn render(loaded: &Loaded) -> String {
    let mut out = String::new();
    out.push_str("# discord-bridge effective configuration\n");
    match &loaded.file {
        Some(path) => {
            let _ = writeln!(out, "# configuration file: {}", path.display());
        }
        None => out.push_str("# configuration file: none\n"),
    }
    out.push_str("# above each key: what it does [its environment variable]\n");
    out.push_str("# after each value: where it came from; secrets are shown as \"<redacted>\"\n");
    let lines: Vec<(&Key, String, String)> = KEYS
        .iter()
        .map(|key| (key, assignment(loaded, key), comment(loaded, key)))
        .collect();
    let width = lines
        .iter()
        .map(|(_, a, _)| a.len())
        .max()
        .unwrap_or(0)
        .min(56);
    let mut table = "";
    for (key, assignment, comment) in lines {
        let t = key.split().0;
        if t != table {
            let _ = write!(out, "\n[{t}]\n");
            table = t;
        }
        let _ = writeln!(out, "# {} [{}]", key.description, key.env);
        let _ = writeln!(out, "{assignment:<width$}  # {comment}");
    }
    out
}

/// `name = value`, or `# name (unset)`, which keeps the report valid TOML.
fn assignment(loaded: &Loaded, key: &Key) -> String {
    let name = key.split().1;
    match shown(&loaded.config, key.key).and_then(|v| v.toml()) {
        Some(v) => format!("{name} = {v}"),
        None => format!("# {name} (unset)"),
    }
}

/// Where the value came from, plus what an operator needs next to it.
fn comment(loaded: &Loaded, key: &Key) -> String {
    let mut comment = loaded
        .source(key.key)
        .cloned()
        .unwrap_or(Source::Default)
        .to_string();
    if key.key == "discord.token" && loaded.config.discord.token.is_none() {
        comment.push_str("; required by `run`");
    }
    if key.key == "discord.intents" {
        let names = loaded.config.discord.intents.names();
        let names = if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(" | ")
        };
        let _ = write!(comment, "; {names}");
    }
    comment
}

impl Loaded {
    /// The `check-config` report; see [`render`].
    #[must_use]
    pub fn render(&self) -> String {
        render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("nats://alice:hunter2@nats.example:4222/x@y"),
            "nats://<redacted>@nats.example:4222/x@y"
        );
        assert_eq!(redact_url("tls://s3cr3t@host"), "tls://<redacted>@host");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn every_key_is_shown_and_the_table_defaults_match_config_default() {
        let config = Config::default();
        for key in KEYS {
            let shown =
                shown(&config, key.key).unwrap_or_else(|| panic!("{} not rendered", key.key));
            assert_eq!(
                shown.env_text(),
                key.default.map(str::to_owned),
                "{}",
                key.key
            );
        }
    }
}
