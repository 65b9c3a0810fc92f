//! Reading JetStream streams back for assertions.
//!
//! Tests assert on what was *stored*, not on what a subscriber happened to
//! see: the stream sequence, the headers (`Nats-Msg-Id`, `Discord-*`) and the
//! payload of every message, in order. Messages are fetched one by one by
//! sequence (`STREAM.MSG.GET`), which needs no consumer (so it does not change
//! the stream's consumer count that a test may assert on) and works on
//! streams without `allow_direct`.

use std::time::Duration;

use async_nats::jetstream::stream::{Info, RawMessageErrorKind};
use async_nats::jetstream::{
    Context, ErrorCode, context::GetStreamErrorKind, message::StreamMessage,
};

use crate::wait::eventually;

/// The stream's current info (config and state).
///
/// # Panics
///
/// When the stream does not exist or the request fails.
pub async fn stream_info(js: &Context, stream: &str) -> Info {
    try_stream_info(js, stream)
        .await
        .unwrap_or_else(|| panic!("JetStream stream {stream} does not exist"))
}

/// The stream's info, or `None` while it does not exist (yet).
///
/// # Panics
///
/// When the request fails for another reason than a missing stream.
pub async fn try_stream_info(js: &Context, stream: &str) -> Option<Info> {
    let handle = match js.get_stream(stream).await {
        Ok(handle) => handle,
        Err(err) => match err.kind() {
            GetStreamErrorKind::JetStream(js_err)
                if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                return None;
            }
            _ => panic!("getting JetStream stream {stream}: {err}"),
        },
    };
    Some(
        handle
            .get_info()
            .await
            .unwrap_or_else(|err| panic!("reading info of JetStream stream {stream}: {err}")),
    )
}

/// Every message currently stored in `stream`, in stream-sequence order.
/// Sequences deleted or purged while reading are skipped.
///
/// # Panics
///
/// When the stream does not exist or a request fails.
pub async fn read_stream(js: &Context, stream: &str) -> Vec<StreamMessage> {
    let info = stream_info(js, stream).await;
    if info.state.messages == 0 {
        return Vec::new();
    }
    let handle = js
        .get_stream_no_info(stream)
        .await
        .unwrap_or_else(|err| panic!("opening JetStream stream {stream}: {err}"));
    let mut messages = Vec::with_capacity(usize::try_from(info.state.messages).unwrap_or(0));
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        match handle.get_raw_message(sequence).await {
            Ok(message) => messages.push(message),
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(err) => panic!("reading sequence {sequence} of JetStream stream {stream}: {err}"),
        }
    }
    messages
}

/// Waits until `stream` exists and holds at least `count` messages, then
/// returns all of them (see [`read_stream`]). The usual way to await events a
/// bridge publishes asynchronously.
///
/// # Panics
///
/// When `timeout` elapses first, naming the stream and the count reached.
pub async fn wait_for_messages(
    js: &Context,
    stream: &str,
    count: u64,
    timeout: Duration,
) -> Vec<StreamMessage> {
    eventually(
        timeout,
        format_args!("{count} messages in JetStream stream {stream}"),
        || async move {
            let info = try_stream_info(js, stream).await?;
            (info.state.messages >= count).then_some(())
        },
    )
    .await;
    read_stream(js, stream).await
}

/// The value of header `name` on `message`, if present.
#[must_use]
pub fn header<'a>(message: &'a StreamMessage, name: &str) -> Option<&'a str> {
    message.headers.get(name).map(|value| value.as_str())
}

/// The payload parsed as JSON.
///
/// # Panics
///
/// When the payload is not JSON, showing it.
#[must_use]
pub fn payload_json(message: &StreamMessage) -> serde_json::Value {
    serde_json::from_slice(&message.payload).unwrap_or_else(|err| {
        panic!(
            "payload of stream sequence {} is not JSON ({err}): {}",
            message.sequence,
            String::from_utf8_lossy(&message.payload)
        )
    })
}
