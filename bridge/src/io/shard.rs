//! The gateway task of one shard: owns the socket, the timers and the
//! machine, and carries out the machine's actions. All protocol decisions
//! are the machine's; this file only moves bytes and waits.
//!
//! Back-pressure: when the outbox refuses an event, the task keeps it (and
//! whatever the same frame produced after it) and stops polling the socket
//! until the outbox has room, so TCP pushes back to Discord; the heartbeat
//! timer and the writer go on. While reading is paused the task also
//! reports the NATS connection state, which decides whether the machine
//! keeps waiting or closes.
//!
//! The task runs inside its shard's tracing span; each connection adds a
//! `conn` span of its own, entered whenever the machine handles an input, so
//! every log line names the shard and the connection without repeating them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::collections::{HashMap, VecDeque};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Span;

use super::commands::{Done, Refused, ShardCommand};
use super::core_sink::CoreSink;
use super::identify::IdentifyQueue;
use super::outbox::{Mark, Outbox};
use super::publisher::EventHeaders;
use super::reports::ShardReporter;
use super::tasks::{TaskError, Tasks};
use super::ws::{self, ConnectError, Connection};
use crate::codec::{Compression, Frame};
use crate::gateway::ShardId;
use crate::gateway::machine::{
    Action, CommandRefusal, Input, Machine, Publish, PublishKind, SendKind, Stop,
};
use crate::tls::DiscordTls;

type Pending<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// How long a closing connection may take to finish its close handshake
/// before the task stops anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How often the NATS connection state is looked at while reading is
/// paused (only then does the machine need it).
const NATS_CHECK: Duration = Duration::from_millis(100);

/// What a shard task needs besides its machine.
pub(crate) struct ShardIo {
    /// The protocol.
    pub machine: Machine,
    /// Transport compression of every connection.
    pub compression: Compression,
    /// Payload size cap.
    pub max_payload: usize,
    /// Connect + handshake timeout.
    pub connect_timeout: Duration,
    /// The TLS client configuration of `wss://` connections.
    pub tls: DiscordTls,
    /// Identify permits.
    pub identify: Arc<IdentifyQueue>,
    /// Durable events go here; it reports the resume point back.
    pub outbox: Arc<Outbox>,
    /// The NATS client, whose connection state matters while paused.
    pub nats: async_nats::Client,
    /// Status events and the firehose.
    pub sink: CoreSink,
    /// This shard's entry in the status endpoint.
    pub reporter: ShardReporter,
    /// Where the connection's own tasks run.
    pub tasks: Tasks,
    /// Where the session stands, for the checkpoint in KV.
    pub session: watch::Sender<Option<SessionMark>>,
    /// Stamped on this shard's status events: the owning process.
    pub owner: Option<Arc<str>>,
    /// Callers' gateway commands for this shard.
    pub commands: tokio::sync::mpsc::Receiver<ShardCommand>,
}

/// The session of a shard and its resume point, as the checkpoint needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionMark {
    /// Tells this session's acks from an earlier one's.
    pub epoch: u64,
    /// Discord's session id.
    pub session_id: Arc<str>,
    /// Where to resume it.
    pub resume_url: Option<String>,
    /// Everything up to here is stored.
    pub committed: u64,
}

/// How a shard stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEnd {
    /// It was asked to stop.
    Stopped,
    /// Discord refused it for good.
    Fatal {
        /// The close code.
        code: u16,
        /// Names the code and the fix.
        message: String,
    },
}

/// What the outbox refused, and what the same frame produced after it, in
/// order: taken as soon as there is room.
enum Held {
    Event(Publish),
    Skip { epoch: u64, seq: u64 },
}

/// The machine and the connection span its inputs are handled in.
struct Driver {
    machine: Machine,
    actions: Vec<Action>,
    conn_span: Span,
    connections: u64,
}

impl Driver {
    fn feed(&mut self, input: Input<'_>) {
        let _entered = self.conn_span.enter();
        self.machine
            .handle(Instant::now().into_std(), input, &mut self.actions);
    }
}

