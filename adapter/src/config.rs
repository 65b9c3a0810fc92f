//! [`AdapterConfig`]: a plain struct with defaults that match the bridge's.

use std::time::Duration;

use discord_bridge_schemas::subject;
use uuid::Uuid;

use crate::error::AdapterError;

/// How events arrive from NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A durable JetStream consumer: at-least-once, acked after delivery,
    /// survives adapter restarts and capsule reloads, supports replay.
    #[default]
    JetStream,
    /// A plain core-NATS subscription, for servers without JetStream:
    /// **at most once**. Whatever is published while the adapter is not
    /// connected is lost; while no listener is subscribed, up to
    /// `max_ack_pending` events are held in memory and newer ones are
    /// dropped (counted in `Stats::dropped`); events held at shutdown are
    /// lost. No replay.
    Core,
}

/// When a publication on the bus counts as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryCheck {
    /// Only when a [`Listeners`](crate::Listeners) registration matching the
    /// topic lives through the whole `EventBus::publish` (the registry is
    /// held during it); with none, events are held unacked. This is the guarantee the adapter
    /// exists for; see the crate docs for why the bus alone cannot provide it.
    #[default]
    RequireListener,
    /// As soon as `EventBus::publish` returns, whoever is subscribed — the
    /// fire-and-forget behaviour of the original in-process proxy. Only for
    /// a daemon that cannot register its capsule's subscription yet: a
    /// capsule reload then loses the events published during it.
    PublishOnly,
}

/// Everything the adapter needs besides a NATS client and an `EventBus`.
///
/// The defaults match the bridge's defaults (DESIGN §3.1, §5), so
/// `AdapterConfig::default()` consumes what an unconfigured bridge publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterConfig {
    /// The subject prefix, i.e. the capsule id (`BRIDGE_CAPSULE_ID` on the
    /// bridge). Events are consumed from and emitted on
    /// `{prefix}.agent.events`.
    pub prefix: String,
    /// The JetStream stream the bridge writes (`BRIDGE_STREAM`).
    pub stream: String,
    /// The durable consumer's name. Two adapters with the same name share
    /// one position (and split the events between them); give each
    /// independent consumer its own name.
    pub durable_name: String,
    /// The consumer's filter subject; `None` means `{prefix}.agent.events`.
    pub filter_subject: Option<String>,
    /// How many delivered-but-unacked events the server lets this consumer
    /// have. While no listener is subscribed this is how many events the
    /// adapter holds in memory; after a crash (no clean shutdown) it bounds
    /// how many events come back after `ack_wait`, behind newer ones. `1`
    /// keeps strict order even then, at one round trip per event.
    pub max_ack_pending: usize,
    /// How long the server waits for an ack before redelivering. Held
    /// events are kept alive with in-progress acks every `ack_wait / 3`, so
    /// this only matters after a crash.
    pub ack_wait: Duration,
    /// JetStream (default) or core NATS.
    pub mode: Mode,
    /// When an emitted event counts as delivered.
    pub delivery_check: DeliveryCheck,
    /// The `source_id` of every emitted `IpcMessage`; `None` derives a
    /// stable id from the prefix (see [`AdapterConfig::source_id`]).
    pub source_id: Option<Uuid>,
    /// How many recently delivered events (stream sequences and
    /// `Nats-Msg-Id`s) are remembered to drop redeliveries and duplicates.
    pub dedupe_window: usize,
    /// At start, rewind a durable that still has unacked messages (left by
    /// an instance that crashed) to its ack floor, so they are delivered
    /// again at once and in order rather than after `ack_wait` behind newer
    /// events. Needs nats-server 2.14 (older servers: logged, no effect).
    /// Turn it off if several adapters share one durable name.
    pub reset_orphans_on_start: bool,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            prefix: subject::DEFAULT_PREFIX.to_owned(),
            stream: "ASTRID_DISCORD".to_owned(),
            durable_name: "astrid-discord-adapter".to_owned(),
            filter_subject: None,
            max_ack_pending: 256,
            ack_wait: Duration::from_secs(30),
            mode: Mode::JetStream,
            delivery_check: DeliveryCheck::RequireListener,
            source_id: None,
            dedupe_window: 16_384,
            reset_orphans_on_start: true,
        }
    }
}

