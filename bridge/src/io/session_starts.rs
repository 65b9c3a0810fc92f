//! Discord's `session_start_limit`, shared by every process of the bot.
//!
//! Each IDENTIFY spends one session start; when none is left Discord resets
//! the bot's token. One process's own count cannot see what the others (or
//! a crash loop of restarts) spent, so with JetStream the budget lives in
//! the shards bucket (`starts.{bot}`), and every IDENTIFY takes one start
//! with a compare-and-set on the key's revision. At or below
//! `discord.session_start_reserve` starts left, no IDENTIFY is sent: the
//! shard waits for the reset, the wait is logged as an error naming the
//! limit and the reset time, and reported as `state: backoff, reason:
//! session_start_limit`. RESUMEs cost nothing and go on. After a reset the
//! budget is read again from `GET /gateway/bot`, Discord's own count.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use discord_bridge_schemas::{ShardState, StatusEvent};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use super::core_sink::CoreSink;
use super::discovery;
use super::identify::SessionStartLimit;
use super::ownership::unix_ms;
use crate::secret::Secret;

/// How often a waiting shard looks at the shared budget again (another
/// process may have refreshed it).
const RECHECK: Duration = Duration::from_secs(60);
/// How long a refresh from `GET /gateway/bot` may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(20);

/// The budget as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Budget {
    total: u32,
    remaining: u32,
    reset_at_ms: u64,
}

