//! What astridd says about the capsule, and what the adapter makes of it.
//!
//! astridd 2026.10 publishes, with an ordinary `EventBus::publish`:
//!
//! * `astrid.v1.capsules_loaded` (`RawJson`, one per principal view, stamped
//!   with that principal): `{"status":"ready","capsules":[{"principal",
//!   "name","source_id","meta"}]}`. It follows a boot load, a load, a
//!   `reload_one_capsule` (fresh load or atomic restart) and an unload —
//!   always *after* the change: a loaded generation's routes are already
//!   open, an unloaded one is already gone. `source_id` is derived from the
//!   capsule id and artifact, so an atomic restart of the same code leaves
//!   the inventory unchanged.
//! * `astrid.v1.health.failed` (`{"capsule_id","principal","reason"}`),
//!   from the health monitor, up to one check period after a crash; the
//!   kernel then restarts the capsule atomically and announces nothing.
//!
//! Nothing announces that an unload or restart is about to start, so events
//! handed over shortly before a generation went away may be lost in it; the
//! [`HostView`] turns every such signal into a replay request reaching back
//! far enough to cover them.

use std::collections::HashMap;

use astrid_events::{AstridEvent, IpcPayload};
use serde_json::Value;
use tokio::time::{Duration, Instant};

use crate::config::{AdapterConfig, DeliveryCheck};

/// The inventory topic astridd republishes after every load or unload.
pub const CAPSULES_LOADED_TOPIC: &str = "astrid.v1.capsules_loaded";
/// The topic of astridd's health monitor's crash reports.
pub const HEALTH_FAILED_TOPIC: &str = "astrid.v1.health.failed";

/// One thing the host said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signal {
    /// One principal view's inventory: whether it holds the capsule.
    Inventory { principal: String, present: bool },
    /// The capsule crashed (health check failed).
    Failed,
    /// Signals were lost (the receiver lagged): anything may have happened.
    Lost,
    /// The listener registry changed; `present` is whether a lease matches.
    Listeners { present: bool },
}

/// The JSON of an IPC payload that carries JSON.
fn json_of(event: &AstridEvent) -> Option<(&str, Option<&str>, &Value)> {
    let AstridEvent::Ipc { message, .. } = event else {
        return None;
    };
    let data = match &message.payload {
        IpcPayload::RawJson(v) | IpcPayload::Custom { data: v } => v,
        _ => return None,
    };
    Some((message.topic.as_str(), message.principal.as_deref(), data))
}

