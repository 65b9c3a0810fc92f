//! What the soak watches while it runs: the agent stream (tailed, and read
//! whole at the end) and the status events on `{prefix}.gateway.status`.
//! Both keep going through NATS outages: the stream reader resumes from the
//! last sequence it read, and status events are heard through one client per
//! node, so a node being down loses none.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::{self, Context};
use discord_bridge_schemas::{ShardState, StatusEvent, header as h};
use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use super::audit::{LossReport, StoredEvent};
use crate::wait::POLL_INTERVAL;

/// The content every soak event carries: `chaos {id}`.
pub const CONTENT_PREFIX: &str = "chaos ";

/// Parses a stream message into a [`StoredEvent`]; `None` when it has no
/// stream sequence.
fn parse(m: &jetstream::Message) -> Option<StoredEvent> {
    let stream_seq = m.info().ok()?.stream_sequence;
    let header = |name: &str| {
        m.headers
            .as_ref()
            .and_then(|hs| hs.get(name))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    let id = serde_json::from_slice::<serde_json::Value>(&m.payload)
        .ok()
        .and_then(|v| {
            v["payload"]["content"]
                .as_str()?
                .strip_prefix(CONTENT_PREFIX)?
                .parse()
                .ok()
        });
    Some(StoredEvent {
        stream_seq,
        id,
        msg_id: header(h::MSG_ID),
        shard: header(h::SHARD),
        session_id: header(h::SESSION),
        seq: header(h::SEQ).parse().unwrap_or(0),
    })
}

/// How long the reader waits for its consumer's next message before it
/// checks whether the stream has one (a consumer on a killed node can stay
/// silent for a minute before the client notices).
const SILENCE: Duration = Duration::from_secs(2);

/// Reads `stream` from sequence `from` with an ordered consumer, handing
/// each message to `f`, until `f` returns `false`. Errors (NATS away, a
/// consumer lost) recreate the consumer after the last message read, and so
/// does a consumer that stays silent while the stream holds more.
async fn read_from(js: &Context, stream: &str, from: u64, mut f: impl FnMut(StoredEvent) -> bool) {
    let mut next = from.max(1);
    let behind = |next: u64| async move {
        let info = js.get_stream(stream).await.ok()?.get_info().await.ok()?;
        Some(info.state.last_sequence >= next)
    };
    loop {
        let consumer = async {
            let s = js.get_stream_no_info(stream).await.ok()?;
            let config = OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                ..OrderedConfig::default()
            };
            s.create_consumer(config).await.ok()?.messages().await.ok()
        };
        let Ok(Some(mut messages)) = tokio::time::timeout(5 * SILENCE, consumer).await else {
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        };
        loop {
            let m = match tokio::time::timeout(SILENCE, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(_) => break,
                Err(_) => match tokio::time::timeout(SILENCE, behind(next)).await {
                    // Nothing new: keep waiting on this consumer.
                    Ok(Some(false)) => continue,
                    // Messages it does not deliver, or no answer: a new one.
                    _ => break,
                },
            };
            let Some(event) = parse(&m) else { continue };
            if event.stream_seq < next {
                continue;
            }
            next = event.stream_seq + 1;
            if !f(event) {
                return;
            }
        }
    }
}

/// Every message of `stream` now, in order (the stream must not grow
/// meanwhile: its writers have stopped).
///
/// # Panics
///
/// When the stream's info cannot be read within a minute.
pub async fn read_all(js: &Context, stream: &str) -> Vec<StoredEvent> {
    let info = crate::eventually(Duration::from_secs(60), "the stream's info", || async {
        js.get_stream(stream).await.ok()?.get_info().await.ok()
    })
    .await;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::with_capacity(usize::try_from(info.state.messages).unwrap_or(0));
    if info.state.messages > 0 {
        read_from(js, stream, first, |e| {
            let more = e.stream_seq < last;
            out.push(e);
            more
        })
        .await;
    }
    out
}

