//! The identify rate limit of this process: at most one IDENTIFY per 5 s in
//! each `max_concurrency` bucket (`shard_id % max_concurrency`), and no more
//! session starts than `session_start_limit` allows until it resets.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::shared_floor::SharedFloor;
use crate::gateway::ShardId;

/// The spacing the bridge keeps between two identifies of one bucket:
/// Discord's floor is 5 s, but permits are timed when granted, the
/// IDENTIFY reaches Discord a little later, and that delay varies, so half a
/// second of margin keeps Discord's view of the gap above 5 s.
pub(crate) const IDENTIFY_FLOOR: Duration = Duration::from_millis(5_500);

/// `session_start_limit` from `GET /gateway/bot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionStartLimit {
    /// Session starts allowed per period.
    pub total: u32,
    /// Session starts left in this period.
    pub remaining: u32,
    /// Until the period resets.
    pub reset_after: Duration,
    /// Identify buckets that may proceed in parallel.
    pub max_concurrency: u32,
}

impl Default for SessionStartLimit {
    /// What a bot without `/gateway/bot` information can assume.
    fn default() -> Self {
        Self {
            total: 1000,
            remaining: 1000,
            reset_after: Duration::from_secs(24 * 3600),
            max_concurrency: 1,
        }
    }
}

#[derive(Debug)]
struct Budget {
    total: u32,
    remaining: u32,
    resets_at: Instant,
}

/// Hands out identify permits.
#[derive(Debug)]
pub(crate) struct IdentifyQueue {
    floor: Duration,
    max_concurrency: u32,
    /// Last identify per bucket; the async lock queues shards of one bucket.
    buckets: Vec<tokio::sync::Mutex<Option<Instant>>>,
    budget: Mutex<Budget>,
    /// The lease shared with other bridge processes, when NATS has one.
    shared: Option<SharedFloor>,
    /// Session starts are not spent at or below this many left.
    reserve: u32,
    /// The session start budget shared with other processes, when NATS
    /// KV has one (then `budget` is not used).
    starts: Option<super::session_starts::SessionStarts>,
    /// Whether the limit came from Discord (`GET /gateway/bot`); with a
    /// fixed gateway URL it is a guess, not worth reporting.
    limit_known: bool,
}

impl IdentifyQueue {
    /// A queue with Discord's 5 s floor.
    #[must_use]
    pub(crate) fn new(limit: SessionStartLimit) -> Self {
        Self::with_floor(limit, IDENTIFY_FLOOR)
    }

    /// A queue with another floor: only for tests of this queue.
    #[must_use]
    pub(crate) fn with_floor(limit: SessionStartLimit, floor: Duration) -> Self {
        let max_concurrency = limit.max_concurrency.max(1);
        Self {
            floor,
            max_concurrency,
            buckets: (0..max_concurrency)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            budget: Mutex::new(Budget {
                total: limit.total.max(1),
                remaining: limit.remaining,
                resets_at: Instant::now() + limit.reset_after,
            }),
            shared: None,
            reserve: 0,
            starts: None,
            limit_known: true,
        }
    }

    /// The limit is an assumption (Discord was not asked): the count of
    /// session starts left is not reported.
    #[must_use]
    pub(crate) const fn with_unknown_limit(mut self) -> Self {
        self.limit_known = false;
        self
    }

    /// Session starts left, as last seen (the shared budget's last read
    /// with NATS KV, else this process's own count); `None` when the limit
    /// was never asked of Discord.
    #[must_use]
    pub(crate) fn session_starts_remaining(&self) -> Option<u32> {
        if !self.limit_known {
            return None;
        }
        Some(match &self.starts {
            Some(starts) => starts.remaining(),
            None => {
                self.budget
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remaining
            }
        })
    }

    /// Keeps `reserve` session starts unspent.
    #[must_use]
    pub(crate) const fn with_reserve(mut self, reserve: u32) -> Self {
        self.reserve = reserve;
        self
    }

    /// Counts session starts with the other processes of the bot.
    #[must_use]
    pub(crate) fn with_starts(mut self, starts: super::session_starts::SessionStarts) -> Self {
        self.starts = Some(starts);
        self
    }

    /// Also takes the cross-process lease before each IDENTIFY.
    #[must_use]
    pub(crate) fn with_shared(mut self, shared: SharedFloor) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Waits until `shard` may send IDENTIFY, and counts it as sent.
    pub(crate) async fn acquire(&self, shard: ShardId) {
        if let Some(starts) = &self.starts {
            starts.take(shard).await;
        }
        while self.starts.is_none() {
            let wait = self.take_session_start();
            let Some(until) = wait else { break };
            tracing::warn!(
                shard = %shard,
                wait_secs = until.saturating_duration_since(Instant::now()).as_secs(),
                "Discord's session start limit is used up; waiting for it to reset before identifying"
            );
            tokio::time::sleep_until(until).await;
        }
        let number = shard.bucket(self.max_concurrency);
        let bucket = number as usize % self.buckets.len();
        let mut last = self.buckets[bucket].lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + self.floor).await;
        }
        if let Some(shared) = &self.shared
            && let Err(e) = shared.acquire(number).await
        {
            tracing::warn!(shard = %shard, error = %e, "cannot take the shared identify lease; relying on this process's floor");
        }
        *last = Some(Instant::now());
    }

    /// Takes one session start, or says until when none is left.
    fn take_session_start(&self) -> Option<Instant> {
        let mut b = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now >= b.resets_at {
            b.remaining = b.total;
            b.resets_at = now + Duration::from_secs(24 * 3600);
        }
        if b.remaining > self.reserve {
            b.remaining -= 1;
            None
        } else {
            Some(b.resets_at)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn limit(max_concurrency: u32) -> SessionStartLimit {
        SessionStartLimit {
            max_concurrency,
            ..SessionStartLimit::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn same_bucket_is_spaced_by_the_floor() {
        let q = IdentifyQueue::new(limit(1));
        let t0 = Instant::now();
        q.acquire(ShardId::new(0, 2)).await;
        q.acquire(ShardId::new(1, 2)).await;
        q.acquire(ShardId::new(0, 2)).await;
        assert_eq!(Instant::now() - t0, 2 * IDENTIFY_FLOOR);
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_proceed_in_parallel() {
        let q = Arc::new(IdentifyQueue::new(limit(2)));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|id| {
                let q = Arc::clone(&q);
                tokio::spawn(async move {
                    q.acquire(ShardId::new(id, 4)).await;
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap() - t0);
        }
        times.sort();
        assert_eq!(
            times,
            [
                Duration::ZERO,
                Duration::ZERO,
                IDENTIFY_FLOOR,
                IDENTIFY_FLOOR
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_session_starts_wait_for_the_reset() {
        let q = IdentifyQueue::new(SessionStartLimit {
            total: 1000,
            remaining: 1,
            reset_after: Duration::from_secs(600),
            max_concurrency: 1,
        });
        let t0 = Instant::now();
        q.acquire(ShardId::new(0, 1)).await;
        assert_eq!(Instant::now(), t0);
        assert_eq!(q.session_starts_remaining(), Some(0));
        q.acquire(ShardId::new(0, 1)).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(600));
        assert_eq!(q.session_starts_remaining(), Some(999), "reset, one spent");
        let guessed = IdentifyQueue::new(SessionStartLimit::default()).with_unknown_limit();
        assert_eq!(guessed.session_starts_remaining(), None);
    }
}