/// Reads a host event; `None` for anything that is not about `capsule`.
pub(crate) fn parse(event: &AstridEvent, capsule: &str) -> Option<Signal> {
    let (topic, stamped, data) = json_of(event)?;
    match topic {
        CAPSULES_LOADED_TOPIC => {
            let entries = data.get("capsules").and_then(Value::as_array);
            let present = entries.is_some_and(|list| {
                list.iter()
                    .any(|c| c.get("name").and_then(Value::as_str) == Some(capsule))
            });
            // The message is stamped with its view's principal; the entries
            // repeat it. An empty inventory still names its view.
            let principal = stamped
                .map(str::to_owned)
                .or_else(|| {
                    entries
                        .and_then(|l| l.first())
                        .and_then(|c| c.get("principal"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            Some(Signal::Inventory { principal, present })
        }
        HEALTH_FAILED_TOPIC => (data.get("capsule_id").and_then(Value::as_str) == Some(capsule))
            .then_some(Signal::Failed),
        _ => None,
    }
}

/// Reads a capsule's `{prefix}.agent.ack`: `{"id": "…"}` or `{"ids": […]}`.
pub(crate) fn parse_ack(event: &AstridEvent) -> Vec<String> {
    let Some((_, _, data)) = json_of(event) else {
        return Vec::new();
    };
    let one = data.get("id").and_then(Value::as_str).map(str::to_owned);
    let many = data
        .get("ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned));
    one.into_iter().chain(many).collect()
}

/// Whether events may be handed to the capsule now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// No inventory seen yet.
    Unknown,
    Present,
    /// Gone since this instant.
    Absent(Instant),
}

/// The adapter's view of the target capsule, from the host's signals.
#[derive(Debug)]
pub(crate) struct HostView {
    check: DeliveryCheck,
    views: HashMap<String, bool>,
    presence: Presence,
    /// A crash was reported: hold until then.
    hold_until: Option<Instant>,
    /// Events handed over at or after this instant must be delivered again.
    replay_since: Option<Instant>,
    window: Duration,
    crash_reach: Duration,
    restart_hold: Duration,
}

impl HostView {
    pub(crate) fn new(cfg: &AdapterConfig, listening: bool) -> Self {
        let presence = match cfg.delivery_check {
            DeliveryCheck::PublishOnly => Presence::Present,
            DeliveryCheck::RequireListener if listening => Presence::Present,
            DeliveryCheck::HostSignals if cfg.assume_loaded_at_start => Presence::Present,
            _ => Presence::Unknown,
        };
        Self {
            check: cfg.delivery_check,
            views: HashMap::new(),
            presence,
            hold_until: None,
            replay_since: None,
            window: cfg.replay_window,
            crash_reach: cfg.crash_reach(),
            restart_hold: cfg.restart_hold,
        }
    }

    /// Whether the capsule can take events at `now`.
    pub(crate) fn may_deliver(&self, now: Instant) -> bool {
        self.presence == Presence::Present && self.hold_until.is_none_or(|t| now >= t)
    }

    /// When a hold ends by itself.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.hold_until
    }

    /// Ends an expired hold; returns whether one ended.
    pub(crate) fn expire_hold(&mut self, now: Instant) -> bool {
        if self.hold_until.is_some_and(|t| now >= t) {
            self.hold_until = None;
            return true;
        }
        false
    }

    /// A pending replay, to start once delivery may go on: events handed
    /// over at or after the returned instant go again.
    pub(crate) fn take_replay(&mut self, now: Instant) -> Option<Instant> {
        if self.may_deliver(now) {
            self.replay_since.take()
        } else {
            None
        }
    }

    fn request_replay(&mut self, since: Instant) {
        self.replay_since = Some(self.replay_since.map_or(since, |s| s.min(since)));
    }

    /// Applies a signal; returns whether the delivery decision may have
    /// changed (so a pending attempt must be reconsidered).
    pub(crate) fn apply(&mut self, signal: Signal, now: Instant) -> bool {
        let before = (self.presence, self.hold_until);
        match signal {
            Signal::Inventory { principal, present } => {
                if self.check != DeliveryCheck::HostSignals {
                    return false;
                }
                self.views.insert(principal, present);
                let anywhere = self.views.values().any(|p| *p);
                // Another view's inventory without the capsule says nothing
                // about the generation that serves ours.
                if present || !anywhere {
                    self.set_presence(anywhere, now, true);
                }
            }
            Signal::Listeners { present } => {
                if self.check != DeliveryCheck::RequireListener {
                    return false;
                }
                // A lease stands for a subscription that held every event
                // committed while it lived: nothing to deliver again.
                self.set_presence(present, now, false);
            }
            Signal::Failed => {
                if self.check != DeliveryCheck::HostSignals {
                    return false;
                }
                tracing::warn!(hold = ?self.restart_hold, reach = ?self.crash_reach, "astridd reports the capsule crashed; holding, then delivering again what it may have lost");
                self.hold_until = Some(now + self.restart_hold);
                self.request_replay(now.checked_sub(self.crash_reach).unwrap_or(now));
            }
            Signal::Lost => {
                if self.check != DeliveryCheck::HostSignals {
                    return false;
                }
                tracing::warn!(
                    "missed some of astridd's signals; delivering the replay window again"
                );
                self.request_replay(now.checked_sub(self.window).unwrap_or(now));
            }
        }
        before != (self.presence, self.hold_until)
    }

    fn set_presence(&mut self, present: bool, now: Instant, replay: bool) {
        let back = |t: Instant| t.checked_sub(self.window).unwrap_or(t);
        match (self.presence, present) {
            (Presence::Absent(since), true) => {
                tracing::info!("the capsule is back; delivering held events");
                self.presence = Presence::Present;
                if replay {
                    self.request_replay(back(since));
                }
            }
            (Presence::Unknown, true) => self.presence = Presence::Present,
            // A new inventory that still holds the capsule may follow an
            // atomic restart, which is otherwise invisible.
            (Presence::Present, true) if replay => self.request_replay(back(now)),
            (Presence::Present, true) => {}
            (Presence::Present | Presence::Unknown, false) => {
                tracing::info!("the capsule is not loaded; holding events unacked");
                self.presence = Presence::Absent(now);
            }
            (Presence::Absent(_), false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use astrid_events::{EventMetadata, IpcMessage, ipc::Topic};
    use serde_json::json;
    use uuid::Uuid;

    fn ipc(topic: &str, payload: IpcPayload, principal: Option<&str>) -> AstridEvent {
        let mut message = IpcMessage::new(Topic::from_raw(topic), payload, Uuid::nil());
        message.principal = principal.map(str::to_owned);
        AstridEvent::Ipc {
            metadata: EventMetadata::new("kernel"),
            message,
        }
    }

    fn inventory(principal: &str, names: &[&str]) -> AstridEvent {
        let capsules: Vec<Value> = names
            .iter()
            .map(|n| json!({"principal": principal, "name": n, "source_id": null, "meta": null}))
            .collect();
        ipc(
            CAPSULES_LOADED_TOPIC,
            IpcPayload::RawJson(json!({"status": "ready", "capsules": capsules})),
            Some(principal),
        )
    }

    fn cfg() -> AdapterConfig {
        AdapterConfig {
            replay_window: Duration::from_secs(3),
            health_check_interval: Duration::from_secs(10),
            restart_hold: Duration::from_secs(2),
            ..AdapterConfig::default()
        }
    }

    #[test]
    fn reads_the_kernels_signals() {
        let loaded = inventory("default", &["cli", "astrid-discord"]);
        assert_eq!(
            parse(&loaded, "astrid-discord"),
            Some(Signal::Inventory {
                principal: "default".into(),
                present: true
            })
        );
        assert_eq!(
            parse(&inventory("bob", &[]), "astrid-discord"),
            Some(Signal::Inventory {
                principal: "bob".into(),
                present: false
            })
        );
        let failed = |id: &str| {
            ipc(
                HEALTH_FAILED_TOPIC,
                IpcPayload::Custom {
                    data: json!({"capsule_id": id, "principal": "default", "reason": "x"}),
                },
                None,
            )
        };
        assert_eq!(
            parse(&failed("astrid-discord"), "astrid-discord"),
            Some(Signal::Failed)
        );
        assert_eq!(parse(&failed("other"), "astrid-discord"), None);
        let ack = ipc(
            "astrid-discord.agent.ack",
            IpcPayload::Custom {
                data: json!({"id": "1", "ids": ["2", 3]}),
            },
            None,
        );
        assert_eq!(parse_ack(&ack), ["1", "2"]);
    }

    #[test]
    fn holds_while_absent_and_replays_the_window_before_it_went() {
        let t0 = Instant::now();
        let mut v = HostView::new(&cfg(), false);
        assert!(!v.may_deliver(t0), "nothing before the first inventory");
        v.apply(
            Signal::Inventory {
                principal: "default".into(),
                present: true,
            },
            t0,
        );
        assert!(v.may_deliver(t0));
        assert_eq!(v.take_replay(t0), None, "a first load replays nothing");

        let gone = t0 + Duration::from_secs(10);
        assert!(v.apply(
            Signal::Inventory {
                principal: "default".into(),
                present: false
            },
            gone
        ));
        assert!(!v.may_deliver(gone));
        // Another principal's view without the capsule changes nothing.
        v.apply(
            Signal::Inventory {
                principal: "bob".into(),
                present: false,
            },
            gone,
        );
        let back = gone + Duration::from_millis(200);
        assert_eq!(v.take_replay(back), None, "nothing while absent");
        v.apply(
            Signal::Inventory {
                principal: "default".into(),
                present: true,
            },
            back,
        );
        assert_eq!(v.take_replay(back), Some(gone - Duration::from_secs(3)));
        assert_eq!(v.take_replay(back), None, "once");
    }

    #[test]
    fn a_repeated_inventory_may_be_an_atomic_restart() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut v = HostView::new(&cfg(), false);
        v.apply(
            Signal::Inventory {
                principal: "default".into(),
                present: true,
            },
            t0,
        );
        let bob = Signal::Inventory {
            principal: "bob".into(),
            present: false,
        };
        v.apply(bob, t0);
        assert_eq!(
            v.take_replay(t0),
            None,
            "another view's inventory is no restart"
        );
        assert!(!v.apply(
            Signal::Inventory {
                principal: "default".into(),
                present: true
            },
            t0
        ));
        assert_eq!(v.take_replay(t0), Some(t0 - Duration::from_secs(3)));
    }

    #[test]
    fn a_crash_holds_then_replays_back_to_the_previous_health_check() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut v = HostView::new(&cfg(), false);
        v.apply(
            Signal::Inventory {
                principal: "default".into(),
                present: true,
            },
            t0,
        );
        assert!(v.apply(Signal::Failed, t0));
        assert!(!v.may_deliver(t0));
        assert_eq!(v.take_replay(t0), None);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(v.wake_at(), Some(later));
        assert!(v.expire_hold(later));
        assert_eq!(v.take_replay(later), Some(t0 - Duration::from_secs(13)));
    }

    #[test]
    fn other_checks_ignore_the_kernel() {
        let t0 = Instant::now();
        let listeners = AdapterConfig {
            delivery_check: DeliveryCheck::RequireListener,
            ..cfg()
        };
        let mut v = HostView::new(&listeners, false);
        v.apply(
            Signal::Inventory {
                principal: "default".into(),
                present: true,
            },
            t0,
        );
        assert!(!v.may_deliver(t0));
        v.apply(Signal::Listeners { present: true }, t0);
        assert!(v.may_deliver(t0));
        let publish_only = AdapterConfig {
            delivery_check: DeliveryCheck::PublishOnly,
            ..cfg()
        };
        let mut v = HostView::new(&publish_only, false);
        assert!(v.may_deliver(t0));
        v.apply(Signal::Failed, t0);
        assert!(v.may_deliver(t0));
    }
}