/// Progress of the stream as seen by [`Tail`].
#[derive(Debug, Default)]
pub struct TailState {
    /// Stored copies per event id.
    pub copies: std::collections::HashMap<u64, u32>,
    /// The highest event id stored per shard id (from `Discord-Shard`).
    pub max_id: [Option<u64>; 2],
}

/// A background reader of the stream, for the soak's progress conditions.
pub struct Tail {
    state: Arc<Mutex<TailState>>,
    task: JoinHandle<()>,
}

impl Tail {
    /// Starts tailing `stream` from its first message.
    #[must_use]
    pub fn start(js: Context, stream: String) -> Self {
        let state = Arc::new(Mutex::new(TailState::default()));
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                read_from(&js, &stream, 1, |e| {
                    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(id) = e.id {
                        *s.copies.entry(id).or_default() += 1;
                        let shard = e
                            .shard
                            .split('/')
                            .next()
                            .and_then(|n| n.parse::<usize>().ok());
                        if let Some(max) = shard.and_then(|n| s.max_id.get_mut(n)) {
                            *max = Some(max.map_or(id, |m| m.max(id)));
                        }
                    }
                    true
                })
                .await;
            }
        });
        Self { state, task }
    }

    /// The state so far (keep the guard short).
    pub fn state(&self) -> MutexGuard<'_, TailState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Heard {
    payloads: HashSet<Vec<u8>>,
    events: Vec<StatusEvent>,
    malformed: Vec<String>,
}

/// Status events heard on `{prefix}.gateway.status` by one client per
/// node, without repeats.
pub struct Statuses {
    seen: Arc<Mutex<Heard>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Statuses {
    /// Subscribes through each of `urls` (one client each).
    ///
    /// # Panics
    ///
    /// When a subscription cannot be made.
    pub async fn start(urls: &[String], subject: &str) -> Self {
        let seen = Arc::new(Mutex::new(Heard::default()));
        let mut tasks = Vec::new();
        for url in urls {
            let client = crate::nats::connect_any(std::slice::from_ref(url)).await;
            let mut sub = client
                .subscribe(subject.to_owned())
                .await
                .expect("subscribing to status events");
            client.flush().await.expect("flushing the subscription");
            let seen = Arc::clone(&seen);
            tasks.push(tokio::spawn(async move {
                let _client = client;
                while let Some(msg) = sub.next().await {
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    if !seen.payloads.insert(msg.payload.to_vec()) {
                        continue;
                    }
                    match serde_json::from_slice::<StatusEvent>(&msg.payload) {
                        Ok(event) => seen.events.push(event),
                        Err(e) => seen
                            .malformed
                            .push(format!("{e}: {}", String::from_utf8_lossy(&msg.payload))),
                    }
                }
            }));
        }
        Self { seen, tasks }
    }

    /// Every status event so far, in the order first heard.
    #[must_use]
    pub fn events(&self) -> Vec<StatusEvent> {
        self.heard().events.clone()
    }

    /// Payloads on the status subject that are not status events.
    #[must_use]
    pub fn malformed(&self) -> Vec<String> {
        self.heard().malformed.clone()
    }

    fn heard(&self) -> MutexGuard<'_, Heard> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sessions the bridge gave up so far ([`LossReport`]s).
    #[must_use]
    pub fn loss_reports(&self) -> Vec<LossReport> {
        self.events()
            .into_iter()
            .filter(|e| e.state == ShardState::Error && e.fatal == Some(false))
            // A single event too large to publish is reported on its own
            // (its `lost` range); it does not give the session up.
            .filter(|e| e.reason.as_deref() != Some("event_too_large"))
            .filter_map(|e| {
                Some(LossReport {
                    shard: e.shard[0],
                    session_id: e.session_id?,
                    last_seq: e.last_seq.unwrap_or(0),
                    lost: e.lost.map(|r| (r.from, r.to)),
                    reason: e.reason,
                })
            })
            .collect()
    }
}

impl Drop for Statuses {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
