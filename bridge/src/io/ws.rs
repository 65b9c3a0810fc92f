//! One gateway WebSocket: TLS connect, a reader half for the shard task, and
//! a writer task that owns the sink so heartbeats never wait on a reader.
//!
//! The writer and the close handshake run as supervised tasks of the shard
//! ([`Tasks`]): they end on their own (the writer when its queue closes or a
//! write fails, the close within a few seconds), and a panic in either ends
//! the process instead of leaving a shard that can no longer send.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use tracing::Instrument as _;

use super::commands::Done;
use super::tasks::{TaskError, TaskId, Tasks};
use crate::codec::{CodecError, Compression, Decoder};
use crate::gateway::ShardId;
use crate::tls::DiscordTls;

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one write may take before the connection is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The smallest WebSocket message limit, whatever the payload cap.
const WIRE_FLOOR: usize = 64 << 20;
/// How long a close waits for Discord's close frame (the close handshake).
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// Bytes read from the socket per call (tungstenite's read buffer).
const READ_BUFFER: usize = 16 << 10;
/// Frames queued for the writer; the 120/60 s send limit keeps this small.
const WRITER_QUEUE: usize = 256;

/// What the writer task sends. A text frame may carry a completion, sent
/// once the frame is written to the socket and dropped unsent when the
/// connection ends first.
#[derive(Debug)]
enum Outgoing {
    Text(String, Option<Done>),
    Close(u16, &'static str),
}

/// An open gateway connection as the shard task sees it.
pub(crate) struct Connection {
    /// Incoming WebSocket messages.
    pub reader: SplitStream<Stream>,
    /// This connection's decompression context.
    pub decoder: Decoder,
    writer: mpsc::Sender<Outgoing>,
    writer_task: JoinHandle<Option<()>>,
    span: tracing::Span,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("decoder", &self.decoder)
            .finish()
    }
}

/// How a connection is opened.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Transport compression.
    pub compression: Compression,
    /// Payload size cap.
    pub max_payload: usize,
    /// Connect + handshake timeout.
    pub timeout: Duration,
    /// The roots `wss://` trusts (shared with `GET /gateway/bot`).
    pub tls: DiscordTls,
}

/// A connection could not be opened. The text never contains credentials
/// (gateway URLs carry none).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// TCP, TLS or the WebSocket handshake failed.
    #[error("{}", describe(.0))]
    Handshake(#[source] WsError),
    /// No handshake within the timeout.
    #[error("no WebSocket handshake within {0:?}")]
    Timeout(Duration),
    /// The decompressor could not be set up.
    #[error("cannot set up {compression:?} decompression: {source}")]
    Decoder {
        /// The compression asked for.
        compression: Compression,
        /// Why.
        #[source]
        source: CodecError,
    },
}

/// Opens a connection to `url` (already carrying its query); its writer
/// runs as a task of `shard` in `span`.
///
/// # Errors
/// Connect, TLS or WebSocket handshake failure, or the timeout.
pub(crate) async fn connect(
    url: &str,
    options: Options,
    tasks: &Tasks,
    shard: ShardId,
    span: tracing::Span,
) -> Result<Connection, ConnectError> {
    let Options {
        compression,
        max_payload,
        timeout,
        tls,
    } = options;
    // The cap applies to payloads, which are dropped (and the decompressor
    // kept in sync) when too large. The WebSocket layer must let such
    // messages through to be dropped: refusing them would end the connection,
    // and Discord would replay the same payload after the RESUME, forever.
    // Only absurd messages (beyond 4 × the cap and 64 MiB) end a connection.
    let wire_max = max_payload.saturating_mul(4).max(WIRE_FLOOR);
    // tungstenite zero-fills its read buffer up to this size: at the
    // default 128 KiB that is most of an idle shard's memory. 16 KiB still
    // reads a dozen chat events per call during a flood.
    let config = WebSocketConfig::default()
        .max_message_size(Some(wire_max))
        .max_frame_size(Some(wire_max))
        .read_buffer_size(READ_BUFFER);
    // The connector is used for wss:// only; ws:// (the simulator) stays plain.
    let connector = Connector::Rustls(tls.client_config());
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, Some(connector));
    let (stream, _response) = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return Err(ConnectError::Handshake(e)),
        Err(_) => return Err(ConnectError::Timeout(timeout)),
    };
    let decoder =
        Decoder::new(compression, max_payload).map_err(|source| ConnectError::Decoder {
            compression,
            source,
        })?;
    let (sink, reader) = stream.split();
    let (writer, rx) = mpsc::channel(WRITER_QUEUE);
    let writer_task = tasks.spawn(
        TaskId::shard("gateway writer", shard),
        write_loop(sink, rx).instrument(span.clone()),
    );
    Ok(Connection {
        reader,
        decoder,
        writer,
        writer_task,
        span,
    })
}

