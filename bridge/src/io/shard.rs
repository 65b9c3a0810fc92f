//! The task of one shard: owns the socket, the timers and the machine, and
//! carries out the machine's actions. All protocol decisions are the
//! machine's; this file only moves bytes and waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::core_sink::CoreSink;
use super::identify::IdentifyQueue;
use super::outbox::Outbox;
use super::publisher::{AckWatch, headers};
use super::status_service::ShardReporter;
use super::ws::{self, Connection};
use crate::codec::{Compression, Frame};
use crate::gateway::machine::{Action, Input, Machine, PublishKind, Stop};

type Pending<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// What a shard task needs besides its machine.
pub struct ShardIo {
    /// The protocol.
    pub machine: Machine,
    /// Transport compression of every connection.
    pub compression: Compression,
    /// Payload size cap.
    pub max_payload: usize,
    /// Connect + handshake timeout.
    pub connect_timeout: Duration,
    /// Identify permits.
    pub identify: Arc<IdentifyQueue>,
    /// Durable events go here.
    pub outbox: Arc<Outbox>,
    /// The publisher's progress.
    pub acks: AckWatch,
    /// Status events and the firehose.
    pub sink: CoreSink,
    /// This shard's entry in the status endpoint.
    pub reporter: ShardReporter,
}

