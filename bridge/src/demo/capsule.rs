//! The capsule side of the demo: the in-process EventBus the adapter feeds,
//! and a simulated capsule that subscribes the way astridd's capsule host
//! does, prints what it receives, and reloads once.

use std::sync::Arc;

use astrid_discord_adapter::{Listener, Listeners};
use astrid_events::ipc::IpcPayload;
use astrid_events::{AstridEvent, EventBus, RoutedEventReceiver};
use discord_bridge_schemas::AgentEvent;
use uuid::Uuid;

/// A capsule subscribed to `{prefix}.agent.events`, or reloading.
pub struct Capsule {
    bus: Arc<EventBus>,
    listeners: Listeners,
    topic: String,
    id: Uuid,
    subscription: Option<Listener<RoutedEventReceiver>>,
}

impl Capsule {
    /// A capsule on `bus`, not yet subscribed.
    #[must_use]
    pub fn new(bus: Arc<EventBus>, listeners: Listeners, topic: String) -> Self {
        Self {
            bus,
            listeners,
            topic,
            id: Uuid::new_v4(),
            subscription: None,
        }
    }

    /// Subscribes like astridd's capsule host: a routed subscription with a
    /// listener lease, so the adapter knows someone receives the events.
    pub fn subscribe(&mut self) {
        self.subscription = Some(self.listeners.subscribe_routed(
            &self.bus,
            self.id,
            self.topic.clone(),
            "astrid-discord",
            "capsule_guest",
        ));
    }

    /// Drops the subscription, as a capsule reload does.
    pub fn unsubscribe(&mut self) {
        self.subscription = None;
    }

    /// Whether the capsule is subscribed.
    #[must_use]
    pub const fn is_subscribed(&self) -> bool {
        self.subscription.is_some()
    }

    /// The next event for the capsule; never resolves while unsubscribed.
    pub async fn recv(&mut self) -> Option<Received> {
        let Some(sub) = &mut self.subscription else {
            return std::future::pending().await;
        };
        let event = sub.recv(None).await?;
        Some(Received::from_bus(&event))
    }
}

/// One event as the capsule sees it.
pub enum Received {
    /// An agent event from the bridge.
    Agent(Box<AgentEvent>),
    /// Anything else on the topic (or a payload that does not parse).
    Other(String),
}

impl Received {
    fn from_bus(event: &AstridEvent) -> Self {
        if let AstridEvent::Ipc { message, .. } = event
            && let IpcPayload::Custom { data } = &message.payload
        {
            return match serde_json::from_value::<AgentEvent>(data.clone()) {
                Ok(ev) => Self::Agent(Box::new(ev)),
                Err(e) => Self::Other(format!("IPC payload that is not an agent event: {e}")),
            };
        }
        Self::Other(format!("{} event", event.event_type()))
    }
}
