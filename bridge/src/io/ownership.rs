//! Shard ownership and session hand-off in NATS KV: which process runs each
//! shard, and where its session stands, so that a restarted or replacement
//! process RESUMEs instead of starting a new session.
//!
//! One bucket, [`BUCKET`], two keys per shard, scoped by bot (a hash of the
//! token) and shard count so two bots, or two shard counts during a
//! reshard, never collide:
//!
//! * `lease.{bot}.{total}.{id}` — the owner, with a per-key TTL of
//!   `discord.shard_lease_secs`. Created only when absent (compare-and-set
//!   on the key's revision), renewed by its owner with the same check, so
//!   two processes never hold it at once. A process that dies stops renewing
//!   and the server removes the key when the TTL ends; a standby then
//!   creates it.
//! * `checkpoint.{bot}.{total}.{id}` — `session_id`, `resume_gateway_url`
//!   and the sequence up to which JetStream stored everything. No TTL:
//!   Discord decides whether the session can still be resumed.
//!
//! The owner stops a shard when it could not renew for longer than the
//! lease minus [`stop_margin`], measured from when it *sent* the last
//! successful renewal: the server's TTL started later than that, so the
//! owner's shard is gone before any standby can create the key. Two
//! processes never run a shard at the same time, as long as a process is
//! not paused for longer than the margin.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::kv_lease::{self, LeaseError};
use crate::config::gateway_url::check_gateway_url;
use crate::gateway::untrusted;
use crate::gateway::{ShardId, machine::Resume};
use crate::secret::Secret;

/// The KV bucket of leases and checkpoints.
pub(crate) const BUCKET: &str = "discord_bridge_shards";

/// How often leases are renewed and taken: a fifth of the lease, at most a
/// second, so a standby takes a lapsed lease within about a second.
#[must_use]
pub(crate) fn tick(lease: Duration) -> Duration {
    (lease / 5).min(Duration::from_secs(1))
}

/// How long before its lease expires an owner stops a shard it could not
/// renew: two ticks, so the check that stops it cannot come too late.
#[must_use]
pub(crate) fn stop_margin(lease: Duration) -> Duration {
    2 * tick(lease)
}

/// How long a KV request may take while a lease is held, `since_renewal`
/// after its last successful renewal was sent: at most `cap`, and never past
/// the moment the shard must stop (the lease minus [`stop_margin`]). Zero:
/// stop the shard now. A request that does not answer (NATS gone or paused)
/// must not keep its shard running past its lease.
#[must_use]
pub(crate) fn request_budget(lease: Duration, since_renewal: Duration, cap: Duration) -> Duration {
    lease
        .saturating_sub(stop_margin(lease))
        .saturating_sub(since_renewal)
        .min(cap)
}

/// Who owns a lease: process, host, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// A unique id of the owning process (`host:pid:random`).
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it took the lease (Unix ms).
    pub since_ms: u64,
}

impl Owner {
    /// This process.
    #[must_use]
    pub fn this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        let pid = std::process::id();
        Self {
            id: format!("{host}:{pid}:{:08x}", fastrand::u32(..)),
            host,
            pid,
            since_ms: unix_ms(),
        }
    }
}

/// Where a shard's session stands, as its owner last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Discord's session id.
    pub session_id: String,
    /// Where to resume it.
    pub resume_url: Option<String>,
    /// Everything up to this sequence is stored.
    pub seq: u64,
    /// The process that wrote it.
    pub owner: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

impl Checkpoint {
    /// The RESUME this checkpoint allows, if it is usable: the values come
    /// from outside the process and are checked like Discord's own.
    #[must_use]
    pub fn resume(&self, allow_insecure: bool) -> Option<Resume> {
        let url = self.resume_url.as_deref()?;
        if self.seq == 0
            || !untrusted::is_session_id(&self.session_id)
            || check_gateway_url(url, allow_insecure).is_err()
        {
            return None;
        }
        Some(Resume {
            session_id: self.session_id.as_str().into(),
            resume_url: url.to_owned(),
            seq: self.seq,
        })
    }
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// The shard.
    pub shard: ShardId,
    revision: u64,
    /// When the last successful renewal was sent.
    renewed: tokio::time::Instant,
}

/// The KV store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// The bucket cannot be opened or created.
    #[error("cannot open or create the KV bucket {BUCKET}: {0}")]
    Bucket(#[source] jetstream::context::CreateKeyValueError),
    /// A read or write failed.
    #[error("KV {what} failed: {source}")]
    Kv {
        /// What was tried.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn kv_error(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> OwnershipError {
    move |source| OwnershipError::Kv { what, source }
}

/// One row of `discord-bridge shards`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardView {
    /// `[id, total]`.
    pub shard: [u32; 2],
    /// The owner, if the lease is held.
    pub owner: Option<Owner>,
    /// Age of the lease's latest renewal (ms), if held.
    pub lease_age_ms: Option<u64>,
    /// The checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
}

