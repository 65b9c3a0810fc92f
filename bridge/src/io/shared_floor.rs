//! The identify floor across processes: every bridge
//! sharing the NATS server takes the same lease before an IDENTIFY, so two
//! processes running different shards of one bot never identify in the same
//! `max_concurrency` bucket within 5 s.
//!
//! The lease is a key in a JetStream KV bucket created with a per-key TTL:
//! creating the key succeeds for exactly one process, and the server removes
//! it when the TTL ends, so no process compares its clock with another's. The
//! key is named after a hash of the bot token (the limit is per bot; the
//! token itself never leaves the process) and the bucket number. The key is
//! created through [`kv_lease`](super::kv_lease), so every lease, not only
//! the first, carries its TTL.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::kv_lease::{self, LeaseError};
use crate::secret::Secret;

/// The KV bucket holding identify leases.
pub(crate) const BUCKET: &str = "discord_bridge_identify";

/// The shared floor cannot be used; the process keeps its own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FloorError {
    /// The lease bucket cannot be opened or created.
    #[error("cannot open or create the KV bucket {BUCKET}: {0}")]
    Bucket(#[source] jetstream::context::CreateKeyValueError),
    /// A lease could not be written.
    #[error("cannot take an identify lease: {0}")]
    Lease(#[source] LeaseError),
}

/// Cross-process identify leases for one bot.
#[derive(Clone)]
pub(crate) struct SharedFloor {
    js: jetstream::Context,
    kv: kv::Store,
    namespace: String,
    floor: Duration,
}

impl std::fmt::Debug for SharedFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFloor")
            .field("namespace", &self.namespace)
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl SharedFloor {
    /// Opens (or creates) the lease bucket.
    ///
    /// # Errors
    /// The server cannot hold per-key TTLs (nats-server before 2.11) or the
    /// bucket cannot be created; the caller then keeps the floor per process.
    pub(crate) async fn open(
        js: &jetstream::Context,
        token: &Secret,
        floor: Duration,
        replicas: usize,
    ) -> Result<Self, FloorError> {
        let kv = kv_lease::open_bucket(
            js,
            kv::Config {
                bucket: BUCKET.to_owned(),
                description: "discord-bridge identify leases (one key per bot and bucket)".into(),
                history: 1,
                storage: jetstream::stream::StorageType::Memory,
                num_replicas: replicas,
                max_age: Duration::from_secs(3600),
                limit_markers: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        )
        .await
        .map_err(FloorError::Bucket)?;
        Ok(Self {
            js: js.clone(),
            kv,
            namespace: format!("bot-{}", token_id(token)),
            floor: whole_seconds(floor),
        })
    }

    /// Waits until this process holds the lease of `bucket`. `Err` means the
    /// lease cannot be taken at all (the caller falls back to its local floor).
    ///
    /// # Errors
    /// The KV bucket refused the write for another reason than "taken".
    pub(crate) async fn acquire(&self, bucket: u32) -> Result<(), FloorError> {
        let key = format!("{}.{bucket}", self.namespace);
        loop {
            match kv_lease::create(&self.js, &self.kv, BUCKET, &key, Bytes::new(), self.floor).await
            {
                Ok(_) => return Ok(()),
                Err(LeaseError::Held) => {
                    tracing::debug!(bucket, "identify lease held; waiting");
                    self.wait_released(&key).await;
                }
                Err(e) => return Err(FloorError::Lease(e)),
            }
        }
    }

    /// Returns when the key is gone (its TTL ended), or after a little more
    /// than one floor in case the expiry marker was missed.
    async fn wait_released(&self, key: &str) {
        let wait = async {
            let Ok(mut watch) = self.kv.watch(key).await else {
                return;
            };
            // It may have expired between the failed create and the watch.
            if !matches!(self.kv.entry(key).await, Ok(Some(e)) if e.operation == kv::Operation::Put)
            {
                return;
            }
            while let Some(Ok(entry)) = watch.next().await {
                if entry.operation != kv::Operation::Put {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(self.floor + Duration::from_secs(1), wait).await;
    }
}

/// Per-key TTLs have a resolution of whole seconds (a 5.5 s TTL expires after
/// 5 s), so the lease is rounded up: never shorter than the floor.
fn whole_seconds(floor: Duration) -> Duration {
    let secs = floor.as_secs() + u64::from(floor.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

/// A stable, non-reversible id of the bot: the first 16 bytes of the token's
/// SHA-256, in hex.
pub(crate) fn token_id(token: &Secret) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_round_up_to_whole_seconds() {
        assert_eq!(
            whole_seconds(Duration::from_millis(5_500)),
            Duration::from_secs(6)
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            whole_seconds(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(whole_seconds(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn the_key_names_the_bot_without_the_token() {
        let id = token_id(&Secret::new(
            "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
        ));
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, token_id(&Secret::new("another")));
        assert!(!id.contains("MTk4"));
    }
}
