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

/// How the adapter knows that the capsule can take events, and so when a
/// publication on the bus counts as delivered. Every mode publishes through
/// the bus's reserved lane (`EventBus::reserve_publication`), which waits
/// for room in the queue of each capsule that handles the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryCheck {
    /// astridd's own signals: `astrid.v1.capsules_loaded` says whether the
    /// capsule ([`AdapterConfig::capsule_id`]) is loaded in some principal's
    /// view, `astrid.v1.health.failed` that it crashed. While it is absent,
    /// events are held unacked; after a reload, what was handed over within
    /// [`AdapterConfig::replay_window`] before it went away is delivered
    /// again. See the README's guarantees table.
    #[default]
    HostSignals,
    /// Only while a [`Listeners`](crate::Listeners) registration matching
    /// the topic lives through the whole commit (the registry is held
    /// during it); with none, events are held unacked. For hosts whose
    /// subscriptions take events as soon as they are registered (tests, the
    /// demo); astridd's gated capsule subscriptions are not such.
    RequireListener,
    /// As soon as the bus accepts the publication — the fire-and-forget
    /// behaviour of the original in-process proxy, which loses what is
    /// published while the capsule reloads.
    PublishOnly,
}

/// Everything the adapter needs besides a NATS client and an `EventBus`.
///
/// The defaults match the bridge's defaults, so
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
    /// The capsule's id in astridd's `astrid.v1.capsules_loaded` inventory
    /// and `astrid.v1.health.failed` reports; `None` means the prefix (the
    /// bridge's `BRIDGE_CAPSULE_ID` is the capsule id).
    pub capsule_id: Option<String>,
    /// With [`DeliveryCheck::HostSignals`]: how long before a capsule
    /// generation was seen to go away events handed to it may still have
    /// been unprocessed (queued, or waiting in the route of a capsule that
    /// polls). They are delivered again after the reload. At least the
    /// capsule's poll interval plus the time astridd takes to unload a
    /// generation (up to a second) — the Discord capsule polls every second.
    /// Costs up to `replay_window × event rate` duplicates per reload, each
    /// with its `payload.id`, so the capsule can drop them.
    pub replay_window: Duration,
    /// astridd's health-check period (10 s in 2026.10). A crash is reported
    /// up to this long after it happened, so a crash replays
    /// `health_check_interval + replay_window`.
    pub health_check_interval: Duration,
    /// After a crash report, how long to hold delivery before delivering
    /// again: astridd restarts the capsule right after the report but
    /// announces nothing when the new generation is up.
    pub restart_hold: Duration,
    /// Whether to consider the capsule loaded before astridd's first
    /// inventory arrives. Leave it off when the adapter is spawned before
    /// the kernel loads its capsules (it then sees the boot inventory);
    /// turn it on only when it is spawned after that and the capsule is
    /// known to be loaded.
    pub assume_loaded_at_start: bool,
    /// Acknowledge JetStream only when the capsule publishes
    /// `{prefix}.agent.ack` with the event's `payload.id` (`{"id": "…"}` or
    /// `{"ids": […]}`): exactly-once effect for a capsule that drops repeats.
    /// Off by default, which needs no capsule change.
    pub capsule_acks: bool,
    /// Relay the bridge's `{prefix}.gateway.status` (core NATS) onto the bus
    /// as IPC on the same topic, so the capsule can show connection health.
    pub relay_status: bool,
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
            delivery_check: DeliveryCheck::HostSignals,
            source_id: None,
            dedupe_window: 16_384,
            capsule_id: None,
            replay_window: Duration::from_secs(3),
            health_check_interval: Duration::from_secs(10),
            restart_hold: Duration::from_secs(2),
            assume_loaded_at_start: false,
            capsule_acks: false,
            relay_status: true,
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

    /// The capsule astridd's signals must name: `capsule_id`, else the
    /// prefix.
    #[must_use]
    pub fn capsule_id(&self) -> &str {
        self.capsule_id.as_deref().unwrap_or(&self.prefix)
    }

    /// `{prefix}.agent.ack`, where a capsule acknowledges finished events.
    #[must_use]
    pub fn ack_topic(&self) -> String {
        format!("{}.agent.ack", self.prefix)
    }

    /// `{prefix}.gateway.status`, relayed from NATS onto the bus.
    #[must_use]
    pub fn status_topic(&self) -> String {
        subject::gateway_status(&self.prefix)
    }

    /// How far back a crash report replays.
    #[must_use]
    pub fn crash_reach(&self) -> Duration {
        self.health_check_interval
            .saturating_add(self.replay_window)
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
        if self.capsule_id().is_empty() {
            return bad("capsule_id", "must not be empty".to_owned());
        }
        if self.capsule_acks && self.mode == Mode::Core {
            return bad(
                "capsule_acks",
                "needs JetStream: core NATS has nothing to acknowledge".to_owned(),
            );
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
        assert_eq!(c.capsule_id(), "astrid-discord");
        assert_eq!(c.ack_topic(), "astrid-discord.agent.ack");
        assert_eq!(c.status_topic(), "astrid-discord.gateway.status");
        assert_eq!(c.crash_reach(), Duration::from_secs(13));
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
        let cases: [(&str, Change); 9] = [
            ("prefix", |c| c.prefix = "a.*".into()),
            ("filter_subject", |c| c.filter_subject = Some("a..b".into())),
            ("stream", |c| c.stream = "A B".into()),
            ("durable_name", |c| c.durable_name = "x.y".into()),
            ("ack_wait", |c| c.ack_wait = Duration::from_millis(10)),
            ("max_ack_pending", |c| c.max_ack_pending = 0),
            ("dedupe_window", |c| c.dedupe_window = 0),
            ("capsule_id", |c| c.capsule_id = Some(String::new())),
            ("capsule_acks", |c| {
                c.capsule_acks = true;
                c.mode = Mode::Core;
            }),
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