/// Namespace of the derived source ids (a v5 UUID of the adapter's URL).
const SOURCE_NAMESPACE: &str = "https://github.com/astrid-runtime/discord-bridge/adapter/";

impl AdapterConfig {
    /// The EventBus topic: `{prefix}.agent.events`, the capsule's IPC topic.
    #[must_use]
    pub fn topic(&self) -> String {
        subject::agent_events(&self.prefix)
    }

    /// The NATS subject consumed: `filter_subject`, else the topic.
    #[must_use]
    pub fn subject(&self) -> String {
        self.filter_subject.clone().unwrap_or_else(|| self.topic())
    }

    /// The `source_id` stamped on emitted messages: the configured one, else
    /// a UUIDv5 of the prefix — the same across restarts and hosts, so a
    /// capsule or audit log can recognise the adapter's messages.
    #[must_use]
    pub fn source_id(&self) -> Uuid {
        self.source_id.unwrap_or_else(|| {
            let name = format!("{SOURCE_NAMESPACE}{}", self.prefix);
            Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
        })
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`AdapterError::Config`] naming the first unusable setting.
    pub fn validate(&self) -> Result<(), AdapterError> {
        let bad = |field: &str, why: String| Err(AdapterError::Config(format!("{field} {why}")));
        if let Err(e) = subject::validate_prefix(&self.prefix) {
            return bad("prefix", e.to_string());
        }
        if let Some(filter) = &self.filter_subject
            && (filter.is_empty() || filter.split('.').any(str::is_empty))
        {
            return bad("filter_subject", format!("{filter:?} is not a subject"));
        }
        if self.mode == Mode::JetStream {
            if !valid_name(&self.stream) {
                return bad(
                    "stream",
                    format!("{:?} is not a JetStream name", self.stream),
                );
            }
            if !valid_name(&self.durable_name) {
                return bad(
                    "durable_name",
                    format!("{:?} is not a JetStream name", self.durable_name),
                );
            }
            if self.ack_wait < Duration::from_millis(300) {
                return bad("ack_wait", format!("{:?} is below 300ms", self.ack_wait));
            }
        }
        if self.max_ack_pending == 0 || i64::try_from(self.max_ack_pending).is_err() {
            return bad("max_ack_pending", "must be at least 1".to_owned());
        }
        if self.dedupe_window == 0 {
            return bad("dedupe_window", "must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// JetStream stream and consumer names: non-empty, no whitespace, `.`, `*`,
/// `>`, path separators or control characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_bridge() {
        let c = AdapterConfig::default();
        assert_eq!(c.topic(), "astrid-discord.agent.events");
        assert_eq!(c.subject(), c.topic());
        assert_eq!(c.stream, "ASTRID_DISCORD");
        assert_eq!(c.durable_name, "astrid-discord-adapter");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn source_id_is_stable_per_prefix() {
        let a = AdapterConfig::default();
        assert_eq!(a.source_id(), AdapterConfig::default().source_id());
        let b = AdapterConfig {
            prefix: "other-bot".into(),
            ..AdapterConfig::default()
        };
        assert_ne!(a.source_id(), b.source_id());
        let fixed = Uuid::from_u128(7);
        let c = AdapterConfig {
            source_id: Some(fixed),
            ..AdapterConfig::default()
        };
        assert_eq!(c.source_id(), fixed);
    }

    #[test]
    fn every_bad_setting_is_named() {
        type Change = fn(&mut AdapterConfig);
        let cases: [(&str, Change); 7] = [
            ("prefix", |c| c.prefix = "a.*".into()),
            ("filter_subject", |c| c.filter_subject = Some("a..b".into())),
            ("stream", |c| c.stream = "A B".into()),
            ("durable_name", |c| c.durable_name = "x.y".into()),
            ("ack_wait", |c| c.ack_wait = Duration::from_millis(10)),
            ("max_ack_pending", |c| c.max_ack_pending = 0),
            ("dedupe_window", |c| c.dedupe_window = 0),
        ];
        for (field, change) in cases {
            let mut c = AdapterConfig::default();
            change(&mut c);
            let err = c.validate().expect_err(field).to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn core_mode_ignores_jetstream_names() {
        let c = AdapterConfig {
            mode: Mode::Core,
            stream: String::new(),
            durable_name: String::new(),
            ..AdapterConfig::default()
        };
        assert!(c.validate().is_ok());
    }
}
