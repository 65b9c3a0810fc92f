//! The adapter against astrid-capsule 2026.10's real `EventDispatcher`
//! (its admitter, bounded per-capsule queues, generation gates and ordered
//! inbox), with a mock handler capsule registered in a real
//! `CapsuleRegistry` as a system-resident runtime (the dispatcher offers the
//! adapter's principal-less events to those only), a real nats-server, and
//! unload-then-load reloads
//! announced with `astrid.v1.capsules_loaded` as the kernel announces them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use astrid_capsule::capsule::{Capsule, CapsuleId, CapsuleState, InterceptResult};
use astrid_capsule::context::CapsuleContext;
use astrid_capsule::dispatcher::EventDispatcher;
use astrid_capsule::error::CapsuleResult;
use astrid_capsule::manifest::CapsuleManifest;
use astrid_capsule::registry::{CapsuleRegistry, WasmHash};
use astrid_core::PrincipalId;
use astrid_discord_adapter::{Adapter, AdapterConfig};
use astrid_events::ipc::Topic;
use astrid_events::{
    AstridEvent, EventBus, EventMetadata, IpcMessage, IpcPayload, RouteAdmissionGate,
};
use async_nats::jetstream::{self, stream};
use discord_bridge_e2e::{NatsServer, eventually};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CAPSULE: &str = "astrid-discord";
const TOPIC: &str = "astrid-discord.agent.events";
const EVENTS: u64 = 600;
const RELOADS: usize = 10;

/// What the mock capsule's handler saw: (generation, event number).
type Log = Arc<Mutex<Vec<(u64, u64)>>>;

struct MockCapsule {
    id: CapsuleId,
    manifest: CapsuleManifest,
    generation: u64,
    gate: RouteAdmissionGate,
    log: Log,
}

#[async_trait::async_trait]
impl Capsule for MockCapsule {
    fn id(&self) -> &CapsuleId {
        &self.id
    }
    fn manifest(&self) -> &CapsuleManifest {
        &self.manifest
    }
    fn state(&self) -> CapsuleState {
        CapsuleState::Ready
    }
    async fn load(&mut self, _ctx: &CapsuleContext) -> CapsuleResult<()> {
        Ok(())
    }
    async fn unload(&mut self) -> CapsuleResult<()> {
        Ok(())
    }
    fn publish(&self) {
        self.gate.publish();
    }
    fn retire(&self) {
        self.gate.retire();
    }
    fn delivery_admission_gate(&self) -> Option<RouteAdmissionGate> {
        Some(self.gate.clone())
    }
    async fn invoke_interceptor(
        &self,
        _action: &str,
        payload: &[u8],
        _caller: Option<&IpcMessage>,
    ) -> CapsuleResult<InterceptResult> {
        let data: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        if let Some(n) = data["payload"]["content"]
            .as_str()
            .and_then(|c| c.strip_prefix("event "))
            .and_then(|n| n.parse().ok())
        {
            self.log.lock().unwrap().push((self.generation, n));
        }
        Ok(InterceptResult::Continue(Vec::new()))
    }
}

fn manifest(dir: &tempfile::TempDir) -> CapsuleManifest {
    let path = dir.path().join("Capsule.toml");
    std::fs::write(
        &path,
        format!(
            "[package]\nname = \"{CAPSULE}\"\nversion = \"0.0.1\"\n\n[subscribe]\n\"{TOPIC}\" = {{ wit = \"opaque\", handler = \"on_event\" }}\n"
        ),
    )
    .unwrap();
    astrid_capsule::discovery::load_manifest(&path).expect("a valid manifest")
}

fn inventory(bus: &EventBus, present: bool) {
    let capsules: Vec<Value> = present
        .then(|| json!({"principal": "default", "name": CAPSULE, "source_id": null, "meta": null}))
        .into_iter()
        .collect();
    let mut message = IpcMessage::new(
        Topic::from_raw("astrid.v1.capsules_loaded"),
        IpcPayload::RawJson(json!({"status": "ready", "capsules": capsules})),
        Uuid::nil(),
    );
    message.principal = Some("default".into());
    let _ = bus.publish(AstridEvent::Ipc {
        metadata: EventMetadata::new("kernel"),
        message,
    });
}