/// Runs the shard until it stops; `Ok` on shutdown, `Err(message)` when
/// Discord refused it for good.
pub async fn run(mut io: ShardIo, cancel: CancellationToken) -> Result<(), String> {
    let shard = io.machine.shard();
    let mut actions = Vec::with_capacity(16);
    let mut conn: Option<Connection> = None;
    let mut connecting: Pending<Result<Connection, String>> = None;
    let mut identify: Pending<()> = None;
    let mut closing: Vec<JoinHandle<()>> = Vec::new();
    let mut stop: Option<Stop> = None;
    let mut shutdown_sent = false;

    io.machine
        .handle(Instant::now().into_std(), Input::Start, &mut actions);
    loop {
        // Carry out what the machine decided; a refused publish is fed back.
        while !actions.is_empty() {
            let mut rejected = None;
            for action in actions.drain(..) {
                match action {
                    Action::Connect { url } => {
                        identify = None;
                        conn = None;
                        tracing::debug!(shard = %shard, url, "connecting");
                        let (compression, max, timeout) =
                            (io.compression, io.max_payload, io.connect_timeout);
                        connecting = Some(Box::pin(async move {
                            ws::connect(&url, compression, max, timeout).await
                        }));
                    }
                    Action::Send(frame) => {
                        if let Some(c) = &conn
                            && !c.send(frame.text)
                        {
                            tracing::debug!(shard = %shard, kind = ?frame.kind, "writer gone; the reader will report the close");
                        }
                    }
                    Action::Close { code } => {
                        identify = None;
                        if let Some(c) = conn.take() {
                            closing.retain(|h| !h.is_finished());
                            closing.push(c.close(code));
                        }
                    }
                    Action::RequestIdentify => {
                        let queue = Arc::clone(&io.identify);
                        identify = Some(Box::pin(async move { queue.acquire(shard).await }));
                    }
                    Action::Publish(p) => match &p.kind {
                        PublishKind::Agent(_) => {
                            if rejected.is_none()
                                && let Err(full) = io.outbox.push(p)
                            {
                                rejected = Some(full);
                            }
                        }
                        PublishKind::Raw(event) => {
                            let h = headers(&p, shard);
                            io.sink.raw(event, h, p.body.into());
                        }
                    },
                    Action::Status(ev) => {
                        io.reporter.transition(&ev);
                        io.sink.status(ev);
                    }
                    Action::Stop(s) => stop = Some(s),
                }
            }
            if let Some(full) = rejected {
                io.machine.handle(
                    Instant::now().into_std(),
                    Input::PublishRejected {
                        epoch: full.epoch,
                        seq: full.seq,
                    },
                    &mut actions,
                );
            }
        }
        io.reporter.counters(
            io.machine.stats(),
            io.machine.session().map(|s| s.commits.committed()),
            io.machine
                .heartbeat_rtt()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            io.outbox.len(),
        );
        if let Some(stop) = stop.take() {
            for h in closing {
                let _ = tokio::time::timeout(Duration::from_secs(3), h).await;
            }
            return match stop {
                Stop::Shutdown => Ok(()),
                Stop::Fatal { message, .. } => Err(message),
            };
        }

        let deadline = io.machine.next_deadline().map(Instant::from_std);
        let paused = io.machine.is_paused();
        tokio::select! {
            biased;
            () = cancel.cancelled(), if !shutdown_sent => {
                shutdown_sent = true;
                io.machine.handle(Instant::now().into_std(), Input::Shutdown, &mut actions);
            }
            msg = next_message(&mut conn) => {
                let now = Instant::now().into_std();
                let c = conn.as_mut();
                match (msg, c) {
                    (Some(Ok(Message::Binary(bytes))), Some(c)) => match c.decoder.binary(&bytes) {
                        Ok(Some(Frame::Payload(p))) => io.machine.handle(now, Input::Payload(p), &mut actions),
                        Ok(Some(Frame::Oversized { size })) => io.machine.handle(now, Input::Oversized { size }, &mut actions),
                        Ok(None) => {}
                        Err(e) => io.machine.handle(now, Input::StreamCorrupt { error: e.to_string() }, &mut actions),
                    },
                    (Some(Ok(Message::Text(text))), Some(c)) => match c.decoder.text(text.as_bytes()) {
                        Frame::Payload(p) => io.machine.handle(now, Input::Payload(p), &mut actions),
                        Frame::Oversized { size } => io.machine.handle(now, Input::Oversized { size }, &mut actions),
                    },
                    (Some(Ok(Message::Close(frame))), _) => {
                        conn = None;
                        let (code, reason) = frame.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.to_string()));
                        io.machine.handle(now, Input::Closed { code, reason }, &mut actions);
                    }
                    (Some(Ok(_)), _) => {}
                    (Some(Err(e)), _) => {
                        conn = None;
                        io.machine.handle(now, Input::Closed { code: None, reason: ws::describe(&e) }, &mut actions);
                    }
                    (None, _) => {
                        conn = None;
                        io.machine.handle(now, Input::Closed { code: None, reason: "connection closed without a close frame".into() }, &mut actions);
                    }
                }
            }
            result = poll_pending(&mut connecting) => {
                connecting = None;
                let now = Instant::now().into_std();
                match result {
                    Ok(c) => {
                        conn = Some(c);
                        io.machine.handle(now, Input::Opened, &mut actions);
                    }
                    Err(error) => io.machine.handle(now, Input::ConnectFailed { error }, &mut actions),
                }
            }
            () = poll_pending(&mut identify) => {
                identify = None;
                io.machine.handle(Instant::now().into_std(), Input::IdentifyPermit, &mut actions);
            }
            () = sleep_until(deadline) => {
                io.machine.handle(Instant::now().into_std(), Input::Tick, &mut actions);
            }
            Ok(()) = io.acks.changed() => {
                let (epoch, seq) = *io.acks.borrow_and_update();
                io.machine.handle(Instant::now().into_std(), Input::Acked { epoch, seq }, &mut actions);
            }
            () = io.outbox.room(), if paused => {
                io.machine.handle(Instant::now().into_std(), Input::PublisherReady, &mut actions);
            }
        }
    }
}

/// The next WebSocket message, or never when there is no connection.
async fn next_message(
    conn: &mut Option<Connection>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match conn {
        Some(c) => c.reader.next().await,
        None => std::future::pending().await,
    }
}

/// Polls an optional future; never resolves when there is none.
async fn poll_pending<T>(pending: &mut Pending<T>) -> T {
    match pending {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
