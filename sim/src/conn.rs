//! One WebSocket connection: the IO around [`protocol`](super::protocol).
//! The task owns the socket and the compressor; it reads client payloads,
//! delivers its session's dispatches when woken, and carries out control
//! commands, each after sending the dispatches queued before it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::flood::FloodRun;
use super::protocol::{self, Action, Ctx};
use super::record::{CloseInfo, Closer, ConnId, ConnectionRecord, Endpoint, Violation};
use super::state::{Command, RawFrame, Shared};
use super::transport::Stream;
use crate::compress::Compression;
use crate::compress::{ZlibEncoder, ZstdEncoder};

/// How long a closing connection waits for the peer's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The request a connection was upgraded from.
pub(crate) struct Upgrade {
    pub(crate) endpoint: Endpoint,
    pub(crate) path: String,
    pub(crate) query: String,
}

/// Checks the gateway query (`v`, `encoding`, `compress`) like Discord does.
fn check_query(query: &str) -> (Compression, Option<(u16, String)>) {
    let mut v = None;
    let mut encoding = None;
    let mut compress = None;
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match key {
            "v" => v = Some(value),
            "encoding" => encoding = Some(value),
            "compress" => compress = Some(value),
            _ => {}
        }
    }
    let compression = match compress.map(|c| (c, Compression::from_query(c))) {
        None => Compression::None,
        Some((_, Some(compression))) => compression,
        Some((other, None)) => {
            let reason = format!("Unknown compression {other:?}.");
            return (Compression::None, Some((4000, reason)));
        }
    };
    let refusal = if v != Some("10") {
        Some((4012, "Invalid API version.".to_owned()))
    } else if encoding.is_some_and(|e| e != "json") {
        Some((
            4002,
            "Decode error: only encoding=json is supported.".to_owned(),
        ))
    } else {
        None
    };
    (compression, refusal)
}

enum Encoder {
    Plain,
    Zlib(ZlibEncoder),
    Zstd(ZstdEncoder),
}

/// The connection ended, and how.
type Step = Result<(), CloseInfo>;

struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    ws: WebSocketStream<Stream>,
    encoder: Encoder,
    /// The flood being written, and when its next dispatch is due (paced).
    flood: Option<(Arc<FloodRun>, Instant)>,
}

/// Dispatches of a flood written per lock of the state and per socket
/// flush: small enough that heartbeats and commands are served in between.
const FLOOD_BATCH: u64 = 32;

/// Serves one upgraded connection until it ends or `cancel` fires.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    ws: WebSocketStream<Stream>,
    upgrade: Upgrade,
    cancel: CancellationToken,
) {
    let (compression, refusal) = check_query(&upgrade.query);
    let notify = Arc::new(Notify::new());
    let record = ConnectionRecord {
        id: ConnId(0),
        endpoint: upgrade.endpoint,
        path: upgrade.path,
        query: upgrade.query,
        compression,
        shard: None,
        session_id: None,
        opened: Instant::now(),
        closed: None,
    };
    let (id, commands) = shared.with(|inner| inner.open(record, Arc::clone(&notify)));
    tracing::debug!(conn = %id, %compression, "sim: connection opened");
    let encoder = match compression {
        Compression::None => Ok(Encoder::Plain),
        Compression::ZlibStream => Ok(Encoder::Zlib(ZlibEncoder::new())),
        Compression::ZstdStream => ZstdEncoder::new().map(Encoder::Zstd),
    };
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        id,
        ws,
        encoder: Encoder::Plain,
        flood: None,
    };
    let info = match (refusal, encoder) {
        (Some((code, reason)), _) => conn.close(code, &reason, Closer::Server).await,
        (None, Err(error)) => {
            let reason = format!("compressor: {error}");
            conn.close(1011, &reason, Closer::Server).await
        }
        (None, Ok(encoder)) => {
            conn.encoder = encoder;
            let run = conn.run(commands, notify, cancel.clone());
            tokio::pin!(run);
            tokio::select! {
                info = &mut run => info,
                () = cancel.cancelled() => timeout(CLOSE_GRACE, &mut run).await.unwrap_or_else(|_| CloseInfo {
                    by: Closer::Shutdown,
                    code: None,
                    reason: "simulator shut down".to_owned(),
                    at: Instant::now(),
                }),
            }
        }
    };
    if let Some((run, _)) = conn.flood.take() {
        run.abort();
    }
    tracing::debug!(conn = %id, by = ?info.by, code = ?info.code, "sim: connection closed");
    shared.with(|inner| inner.closed(id, info));
}

