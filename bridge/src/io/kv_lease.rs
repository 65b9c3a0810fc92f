//! Creating a JetStream KV key with a per-key TTL, correctly.
//!
//! A lease is a key that exactly one process can create and that the server
//! removes when its TTL ends. async-nats 0.51's `Store::create_with_ttl`
//! sends the TTL only on the first attempt: when the key exists as a delete
//! or expiry marker (every lease after the first one), it falls back to an
//! update *without* the TTL, and that key never expires — the next process
//! waiting for it waits until the bucket's max age. This module does the
//! same compare-and-set itself, with the TTL on both paths.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::{HeaderMap, HeaderValue, header};
use bytes::Bytes;

/// Opens the bucket `config` names, creating it when missing; a bucket
/// another process created at the same moment is opened instead.
///
/// # Errors
/// The server cannot hold it (no JetStream, or per-key TTLs before
/// nats-server 2.11).
pub(crate) async fn open_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, jetstream::context::CreateKeyValueError> {
    if let Ok(kv) = js.get_key_value(&config.bucket).await {
        return Ok(kv);
    }
    let bucket = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        Err(create) => js.get_key_value(&bucket).await.map_err(|_| create),
    }
}

/// Why a lease was not created.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeaseError {
    /// Another holder has it.
    #[error("the key is held")]
    Held,
    /// The KV bucket could not be read or written.
    #[error("the KV bucket failed: {0}")]
    Kv(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Creates `key` in `bucket` holding `value` for `ttl` (whole seconds, at
/// least one), unless it is held; returns its revision.
///
/// # Errors
/// [`LeaseError::Held`] when the key exists, or a failure of the bucket.
pub(crate) async fn create(
    js: &jetstream::Context,
    store: &kv::Store,
    bucket: &str,
    key: &str,
    value: Bytes,
    ttl: Duration,
) -> Result<u64, LeaseError> {
    let expected = match store.entry(key).await {
        Ok(None) => 0,
        Ok(Some(e)) if matches!(e.operation, kv::Operation::Delete | kv::Operation::Purge) => {
            e.revision
        }
        Ok(Some(_)) => return Err(LeaseError::Held),
        Err(e) => return Err(LeaseError::Kv(Box::new(e))),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        HeaderValue::from(expected),
    );
    headers.insert(
        header::NATS_MESSAGE_TTL,
        HeaderValue::from(ttl.as_secs().max(1)),
    );
    publish(js, bucket, key, headers, value).await
}

/// Writes `key` of `bucket` with `headers` (an expected revision, a TTL)
/// and waits for the stream's ack; returns the new revision. A failed
/// revision check is [`LeaseError::Held`].
///
/// # Errors
/// The revision check failed, or the bucket did.
pub(crate) async fn publish(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
    headers: HeaderMap,
    value: Bytes,
) -> Result<u64, LeaseError> {
    let subject = format!("$KV.{bucket}.{key}");
    let ack = js
        .publish_with_headers(subject, headers, value)
        .await
        .map_err(|e| LeaseError::Kv(Box::new(e)))?;
    match ack.await {
        Ok(ack) => Ok(ack.sequence),
        // Someone wrote the key between the read and the write.
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::PublishErrorKind::WrongLastSequence
            ) =>
        {
            Err(LeaseError::Held)
        }
        Err(e) => Err(LeaseError::Kv(Box::new(e))),
    }
}