impl Connection {
    /// Queues a text frame, with a completion for when it is written;
    /// `false` if the writer has stopped (the reader will report the
    /// connection's end) — the completion is then dropped.
    pub(crate) fn send(&self, text: String, done: Option<Done>) -> bool {
        self.writer.try_send(Outgoing::Text(text, done)).is_ok()
    }

    /// Sends a close frame and completes the close handshake in the
    /// background: the reader keeps reading (and discarding) until Discord's
    /// close frame arrives or [`CLOSE_HANDSHAKE`] passes, so the socket ends
    /// cleanly rather than with a reset that would hide the close code. The
    /// returned handle ends within a few seconds.
    ///
    /// The close frame is queued behind what was already queued, and the
    /// writer only stops at it or when the queue closes, never on a
    /// cancellation of its own: a shutdown therefore always reaches Discord
    /// with the code it chose.
    pub(crate) fn close(
        self,
        code: u16,
        reason: &'static str,
        tasks: &Tasks,
        shard: ShardId,
    ) -> JoinHandle<Option<()>> {
        let Self {
            mut reader,
            writer,
            writer_task,
            span,
            ..
        } = self;
        let queued = writer.try_send(Outgoing::Close(code, reason)).is_ok();
        let handshake = async move {
            if !queued {
                // A full queue means the peer stopped reading: no close
                // frame can be delivered, so the connection is just dropped.
                tracing::warn!(
                    code,
                    "the writer queue is full; dropping the connection without a close frame"
                );
            }
            let drain = async {
                while let Some(Ok(msg)) = reader.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, drain).await;
            drop(writer);
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer_task).await;
            Ok(())
        };
        tasks.spawn(
            TaskId::shard("gateway close", shard),
            handshake.instrument(span),
        )
    }
}

async fn write_loop(
    mut sink: SplitSink<Stream, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
) -> Result<(), TaskError> {
    crate::failpoint::hit("gateway-writer")?;
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Text(text, done) => {
                match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::text(text))).await {
                    Ok(Ok(())) => {
                        if let Some(done) = done {
                            let _ = done.send(Ok(()));
                        }
                    }
                    // The reader sees the connection end and reports it.
                    Ok(Err(e)) => {
                        tracing::debug!(error = %describe(&e), "gateway write failed");
                        return Ok(());
                    }
                    Err(_) => {
                        tracing::warn!("gateway write timed out");
                        return Ok(());
                    }
                }
            }
            Outgoing::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame))))
                    .await;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A transport error for logs and status events. A refused certificate
/// names the setting that adds a trusted CA.
#[must_use]
pub(crate) fn describe(e: &WsError) -> String {
    if let Some(tls) = crate::tls::rustls_error(e).filter(|t| crate::tls::is_certificate_problem(t))
    {
        return format!(
            "TLS: {tls}; if a proxy or the simulator serves the gateway with its own CA, set \
             discord.tls_ca (DISCORD_TLS_CA) to that CA's PEM file"
        );
    }
    match e {
        WsError::Http(response) => {
            format!("HTTP {} during the WebSocket handshake", response.status())
        }
        other => other.to_string(),
    }
}