/// Runs the shard until `cancel` (then [`ShardEnd::Stopped`]) or until
/// Discord refuses it for good.
///
/// # Errors
/// None today: every failure of a connection is an input of the machine.
/// The type leaves room for the supervisor's contract.
pub(crate) async fn run(io: ShardIo, cancel: CancellationToken) -> Result<ShardEnd, TaskError> {
    let ShardIo {
        machine,
        compression,
        max_payload,
        connect_timeout,
        tls,
        identify: identify_queue,
        outbox,
        nats,
        sink,
        reporter,
        tasks,
        session: session_mark,
        owner,
        mut commands,
    } = io;
    let shard = machine.shard();
    let mut d = Driver {
        machine,
        actions: Vec::with_capacity(16),
        conn_span: Span::none(),
        connections: 0,
    };
    let mut acks = outbox.acks();
    let mut conn: Option<Connection> = None;
    let mut connecting: Pending<Result<Connection, ConnectError>> = None;
    let mut identify: Pending<()> = None;
    let mut closing = Vec::new();
    let mut stop: Option<Stop> = None;
    let mut shutdown_sent = false;
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut raw_headers = EventHeaders::new(shard);
    let mut nats_up = true;
    let nats_check = tokio::time::sleep(NATS_CHECK);
    tokio::pin!(nats_check);
    // One timer, moved only when the machine's deadline moves: a frame
    // does not cost a timer registration.
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<std::time::Instant> = None;
    // Commands the machine has not answered yet (it answers each in the
    // same call, so this holds one at most), by id.
    let mut awaiting: HashMap<u64, Done> = HashMap::new();
    let mut command_ids: u64 = 0;

    d.feed(Input::Start);
    loop {
        // Carry out what the machine decided; a refused publish, and a
        // resume point that moved at once, are fed back.
        while !d.actions.is_empty() {
            let mut rejected: Option<(u64, u64)> = None;
            let mut committed: Option<Mark> = None;
            let actions = std::mem::take(&mut d.actions);
            for action in actions {
                match action {
                    Action::Connect { url } => {
                        identify = None;
                        conn = None;
                        held.clear();
                        d.connections += 1;
                        d.conn_span =
                            tracing::info_span!(parent: Span::current(), "conn", n = d.connections);
                        let _entered = d.conn_span.enter();
                        tracing::debug!(url, "connecting");
                        let tasks = tasks.clone();
                        let span = d.conn_span.clone();
                        let tls = tls.clone();
                        connecting = Some(Box::pin(async move {
                            ws::connect(
                                &url,
                                ws::Options {
                                    compression,
                                    max_payload,
                                    timeout: connect_timeout,
                                    tls,
                                },
                                &tasks,
                                shard,
                                span,
                            )
                            .await
                        }));
                    }
                    Action::Send(frame) => {
                        // A command's completion goes with its frame to the
                        // writer: the caller's reply waits for the write.
                        let done = match frame.kind {
                            SendKind::Command(id) => awaiting.remove(&id),
                            _ => None,
                        };
                        if let Some(c) = &conn
                            && !c.send(frame.text, done)
                        {
                            let _entered = d.conn_span.enter();
                            tracing::debug!(kind = ?frame.kind, "writer gone; the reader will report the close");
                        }
                    }
                    Action::CommandRefused { id, refusal } => {
                        if let Some(done) = awaiting.remove(&id) {
                            let _ = done.send(Err(match refusal {
                                CommandRefusal::NotConnected { state } => {
                                    Refused::NotConnected(state)
                                }
                                CommandRefusal::RateLimited { retry_at } => Refused::RateLimited(
                                    retry_at.saturating_duration_since(Instant::now().into_std()),
                                ),
                            }));
                        }
                    }
                    Action::Close { code, reason } => {
                        identify = None;
                        // The machine gave the kept events up: Discord
                        // replays them after the RESUME.
                        held.clear();
                        {
                            let _entered = d.conn_span.enter();
                            if matches!(reason, "shutdown" | "reconnect_requested") {
                                tracing::info!(code, reason, "closing the gateway connection");
                            } else {
                                tracing::warn!(code, reason, "closing the gateway connection");
                            }
                        }
                        if let Some(c) = conn.take() {
                            closing
                                .retain(|h: &tokio::task::JoinHandle<Option<()>>| !h.is_finished());
                            closing.push(c.close(code, reason, &tasks, shard));
                        }
                    }
                    Action::RequestIdentify => {
                        let queue = Arc::clone(&identify_queue);
                        identify = Some(Box::pin(async move { queue.acquire(shard).await }));
                    }
                    Action::Publish(p) => match &p.kind {
                        PublishKind::Agent(_) => {
                            if !held.is_empty() {
                                held.push_back(Held::Event(p));
                            } else if let Err(p) = outbox.push(p) {
                                rejected = Some((p.epoch, p.seq));
                                held.push_back(Held::Event(p));
                            }
                        }
                        PublishKind::Raw(event) => match raw_headers.build(&p) {
                            Ok(h) => {
                                if sink.raw(event, h, p.body.into()) {
                                    reporter.raw_published();
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "raw dispatch not published"),
                        },
                    },
                    Action::Skip { epoch, seq } => {
                        // Nothing after a refused event may commit.
                        if !held.is_empty() {
                            held.push_back(Held::Skip { epoch, seq });
                        } else if let Some(mark) = outbox.skip(epoch, seq) {
                            committed = Some(mark);
                        }
                    }
                    Action::Status(mut ev) => {
                        ev.owner = owner.as_deref().map(str::to_owned);
                        reporter.transition(&ev);
                        sink.status(ev);
                    }
                    Action::Stop(s) => stop = Some(s),
                }
            }
            if let Some((epoch, seq)) = committed {
                d.feed(Input::Acked { epoch, seq });
            }
            if let Some((epoch, seq)) = rejected {
                // The machine decides between waiting and closing, so it
                // learns first whether NATS is up.
                nats_up = report_nats(&mut d, &nats, None);
                d.feed(Input::PublishRejected { epoch, seq });
                nats_check.as_mut().reset(Instant::now() + NATS_CHECK);
            }
            if !d.machine.is_reading_paused() {
                held.clear();
            }
        }
        // Unanswered commands (none, as the machine answers each at once)
        // must not wait forever.
        for (_, done) in awaiting.drain() {
            let _ = done.send(Err(Refused::NotConnected("stopping")));
        }
        publish_mark(&session_mark, d.machine.session());
        reporter.counters(
            d.machine.stats(),
            d.machine.session().map(|s| s.committed),
            d.machine.heartbeat_rtt(),
            outbox.fill(),
        );
        if let Some(stop) = stop.take() {
            // The close handshakes end on their own within a few seconds;
            // a successor must not start before this connection is gone.
            for h in closing {
                let _ = tokio::time::timeout(CLOSE_WAIT, h).await;
            }
            return Ok(match stop {
                Stop::Shutdown => ShardEnd::Stopped,
                Stop::Fatal { code, message } => ShardEnd::Fatal { code, message },
            });
        }

        let deadline = d.machine.next_deadline();
        if deadline != armed {
            if let Some(at) = deadline {
                sleep.as_mut().reset(Instant::from_std(at));
            }
            armed = deadline;
        }
        let paused = d.machine.is_paused();
        let reading = !d.machine.is_reading_paused();
        // Order matters: a stop request first, then the heartbeat deadline
        // (a flood of frames must never delay a heartbeat), then the socket.
        tokio::select! {
            biased;
            () = cancel.cancelled(), if !shutdown_sent => {
                shutdown_sent = true;
                d.feed(Input::Shutdown);
            }
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                d.feed(Input::Tick);
            }
            Some(command) = commands.recv() => {
                command_ids += 1;
                awaiting.insert(command_ids, command.done);
                d.feed(Input::Command {
                    id: command_ids,
                    text: command.text,
                    presence: command.presence,
                });
            }
            () = &mut nats_check, if !reading => {
                nats_check.as_mut().reset(Instant::now() + NATS_CHECK);
                nats_up = report_nats(&mut d, &nats, Some(nats_up));
            }
            msg = next_message(&mut conn), if reading => {
                match (msg, conn.as_mut()) {
                    (Some(Ok(Message::Binary(bytes))), Some(c)) => match c.decoder.binary(&bytes) {
                        Ok(Some(Frame::Payload(p))) => d.feed(Input::Payload(p)),
                        Ok(Some(Frame::Oversized { size })) => d.feed(Input::Oversized { size }),
                        Ok(None) => {}
                        Err(e) => d.feed(Input::StreamCorrupt { error: e.to_string() }),
                    },
                    (Some(Ok(Message::Text(text))), Some(c)) => match c.decoder.text(text.as_bytes()) {
                        Frame::Payload(p) => d.feed(Input::Payload(p)),
                        Frame::Oversized { size } => d.feed(Input::Oversized { size }),
                    },
                    (Some(Ok(Message::Close(frame))), _) => {
                        conn = None;
                        let (code, reason) = frame.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.to_string()));
                        d.feed(Input::Closed { code, reason });
                    }
                    (Some(Ok(_)), _) => {}
                    (Some(Err(e)), _) => {
                        conn = None;
                        d.feed(Input::Closed { code: None, reason: ws::describe(&e) });
                    }
                    (None, _) => {
                        conn = None;
                        d.feed(Input::Closed { code: None, reason: "connection closed without a close frame".into() });
                    }
                }
            }
            result = poll_pending(&mut connecting) => {
                connecting = None;
                match result {
                    Ok(c) => {
                        conn = Some(c);
                        d.feed(Input::Opened);
                    }
                    Err(e) => d.feed(Input::ConnectFailed { error: e.to_string() }),
                }
            }
            () = poll_pending(&mut identify) => {
                identify = None;
                d.feed(Input::IdentifyPermit);
            }
            Ok(()) = acks.changed() => {
                let (epoch, seq) = *acks.borrow_and_update();
                d.feed(Input::Acked { epoch, seq });
            }
            () = outbox.room(), if paused || !held.is_empty() => {
                let mut committed = None;
                while let Some(h) = held.pop_front() {
                    match h {
                        Held::Event(p) => {
                            if let Err(p) = outbox.push(p) {
                                held.push_front(Held::Event(p));
                                break;
                            }
                        }
                        Held::Skip { epoch, seq } => {
                            committed = outbox.skip(epoch, seq).or(committed);
                        }
                    }
                }
                if let Some((epoch, seq)) = committed {
                    d.feed(Input::Acked { epoch, seq });
                }
                if held.is_empty() {
                    d.feed(Input::PublisherReady);
                }
            }
        }
    }
}