fn event(n: u64) -> Vec<u8> {
    json!({"type": "message", "source": "gateway", "payload": {
        "id": format!("{}", 1000 + n), "channel_id": "2", "guild_id": "3",
        "author": {"id": "4", "username": "alice"}, "content": format!("event {n}"),
        "timestamp": "2024-01-01T00:00:00+00:00"}})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_then_load_through_the_real_dispatcher_loses_nothing() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "ASTRID_DISCORD".into(),
        subjects: vec![TOPIC.into()],
        ..Default::default()
    })
    .await
    .unwrap();

    let bus = Arc::new(EventBus::new());
    let registry = Arc::new(RwLock::new(CapsuleRegistry::new()));
    let dispatcher = EventDispatcher::new(Arc::clone(&registry), Arc::clone(&bus));
    let adapter = Adapter::new(
        nats.client().await,
        Arc::clone(&bus),
        AdapterConfig {
            replay_window: Duration::from_millis(500),
            ..AdapterConfig::default()
        },
    )
    .unwrap();
    let handle = adapter.spawn(CancellationToken::new());
    let dispatcher = tokio::spawn(dispatcher.run());

    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(&dir);
    let log = Log::default();
    let capsule_id = CapsuleId::new(CAPSULE).unwrap();
    let load = |generation: u64| {
        let capsule = MockCapsule {
            id: capsule_id.clone(),
            manifest: manifest.clone(),
            generation,
            gate: RouteAdmissionGate::staged(),
            log: Arc::clone(&log),
        };
        let registry = Arc::clone(&registry);
        let bus = Arc::clone(&bus);
        let id = capsule_id.clone();
        async move {
            let mut reg = registry.write().await;
            // The bridge's events carry no principal: the dispatcher offers
            // such system events to system-resident runtimes only.
            reg.register_system_runtime(
                Box::new(capsule),
                WasmHash::synthetic(CAPSULE, "0.0.1"),
                &PrincipalId::default(),
            )
            .unwrap();
            reg.get(&id).unwrap().publish();
            drop(reg);
            inventory(&bus, true);
        }
    };
    let unload = || {
        let registry = Arc::clone(&registry);
        let bus = Arc::clone(&bus);
        let id = capsule_id.clone();
        async move {
            let removed = registry.write().await.unregister(&id).unwrap();
            removed.capsule.retire();
            drop(removed);
            inventory(&bus, false);
        }
    };
    load(1).await;

    let publisher = tokio::spawn({
        let js: jetstream::Context = js.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            for n in 1..=EVENTS {
                tick.tick().await;
                js.publish(TOPIC, event(n).into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        }
    });
    for generation in 2..=(RELOADS as u64 + 1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        unload().await;
        // Traffic pacing: the capsule is away this long.
        tokio::time::sleep(Duration::from_millis(100 + 20 * generation)).await;
        load(generation).await;
    }
    publisher.await.unwrap();

    eventually(Duration::from_secs(30), "every event handled", || {
        let seen: BTreeSet<u64> = log.lock().unwrap().iter().map(|(_, n)| *n).collect();
        let complete = seen.len() as u64 == EVENTS;
        if !complete && std::env::var("DBG").is_ok() {
            let missing: Vec<u64> = (1..=EVENTS)
                .filter(|n| !seen.contains(n))
                .take(10)
                .collect();
            eprintln!(
                "{} of {EVENTS}; missing {missing:?}; {:?}",
                seen.len(),
                handle.stats()
            );
        }
        async move { complete.then_some(()) }
    })
    .await;
    let handled = log.lock().unwrap().len() as u64;
    let stats = handle.stats();
    eprintln!(
        "real dispatcher: {EVENTS} events, {RELOADS} unload-then-load reloads: {handled} handled, {} duplicates, lost 0; {stats:?}",
        handled - EVENTS
    );
    assert!(handled - EVENTS <= stats.redelivered, "{stats:?}");
    assert_eq!(stats.delivered, EVENTS);
    handle.shutdown().await.unwrap();
    dispatcher.abort();
}
