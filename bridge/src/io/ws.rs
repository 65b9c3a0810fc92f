//! One gateway WebSocket: TLS connect, a reader half for the shard task, and
//! a writer task that owns the sink so heartbeats never wait on a reader.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::codec::{Compression, Decoder};

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one write may take before the connection is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The smallest WebSocket message limit, whatever the payload cap.
const WIRE_FLOOR: usize = 64 << 20;
/// How long a close waits for Discord's close frame (the close handshake).
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// Frames queued for the writer; the 120/60 s send limit keeps this small.
const WRITER_QUEUE: usize = 256;

/// What the writer task sends.
#[derive(Debug)]
enum Outgoing {
    Text(String),
    Close(u16),
}

/// An open gateway connection as the shard task sees it.
pub struct Connection {
    /// Incoming WebSocket messages.
    pub reader: SplitStream<Stream>,
    /// This connection's decompression context.
    pub decoder: Decoder,
    writer: mpsc::Sender<Outgoing>,
    writer_task: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("decoder", &self.decoder)
            .finish()
    }
}

/// Opens a connection to `url` (already carrying its query).
///
/// # Errors
/// Connect, TLS or WebSocket handshake failure, or `timeout`; the message
/// never contains credentials (gateway URLs carry none).
pub async fn connect(
    url: &str,
    compression: Compression,
    max_payload: usize,
    timeout: Duration,
) -> Result<Connection, String> {
    // The cap applies to payloads, which are dropped (and the decompressor
    // kept in sync) when too large. The WebSocket layer must let such
    // messages through to be dropped: refusing them would end the connection,
    // and Discord would replay the same payload after the RESUME, forever.
    // Only absurd messages (beyond 4 × the cap and 64 MiB) end a connection.
    let wire_max = max_payload.saturating_mul(4).max(WIRE_FLOOR);
    let config = WebSocketConfig::default()
        .max_message_size(Some(wire_max))
        .max_frame_size(Some(wire_max));
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (stream, _response) = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return Err(describe(&e)),
        Err(_) => return Err(format!("no WebSocket handshake within {timeout:?}")),
    };
    let decoder = Decoder::new(compression, max_payload).map_err(|e| e.to_string())?;
    let (sink, reader) = stream.split();
    let (writer, rx) = mpsc::channel(WRITER_QUEUE);
    let writer_task = tokio::spawn(write_loop(sink, rx));
    Ok(Connection {
        reader,
        decoder,
        writer,
        writer_task,
    })
}

impl Connection {
    /// Queues a text frame; `false` if the writer has stopped (the reader will
    /// report the connection's end).
    pub fn send(&self, text: String) -> bool {
        self.writer.try_send(Outgoing::Text(text)).is_ok()
    }

    /// Sends a close frame and completes the close handshake in the
    /// background: the reader keeps reading (and discarding) until Discord's
    /// close frame arrives or [`CLOSE_HANDSHAKE`] passes, so the socket ends
    /// cleanly rather than with a reset that would hide the close code. The
    /// returned handle ends within a few seconds.
    pub fn close(self, code: u16) -> JoinHandle<()> {
        let _ = self.writer.try_send(Outgoing::Close(code));
        let Self {
            mut reader,
            writer,
            writer_task,
            ..
        } = self;
        tokio::spawn(async move {
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
        })
    }
}

async fn write_loop(mut sink: SplitSink<Stream, Message>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Text(text) => {
                match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::text(text))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %describe(&e), "gateway write failed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!("gateway write timed out");
                        return;
                    }
                }
            }
            Outgoing::Close(code) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "".into(),
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame))))
                    .await;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                return;
            }
        }
    }
}

/// A transport error for logs and status events.
#[must_use]
pub fn describe(e: &WsError) -> String {
    match e {
        WsError::Http(response) => {
            format!("HTTP {} during the WebSocket handshake", response.status())
        }
        other => other.to_string(),
    }
}
