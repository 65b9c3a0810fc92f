//! [`Adapter`] and [`AdapterHandle`]: the entry points an integrator wires in.

use std::sync::Arc;

use astrid_events::EventBus;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{AdapterConfig, Mode};
use crate::deliver::Deliverer;
use crate::driver::Signals;
use crate::error::AdapterError;
use crate::listeners::Listeners;
use crate::replay::{ReplayReport, ReplayRequest, Replayer};
use crate::stats::{Counters, Stats};
use crate::{consumer, core_mode, status};

/// What the running task shares with handles and replays.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) client: async_nats::Client,
    pub(crate) config: AdapterConfig,
    pub(crate) deliverer: Arc<Deliverer>,
    pub(crate) counters: Arc<Counters>,
    /// Whether the relay may deliver now (the capsule is there), so that
    /// replays on request wait like live events.
    pub(crate) deliverable: watch::Sender<bool>,
}

/// Relays `{prefix}.agent.events` from NATS to an Astrid `EventBus`.
///
/// Build it with a connected NATS client (its URLs, credentials, TLS and
/// reconnect policy are the integrator's choice), the bus, and a
/// configuration; register listeners through [`listeners`](Self::listeners);
/// then [`run`](Self::run) it, or [`spawn`](Self::spawn) it and keep the
/// handle.
#[derive(Debug)]
pub struct Adapter {
    shared: Arc<Shared>,
    listeners: Listeners,
    signals: Signals,
}

impl Adapter {
    /// An adapter with its own, empty [`Listeners`] registry.
    ///
    /// `bus` is anything that becomes an `Arc<EventBus>`: the kernel's
    /// `Arc<EventBus>` or an `EventBus` (clones of a bus share everything).
    ///
    /// # Errors
    /// [`AdapterError::Config`] naming an unusable setting.
    pub fn new(
        client: async_nats::Client,
        bus: impl Into<Arc<EventBus>>,
        config: AdapterConfig,
    ) -> Result<Self, AdapterError> {
        Self::with_listeners(client, bus, config, Listeners::new())
    }

    /// An adapter that uses an existing registry, e.g. one the daemon's
    /// capsule host already registers subscriptions in.
    ///
    /// # Errors
    /// [`AdapterError::Config`] naming an unusable setting.
    pub fn with_listeners(
        client: async_nats::Client,
        bus: impl Into<Arc<EventBus>>,
        config: AdapterConfig,
        listeners: Listeners,
    ) -> Result<Self, AdapterError> {
        config.validate()?;
        let bus = bus.into();
        // Subscribed now, so the inventory astridd publishes after loading
        // its boot capsules is not missed while the adapter is not running
        // yet.
        let signals = Signals::new(&bus, &config);
        let deliverer = Arc::new(Deliverer::new(
            bus,
            listeners.clone(),
            config.topic(),
            config.source_id(),
            config.delivery_check,
        ));
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                config,
                deliverer,
                counters: Arc::new(Counters::default()),
                deliverable: watch::channel(false).0,
            }),
            listeners,
            signals,
        })
    }

    /// The registry whose leases count as live listeners of the topic.
    #[must_use]
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &AdapterConfig {
        &self.shared.config
    }

    /// A replayer for this adapter's stream, topic and listeners. Its
    /// replays wait while the adapter holds delivery (the capsule is away),
    /// so they deliver only once the adapter runs.
    ///
    /// # Errors
    /// [`AdapterError::Config`] in core mode, which stores nothing to replay.
    pub fn replayer(&self) -> Result<Replayer, AdapterError> {
        replayer(&self.shared)
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Relays events until `cancel` fires, then gives held events back to
    /// JetStream (so the next instance receives them first, in order) and
    /// returns.
    ///
    /// # Errors
    /// A JetStream server without JetStream
    /// ([`AdapterError::JetStreamNotEnabled`]: enable it or use
    /// [`Mode::Core`]), a stream or durable consumer that cannot be used,
    /// or a core subscription the client refuses. NATS outages are not
    /// errors: the adapter waits for the client to reconnect and continues
    /// where the durable consumer stands.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), AdapterError> {
        let cfg = &self.shared.config;
        let span =
            tracing::info_span!("astrid_discord_adapter", mode = ?cfg.mode, topic = %cfg.topic());
        let shared = Arc::clone(&self.shared);
        let signals = self.signals;
        async move {
            // The status relay ends with the relay of events, whichever
            // way that ends.
            let stop = cancel.child_token();
            let tasks = TaskTracker::new();
            if shared.config.relay_status {
                tasks.spawn(status::relay(Arc::clone(&shared), stop.clone()));
            }
            tasks.close();
            let result = match shared.config.mode {
                Mode::JetStream => consumer::run(Arc::clone(&shared), signals, cancel).await,
                Mode::Core => core_mode::run(Arc::clone(&shared), signals, cancel).await,
            };
            stop.cancel();
            tasks.wait().await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "adapter stopped");
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Runs the adapter on its own task.
    #[must_use = "dropping the handle detaches the task; call shutdown() to stop it"]
    pub fn spawn(self, cancel: CancellationToken) -> AdapterHandle {
        let shared = Arc::clone(&self.shared);
        let listeners = self.listeners.clone();
        let task = tokio::spawn(self.run(cancel.clone()));
        AdapterHandle {
            shared,
            listeners,
            cancel,
            task,
        }
    }
}

fn replayer(shared: &Shared) -> Result<Replayer, AdapterError> {
    if shared.config.mode == Mode::Core {
        return Err(AdapterError::Config(
            "mode is Core: replay needs JetStream, which stores the events".into(),
        ));
    }
    Ok(Replayer {
        js: async_nats::jetstream::new(shared.client.clone()),
        stream: shared.config.stream.clone(),
        subject: shared.config.subject(),
        deliverer: Arc::clone(&shared.deliverer),
        counters: Arc::clone(&shared.counters),
        deliverable: shared.deliverable.subscribe(),
    })
}

/// A running adapter.
#[derive(Debug)]
pub struct AdapterHandle {
    shared: Arc<Shared>,
    listeners: Listeners,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), AdapterError>>,
}

impl AdapterHandle {
    /// The registry whose leases count as live listeners of the topic.
    #[must_use]
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Replays stored events (see [`Replayer::replay`]); stops early when
    /// the adapter is shut down.
    ///
    /// # Errors
    /// As [`Replayer::replay`]; [`AdapterError::Config`] in core mode.
    pub async fn replay(&self, request: ReplayRequest) -> Result<ReplayReport, AdapterError> {
        replayer(&self.shared)?.replay(request, &self.cancel).await
    }

    /// Whether the task has ended (cancelled or failed).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the adapter and waits for its clean shutdown.
    ///
    /// # Errors
    /// The error the adapter stopped with, if any.
    pub async fn shutdown(self) -> Result<(), AdapterError> {
        self.cancel.cancel();
        self.join().await
    }

    /// Waits for the adapter to end on its own (an error, or its token).
    ///
    /// # Errors
    /// The error the adapter stopped with, if any.
    pub async fn join(self) -> Result<(), AdapterError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(AdapterError::Panicked(e.to_string())),
        }
    }
}
