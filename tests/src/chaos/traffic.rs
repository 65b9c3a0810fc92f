//! The soak's event generator: MESSAGE_CREATEs at a steady pace, taking
//! turns between the shards, each carrying a unique id (its message id and
//! its content, `chaos {id}`), up to a limit the fault driver raises as it
//! goes. An event counts as sent once the simulator accepted it into a
//! session; while a shard has no valid session (Discord ended it and no new
//! one is ready) its turn is skipped.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use discord_gateway_sim::events::{self, User};
use discord_gateway_sim::{Simulator, shard_for_guild};
use tokio::task::JoinHandle;

use super::audit::SentEvent;
use super::observe::CONTENT_PREFIX;

/// How often the generator wakes up; each tick sends its share of the rate.
const TICK: Duration = Duration::from_millis(10);
/// The channel the events are written in.
const CHANNEL_ID: u64 = 1_144_060_924_343_672_102;

/// What the generator did so far.
#[derive(Debug, Default)]
pub struct TrafficState {
    /// Every event accepted, in order (ids are 1, 2, …).
    pub sent: Vec<SentEvent>,
    /// The generator sends no more than this many in all.
    pub allowed: u64,
}

impl TrafficState {
    /// How many were sent.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.sent.len() as u64
    }

    /// How many were sent on `shard` with an id of at least `from`.
    #[must_use]
    pub fn count_on(&self, shard: u32, from: u64) -> usize {
        self.sent
            .iter()
            .rev()
            .take_while(|e| e.id >= from)
            .filter(|e| e.shard == shard)
            .count()
    }
}

/// The running generator.
pub struct Traffic {
    state: Arc<Mutex<TrafficState>>,
    task: JoinHandle<()>,
}

impl Traffic {
    /// Starts sending on `shards` shards at `rate` events per second.
    ///
    /// # Panics
    ///
    /// When the simulator has no guild for some shard.
    #[must_use]
    pub fn start(sim: Arc<Simulator>, shards: u32, rate: u32) -> Self {
        let guilds: Vec<u64> = (0..shards)
            .map(|shard| {
                sim.config()
                    .guilds
                    .iter()
                    .copied()
                    .find(|g| shard_for_guild(*g, shards) == shard)
                    .unwrap_or_else(|| panic!("the simulator has no guild on shard {shard}"))
            })
            .collect();
        let state = Arc::new(Mutex::new(TrafficState::default()));
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move { run(&sim, &guilds, rate, &state).await }
        });
        Self { state, task }
    }

    /// The state so far (keep the guard short).
    pub fn state(&self) -> MutexGuard<'_, TrafficState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets the generator send up to `total` events in all.
    pub fn allow(&self, total: u64) {
        let mut s = self.state();
        s.allowed = s.allowed.max(total);
    }

    /// Lets the generator send at least `n` more events than it has: for a
    /// recovery that can only be seen in new events.
    pub fn keep_going(&self, n: u64) {
        let mut s = self.state();
        s.allowed = s.allowed.max(s.count() + n);
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(sim: &Simulator, guilds: &[u64], rate: u32, state: &Mutex<TrafficState>) {
    let author = User::new(1_144_060_924_343_672_101, "chaos");
    let per_tick = f64::from(rate) * TICK.as_secs_f64();
    let mut owed = 0.0;
    let mut turn = 0usize;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        owed = (owed + per_tick).min(per_tick * 10.0);
        while owed >= 1.0 {
            let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
            if s.count() >= s.allowed {
                owed = 0.0;
                break;
            }
            let id = s.count() + 1;
            let mut sent = None;
            for _ in 0..guilds.len() {
                let shard = turn % guilds.len();
                turn += 1;
                let mut d = events::message_create(
                    CHANNEL_ID,
                    Some(guilds[shard]),
                    &author,
                    &format!("{CONTENT_PREFIX}{id}"),
                );
                d["id"] = serde_json::Value::from(id.to_string());
                let shard = u32::try_from(shard).unwrap_or(u32::MAX);
                if let Some(ok) = sim.dispatch_tracked(shard, "MESSAGE_CREATE", d) {
                    sent = Some(ok);
                    break;
                }
            }
            owed -= 1.0;
            let Some(ok) = sent else { break };
            s.sent.push(SentEvent {
                id,
                shard: ok.shard,
                session_id: ok.session_id,
                seq: ok.seq,
            });
        }
    }
}