/// Tells the checkpoint where the session stands, when that changed; the
/// resume URL is copied only when the session itself changed.
fn publish_mark(
    mark: &watch::Sender<Option<SessionMark>>,
    session: Option<&crate::gateway::session::Session>,
) {
    mark.send_if_modified(|current| match (current.as_mut(), session) {
        (Some(m), Some(s)) if m.epoch == s.epoch && Arc::ptr_eq(&m.session_id, &s.id) => {
            let moved = m.committed != s.committed;
            m.committed = s.committed;
            moved
        }
        (_, Some(s)) => {
            *current = Some(SessionMark {
                epoch: s.epoch,
                session_id: Arc::clone(&s.id),
                resume_url: s.resume_url.clone(),
                committed: s.committed,
            });
            true
        }
        (Some(_), None) => {
            *current = None;
            true
        }
        (None, None) => false,
    });
}

/// Tells the machine the NATS connection state when it differs from
/// `known` (always when `known` is `None`); returns it.
fn report_nats(d: &mut Driver, nats: &async_nats::Client, known: Option<bool>) -> bool {
    let up = nats.connection_state() == async_nats::connection::State::Connected;
    if known != Some(up) {
        d.feed(if up { Input::NatsUp } else { Input::NatsDown });
    }
    up
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

/// The tracing span of a shard's tasks.
#[must_use]
pub(crate) fn span(shard: ShardId) -> Span {
    tracing::info_span!("shard", shard = %shard)
}