impl Budget {
    fn from_limit(limit: &SessionStartLimit) -> Self {
        Self {
            total: limit.total,
            remaining: limit.remaining,
            reset_at_ms: unix_ms()
                .saturating_add(u64::try_from(limit.reset_after.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Where the shared budget lives.
#[derive(Clone)]
pub(crate) struct SharedBudget {
    pub(crate) kv: kv::Store,
    pub(crate) key: String,
}

/// How to read Discord's count again.
#[derive(Clone)]
pub(crate) struct Refresh {
    pub(crate) api_base: String,
    pub(crate) token: Secret,
    pub(crate) tls: crate::tls::DiscordTls,
}

/// The session start budget shared by the processes of one bot. (Without
/// KV, the identify queue counts in the process; see `identify`.)
pub(crate) struct SessionStarts {
    /// The budget as last read or written: used when the shared one cannot
    /// be read, and reported as the session starts left.
    local: std::sync::Mutex<Budget>,
    shared: SharedBudget,
    reserve: u32,
    refresh: Option<Refresh>,
    sink: Option<CoreSink>,
}

impl std::fmt::Debug for SessionStarts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStarts")
            .field("shared", &self.shared.key)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

/// What one attempt found.
enum Take {
    Taken,
    Exhausted(Budget),
}

impl SessionStarts {
    /// Shares the budget in KV, starting from `limit` (Discord's count at
    /// start-up, which overwrites what earlier processes left); `None` when
    /// the bucket cannot take it.
    pub(crate) async fn shared(
        shared: SharedBudget,
        limit: &SessionStartLimit,
        reserve: u32,
    ) -> Option<Self> {
        let budget = Budget::from_limit(limit);
        let value = serde_json::to_vec(&budget).ok()?;
        if let Err(e) = shared.kv.put(&shared.key, Bytes::from(value)).await {
            tracing::warn!(error = %e, "cannot share the session start limit in KV; counting in this process only");
            return None;
        }
        Some(Self {
            local: std::sync::Mutex::new(budget),
            shared,
            reserve,
            refresh: None,
            sink: None,
        })
    }

    /// Reads Discord's count again after a reset.
    pub(crate) fn with_refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// Session starts left, as last read or written.
    pub(crate) fn remaining(&self) -> u32 {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remaining
    }

    /// Reports waits on the status subject.
    pub(crate) fn with_sink(mut self, sink: CoreSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Takes one session start for an IDENTIFY of `shard`, waiting for the
    /// reset while none may be spent.
    pub(crate) async fn take(&self, shard: crate::gateway::ShardId) {
        loop {
            let budget = match self.try_take().await {
                Take::Taken => return,
                Take::Exhausted(budget) => budget,
            };
            let wait_ms = budget.reset_at_ms.saturating_sub(unix_ms());
            let reset = i128::from(budget.reset_at_ms) * 1_000_000;
            let reset = OffsetDateTime::from_unix_timestamp_nanos(reset)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_else(|| "an unknown time".to_owned());
            let message = format!(
                "Discord's session start limit is reached ({} of {} left, reserve {}): no \
                 IDENTIFY until it resets at {reset}; RESUMEs go on",
                budget.remaining, budget.total, self.reserve
            );
            tracing::error!(shard = %shard, reset_at = %reset, "{message}");
            if let Some(sink) = &self.sink {
                let mut ev = StatusEvent::new(ShardState::Backoff, shard.pair(), message.clone());
                ev.reason = Some("session_start_limit".to_owned());
                ev.delay_ms = Some(wait_ms);
                ev.message = Some(message);
                sink.status(ev);
            }
            tokio::time::sleep(Duration::from_millis(wait_ms).min(RECHECK)).await;
        }
    }

    async fn try_take(&self) -> Take {
        let shared = &self.shared;
        loop {
            let entry = match shared.kv.entry(&shared.key).await {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the shared session start limit; counting in this process");
                    let mut b = self
                        .local
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    return spend(&mut b, self.reserve, self.refresh.is_some());
                }
            };
            let (mut budget, revision) = match entry
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| {
                    serde_json::from_slice::<Budget>(&e.value)
                        .ok()
                        .map(|b| (b, e.revision))
                }) {
                Some(found) => found,
                None => (
                    *self
                        .local
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    0,
                ),
            };
            if unix_ms() >= budget.reset_at_ms {
                budget = self.refreshed(budget).await;
            }
            let take = spend(&mut budget, self.reserve, self.refresh.is_some());
            let Ok(value) = serde_json::to_vec(&budget) else {
                return take;
            };
            match shared
                .kv
                .update(&shared.key, Bytes::from(value), revision)
                .await
            {
                Ok(_) => {
                    // The last count seen: the fallback if KV cannot be
                    // read, and what the metrics report.
                    *self
                        .local
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = budget;
                    return take;
                }
                // Another process spent one meanwhile: count again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot update the shared session start limit");
                    return take;
                }
            }
        }
    }

    /// Discord's count after a reset, or the old budget when it cannot be
    /// read.
    async fn refreshed(&self, old: Budget) -> Budget {
        let Some(r) = &self.refresh else {
            return old;
        };
        let never = CancellationToken::new();
        let ask = discovery::discover(&r.api_base, &r.token, &r.tls, &never);
        match tokio::time::timeout(REFRESH_TIMEOUT, ask).await {
            Ok(Ok(info)) => {
                tracing::info!(
                    remaining = info.limit.remaining,
                    total = info.limit.total,
                    "session start limit refreshed from GET /gateway/bot"
                );
                Budget::from_limit(&info.limit)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot refresh the session start limit");
                old
            }
            Err(_) => {
                tracing::warn!("refreshing the session start limit timed out");
                old
            }
        }
    }
}

/// Spends one start from `budget` unless that would go below `reserve`.
/// Without Discord to ask (`can_refresh` false), a reset restores the whole
/// budget.
fn spend(budget: &mut Budget, reserve: u32, can_refresh: bool) -> Take {
    if unix_ms() >= budget.reset_at_ms && !can_refresh {
        budget.remaining = budget.total;
        budget.reset_at_ms = unix_ms().saturating_add(24 * 3600 * 1000);
    }
    if budget.remaining > reserve {
        budget.remaining -= 1;
        Take::Taken
    } else {
        Take::Exhausted(*budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(remaining: u32, reset_in_ms: u64) -> Budget {
        Budget {
            total: 1000,
            remaining,
            reset_at_ms: unix_ms() + reset_in_ms,
        }
    }

    #[test]
    fn the_reserve_is_never_spent() {
        let mut b = budget(3, 3_600_000);
        assert!(matches!(spend(&mut b, 1, true), Take::Taken));
        assert!(matches!(spend(&mut b, 1, true), Take::Taken));
        assert!(matches!(
            spend(&mut b, 1, true),
            Take::Exhausted(Budget { remaining: 1, .. })
        ));
        let mut b = budget(0, 3_600_000);
        assert!(matches!(spend(&mut b, 0, true), Take::Exhausted(_)));
    }

    #[test]
    fn a_past_reset_restores_the_budget_only_without_discord_to_ask() {
        let mut b = budget(0, 0);
        b.reset_at_ms = 1;
        assert!(matches!(spend(&mut b, 0, true), Take::Exhausted(_)));
        assert!(matches!(spend(&mut b, 0, false), Take::Taken));
        assert_eq!(b.remaining, 999);
    }
}