/// The leases and checkpoints of one bot.
#[derive(Clone)]
pub(crate) struct ShardStore {
    js: jetstream::Context,
    kv: kv::Store,
    bot: String,
    lease: Duration,
}

impl std::fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardStore")
            .field("bot", &self.bot)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl ShardStore {
    /// Opens (or creates) the bucket with `replicas` copies.
    ///
    /// # Errors
    /// The server cannot hold the bucket (no JetStream, or a nats-server
    /// older than 2.11 without per-key TTLs).
    pub(crate) async fn open(
        js: &jetstream::Context,
        token: &Secret,
        lease: Duration,
        replicas: usize,
    ) -> Result<Self, OwnershipError> {
        let kv = kv_lease::open_bucket(
            js,
            kv::Config {
                bucket: BUCKET.to_owned(),
                description: "discord-bridge shard leases and session checkpoints".into(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                limit_markers: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        )
        .await
        .map_err(OwnershipError::Bucket)?;
        Ok(Self {
            js: js.clone(),
            kv,
            bot: super::shared_floor::token_id(token),
            lease,
        })
    }

    /// Where the bot's shared session start budget lives.
    pub(crate) fn starts_budget(&self) -> super::session_starts::SharedBudget {
        super::session_starts::SharedBudget {
            kv: self.kv.clone(),
            key: format!("starts.{}", self.bot),
        }
    }

    /// The lease period.
    #[must_use]
    pub(crate) const fn lease_period(&self) -> Duration {
        self.lease
    }

    fn key(&self, kind: &str, shard: ShardId) -> String {
        format!("{kind}.{}.{}.{}", self.bot, shard.total, shard.id)
    }

    /// Takes `shard`'s lease for `owner`, unless another process holds it.
    ///
    /// # Errors
    /// The KV store failed (a held lease is `Ok(None)`).
    pub(crate) async fn acquire(
        &self,
        shard: ShardId,
        owner: &Owner,
    ) -> Result<Option<Lease>, OwnershipError> {
        let key = self.key("lease", shard);
        let value = owner_value(owner)?;
        let sent = tokio::time::Instant::now();
        match kv_lease::create(&self.js, &self.kv, BUCKET, &key, value, self.lease).await {
            Ok(revision) => Ok(Some(Lease {
                shard,
                revision,
                renewed: sent,
            })),
            Err(LeaseError::Held) => Ok(None),
            Err(LeaseError::Kv(e)) => Err(kv_error("lease create")(e)),
        }
    }

    /// Renews a held lease (compare-and-set on its revision, TTL reset).
    /// `Ok(false)` when another process took it.
    ///
    /// # Errors
    /// The KV store failed; the lease may still be ours until it expires.
    pub(crate) async fn renew(
        &self,
        lease: &mut Lease,
        owner: &Owner,
    ) -> Result<bool, OwnershipError> {
        let key = self.key("lease", lease.shard);
        let sent = tokio::time::Instant::now();
        match self
            .put(&key, owner_value(owner)?, Some(lease.revision))
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                lease.renewed = sent;
                Ok(true)
            }
            Err(LeaseError::Held) => Ok(false),
            Err(LeaseError::Kv(e)) => Err(kv_error("lease renew")(e)),
        }
    }

    /// Whether a lease that could not be renewed must be given up now.
    #[must_use]
    pub(crate) fn must_stop(&self, lease: &Lease) -> bool {
        lease.renewed.elapsed() + stop_margin(self.lease) >= self.lease
    }

    /// How long a KV request may take while `lease` is held: see
    /// [`request_budget`].
    #[must_use]
    pub(crate) fn request_budget(&self, lease: &Lease, cap: Duration) -> Duration {
        request_budget(self.lease, lease.renewed.elapsed(), cap)
    }

    /// When a held lease should be renewed: three times per period.
    #[must_use]
    pub(crate) fn renew_due(&self, lease: &Lease) -> bool {
        lease.renewed.elapsed() >= self.lease / 3
    }

    /// Gives a lease up so a successor can start at once.
    ///
    /// # Errors
    /// The KV store failed (the lease then expires on its own).
    pub(crate) async fn release(&self, lease: Lease) -> Result<(), OwnershipError> {
        let key = self.key("lease", lease.shard);
        self.kv
            .delete_expect_revision(&key, Some(lease.revision))
            .await
            .map_err(|e| kv_error("lease release")(Box::new(e)))
    }

    /// The process holding `shard`'s lease (its owner id), if any.
    ///
    /// # Errors
    /// The KV store failed.
    pub(crate) async fn lease_holder(
        &self,
        shard: ShardId,
    ) -> Result<Option<String>, OwnershipError> {
        let key = self.key("lease", shard);
        let entry = self
            .kv
            .entry(&key)
            .await
            .map_err(|e| kv_error("lease read")(Box::new(e)))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| {
                serde_json::from_slice::<Owner>(&e.value)
                    .map_or_else(|_| "unknown".to_owned(), |o| o.id)
            }))
    }

    /// The checkpoint of `shard`, if one was written.
    ///
    /// # Errors
    /// The KV store failed.
    pub(crate) async fn checkpoint(
        &self,
        shard: ShardId,
    ) -> Result<Option<Checkpoint>, OwnershipError> {
        let key = self.key("checkpoint", shard);
        let entry = self
            .kv
            .entry(&key)
            .await
            .map_err(|e| kv_error("checkpoint read")(Box::new(e)))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| serde_json::from_slice(&e.value).ok()))
    }

    /// Writes `shard`'s checkpoint.
    ///
    /// # Errors
    /// The KV store failed.
    pub(crate) async fn write_checkpoint(
        &self,
        shard: ShardId,
        checkpoint: &Checkpoint,
    ) -> Result<(), OwnershipError> {
        let key = self.key("checkpoint", shard);
        let value = serde_json::to_vec(checkpoint)
            .map_err(|e| kv_error("checkpoint encode")(Box::new(e)))?;
        self.kv
            .put(&key, value.into())
            .await
            .map(|_| ())
            .map_err(|e| kv_error("checkpoint write")(Box::new(e)))
    }

    /// Every shard of this bot with a lease or a checkpoint, in order.
    ///
    /// # Errors
    /// The KV store failed.
    pub(crate) async fn view(&self) -> Result<Vec<ShardView>, OwnershipError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| kv_error("key listing")(Box::new(e)))?;
        let mut views: std::collections::BTreeMap<(u32, u32), ShardView> = Default::default();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| kv_error("key listing")(Box::new(e)))?;
            let mut parts = key.split('.');
            let (Some(kind), Some(bot), Some(total), Some(id)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(total), Ok(id)) = (total.parse::<u32>(), id.parse::<u32>()) else {
                continue;
            };
            if bot != self.bot {
                continue;
            }
            let Ok(Some(entry)) = self.kv.entry(&key).await else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let view = views.entry((total, id)).or_insert_with(|| ShardView {
                shard: [id, total],
                owner: None,
                lease_age_ms: None,
                checkpoint: None,
            });
            match kind {
                "lease" => {
                    view.owner = serde_json::from_slice(&entry.value).ok();
                    let age = time::OffsetDateTime::now_utc() - entry.created;
                    view.lease_age_ms = u64::try_from(age.whole_milliseconds()).ok();
                }
                "checkpoint" => view.checkpoint = serde_json::from_slice(&entry.value).ok(),
                _ => {}
            }
        }
        Ok(views.into_values().collect())
    }

    /// A compare-and-set write with the lease TTL.
    async fn put(&self, key: &str, value: Bytes, revision: Option<u64>) -> Result<u64, LeaseError> {
        let mut headers = HeaderMap::new();
        if let Some(rev) = revision {
            headers.insert(
                header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                HeaderValue::from(rev),
            );
        }
        headers.insert(
            header::NATS_MESSAGE_TTL,
            HeaderValue::from(self.lease.as_secs().max(1)),
        );
        kv_lease::publish(&self.js, BUCKET, key, headers, value).await
    }
}

fn owner_value(owner: &Owner) -> Result<Bytes, OwnershipError> {
    serde_json::to_vec(owner)
        .map(Bytes::from)
        .map_err(|e| kv_error("owner encode")(Box::new(e)))
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_request_outlives_the_moment_the_shard_must_stop() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cap = s(2);
        // lease, since the last renewal, budget
        let table = [
            // A 2 s lease: ticks of 400 ms, stop 800 ms before it lapses.
            (s(2), ms(0), ms(1200)),
            (s(2), ms(800), ms(400)),
            (s(2), ms(1200), ms(0)),
            (s(2), s(5), ms(0)),
            // The default 10 s lease: ticks of 1 s; the cap applies first.
            (s(10), ms(3400), cap),
            (s(10), ms(7000), s(1)),
            (s(10), s(8), ms(0)),
        ];
        for (lease, since, budget) in table {
            assert_eq!(
                request_budget(lease, since, cap),
                budget,
                "lease {lease:?}, {since:?} since the last renewal"
            );
            // A zero budget is exactly the point where the shard must stop.
            assert_eq!(budget.is_zero(), since + stop_margin(lease) >= lease);
        }
    }
}