impl Conn {
    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        notify: Arc<Notify>,
        cancel: CancellationToken,
    ) -> CloseInfo {
        let interval = self.shared.config.heartbeat_interval.as_millis();
        let hello =
            format!(r#"{{"op":10,"d":{{"heartbeat_interval":{interval}}},"s":null,"t":null}}"#);
        if let Err(info) = self.send(&hello).await {
            return info;
        }
        loop {
            let deadline = self.heartbeat_deadline();
            let flood_at = self.flood.as_ref().map(|(_, at)| *at);
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    Err(self.close(1001, "Simulator shutting down.", Closer::Shutdown).await)
                }
                Some(command) = commands.recv() => self.command(command).await,
                () = notify.notified() => self.flush().await,
                message = self.ws.next() => self.client_message(message).await,
                () = sleep_until(flood_at.unwrap_or_else(Instant::now)), if flood_at.is_some() => {
                    self.flood_batch().await
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let shard = self.shared.read(|i| i.live.get(&self.id).and_then(|l| l.shard));
                    let violation = Violation::HeartbeatTimeout { conn: self.id, shard };
                    self.shared.with(|i| i.violation(violation, Instant::now()));
                    Err(self.close(4009, "Session timed out.", Closer::Server).await)
                }
            };
            if let Err(info) = step {
                return info;
            }
        }
    }

    fn heartbeat_deadline(&self) -> Option<Instant> {
        let limit = self.shared.config.heartbeat_timeout?;
        self.shared
            .read(|i| i.live.get(&self.id).map(|l| l.last_heartbeat + limit))
    }

    async fn client_message(&mut self, message: Option<Result<Message, WsError>>) -> Step {
        let abort = |reason: String| CloseInfo {
            by: Closer::ClientAbort,
            code: None,
            reason,
            at: Instant::now(),
        };
        match message {
            None => Err(abort("connection ended without a close frame".to_owned())),
            Some(Err(error)) => Err(abort(error.to_string())),
            Some(Ok(Message::Text(text))) => self.payload(text.as_str()).await,
            Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.payload(text).await,
                Err(_) => Err(self.close(4002, "Decode error.", Closer::Server).await),
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((None, String::new()), |f| {
                    (Some(u16::from(f.code)), f.reason.as_str().to_owned())
                });
                let info = CloseInfo {
                    by: Closer::Client,
                    code,
                    reason,
                    at: Instant::now(),
                };
                self.shared.with(|i| i.closed(self.id, info.clone()));
                self.drain().await;
                Err(info)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
        }
    }

    async fn payload(&mut self, text: &str) -> Step {
        let shared = Arc::clone(&self.shared);
        let ctx = Ctx {
            config: &shared.config,
            resume_url: &shared.resume_url,
        };
        let id = self.id;
        let actions =
            shared.with(|inner| protocol::on_payload(&ctx, inner, id, text, Instant::now()));
        for action in actions {
            match action {
                Action::Send(payload) => self.send(&payload).await?,
                Action::Flush => self.flush().await?,
                Action::Close(code, reason) => {
                    return Err(self.close(code, &reason, Closer::Server).await);
                }
            }
        }
        Ok(())
    }

    async fn command(&mut self, command: Command) -> Step {
        self.flush().await?;
        match command {
            Command::Payload(text) => self.send(&text).await,
            Command::Raw(frame) => {
                let message = match frame {
                    RawFrame::Text(text) => Message::text(text),
                    RawFrame::Binary(bytes) => Message::binary(bytes),
                };
                self.write(message).await
            }
            Command::Reconnect => {
                self.shared.with(|i| i.detach(self.id));
                self.send(protocol::RECONNECT).await
            }
            Command::InvalidSession(resumable) => {
                self.shared.with(|i| i.detach(self.id));
                self.send(protocol::invalid_session(resumable)).await
            }
            Command::Close(code, reason) => Err(self.close(code, &reason, Closer::Server).await),
            Command::Flood(run) => {
                if let Some((previous, _)) = self.flood.replace((run, Instant::now())) {
                    previous.abort();
                }
                Ok(())
            }
            Command::Drop => {
                let _ = self.ws.get_mut().shutdown().await;
                Err(CloseInfo {
                    by: Closer::ServerDrop,
                    code: None,
                    reason: "dropped without a close frame".to_owned(),
                    at: Instant::now(),
                })
            }
        }
    }

    /// Sends the attached session's dispatches that this connection has not
    /// sent yet.
    async fn flush(&mut self) -> Step {
        let id = self.id;
        match self.shared.with(|i| i.pending(id)) {
            Ok(payloads) => {
                for payload in payloads {
                    self.send(&payload).await?;
                }
                Ok(())
            }
            Err(missed) => {
                tracing::warn!(conn = %id, missed, "sim: client too slow, dispatches evicted");
                Err(self
                    .close(4000, "Dispatch backlog overflow.", Closer::Server)
                    .await)
            }
        }
    }

    /// Writes the flood's next dispatches (those due, when paced) with one
    /// flush; the write waits while the client does not read.
    async fn flood_batch(&mut self) -> Step {
        let Some((run, due)) = self.flood.clone() else {
            return Ok(());
        };
        self.flush().await?;
        let n = match run.flood.rate {
            None => FLOOD_BATCH,
            Some(rate) => {
                let started = run.with(|d| d.started).unwrap_or(due);
                let elapsed = Instant::now().saturating_duration_since(started);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let owed = (elapsed.as_secs_f64() * f64::from(rate)) as u64 + 1;
                owed.saturating_sub(run.written.load(Ordering::Relaxed))
                    .clamp(1, FLOOD_BATCH)
            }
        }
        .min(run.remaining());
        let capacity = self.shared.config.replay_capacity;
        let id = self.id;
        let (payloads, first) = self.shared.with(|i| i.append_flood(id, &run, n, capacity));
        if payloads.is_empty() {
            // The session went away (op 7, op 9, close queued): stop here.
            run.abort();
            self.flood = None;
            return Ok(());
        }
        let now = Instant::now();
        let count = payloads.len() as u64;
        run.with(|d| {
            d.first_seq.get_or_insert(first);
            d.started.get_or_insert(now);
            d.last_seq = first + count - 1;
            if run.flood.record_times {
                d.times.extend(std::iter::repeat_n(now, payloads.len()));
            }
        });
        let mut bytes = 0;
        for payload in &payloads {
            let message = self.encode(payload)?;
            bytes += message.len() as u64;
            self.ws.feed(message).await.map_err(|error| CloseInfo {
                by: Closer::ClientAbort,
                code: None,
                reason: error.to_string(),
                at: Instant::now(),
            })?;
        }
        SinkExt::<Message>::flush(&mut self.ws)
            .await
            .map_err(|error| CloseInfo {
                by: Closer::ClientAbort,
                code: None,
                reason: error.to_string(),
                at: Instant::now(),
            })?;
        run.wire_bytes.fetch_add(bytes, Ordering::Relaxed);
        let written = run.written.fetch_add(count, Ordering::Relaxed) + count;
        if run.remaining() == 0 {
            let end = Instant::now();
            run.with(|d| d.finished = Some(end));
            self.flood = None;
        } else if let (Some(rate), Some(entry)) = (run.flood.rate, self.flood.as_mut()) {
            let started = run.with(|d| d.started).unwrap_or(now);
            #[allow(clippy::cast_precision_loss)]
            let next = Duration::from_secs_f64(written as f64 / f64::from(rate));
            entry.1 = started + next;
        }
        run.progress.send_replace(written);
        Ok(())
    }

    /// One payload through the connection's compressor.
    fn encode(&mut self, payload: &str) -> Result<Message, CloseInfo> {
        Ok(match &mut self.encoder {
            Encoder::Plain => Message::text(payload.to_owned()),
            Encoder::Zlib(z) => Message::binary(z.encode(payload.as_bytes())),
            Encoder::Zstd(z) => match z.encode(payload.as_bytes()) {
                Ok(bytes) => Message::binary(bytes),
                Err(error) => {
                    return Err(CloseInfo {
                        by: Closer::Server,
                        code: Some(1011),
                        reason: format!("compressor: {error}"),
                        at: Instant::now(),
                    });
                }
            },
        })
    }

    /// Sends one payload through the connection's compressor.
    async fn send(&mut self, payload: &str) -> Step {
        let message = match &mut self.encoder {
            Encoder::Plain => Message::text(payload.to_owned()),
            Encoder::Zlib(z) => Message::binary(z.encode(payload.as_bytes())),
            Encoder::Zstd(z) => match z.encode(payload.as_bytes()) {
                Ok(bytes) => Message::binary(bytes),
                Err(error) => {
                    let reason = format!("compressor: {error}");
                    return Err(self.close(1011, &reason, Closer::Server).await);
                }
            },
        };
        self.write(message).await
    }

    async fn write(&mut self, message: Message) -> Step {
        self.ws.send(message).await.map_err(|error| CloseInfo {
            by: Closer::ClientAbort,
            code: None,
            reason: error.to_string(),
            at: Instant::now(),
        })
    }

    /// Sends a close frame, records it, and waits (briefly) for the client's.
    async fn close(&mut self, code: u16, reason: &str, by: Closer) -> CloseInfo {
        let reason = truncate(reason, 123);
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.clone().into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        let info = CloseInfo {
            by,
            code: Some(code),
            reason,
            at: Instant::now(),
        };
        self.shared.with(|i| i.closed(self.id, info.clone()));
        self.drain().await;
        info
    }

    /// Reads until the closing handshake completes (or the grace period ends).
    async fn drain(&mut self) {
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// A close reason fits in 123 bytes; cut at a character boundary.
fn truncate(reason: &str, max: usize) -> String {
    let mut end = reason.len().min(max);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rules() {
        let ok = check_query("v=10&encoding=json&compress=zstd-stream");
        assert_eq!(ok, (Compression::ZstdStream, None));
        assert_eq!(check_query("encoding=json&v=10").1, None);
        assert_eq!(check_query("v=9&encoding=json").1.map(|r| r.0), Some(4012));
        assert_eq!(check_query("encoding=json").1.map(|r| r.0), Some(4012));
        assert_eq!(check_query("v=10&encoding=etf").1.map(|r| r.0), Some(4002));
        assert_eq!(check_query("v=10&compress=gzip").1.map(|r| r.0), Some(4000));
    }

    #[test]
    fn close_reasons_are_cut_at_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("ok", 123), "ok");
    }
}
