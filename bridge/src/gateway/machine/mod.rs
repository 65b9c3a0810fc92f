//! The session machine of one shard: every rule of the gateway protocol as a
//! pure function of `(state, now, input) -> actions`.
//!
//! States: `Idle` → `Waiting` (backoff) → `Connecting` → `Open` (awaiting
//! HELLO → handshake → live) → back to `Waiting` when the connection ends,
//! `Paused` after a close for NATS until the publisher drained, `Stopped` at
//! the end. The session (id, resume URL, sequences) outlives connections;
//! the heartbeat and the send limiter belong to one connection.
//!
//! Flow control: a full event buffer while NATS is healthy does not end the
//! connection. The open connection enters back-pressure (`Conn::pressure`):
//! the shell keeps the refused event and stops reading the socket, so TCP
//! pushes back to Discord, while heartbeats go on. Only NATS down, or no
//! publish acknowledged for `stall_timeout`, with the buffer full, closes the
//! connection resumably (`nats_backpressure`).
//!
//! Commands from callers ([`Input::Command`]) share the connection's send
//! limiter but never its queue: a command goes out at once or is refused
//! with the instant the window has room again, so a burst of them can
//! neither delay a heartbeat (the reserve is theirs) nor pile up. The last
//! presence (op 3) sent is kept across connections and sent again after the
//! READY of every new session; a RESUMEd session is the same session at
//! Discord, presence included, so nothing is re-sent then.

mod frames;
mod reason;
mod types;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use discord_bridge_schemas::status::SeqRange;
use discord_bridge_schemas::{ShardState, StatusEvent};

use super::backoff::Backoff;
use super::close::{self, Disposition};
use super::heartbeat::{Beat, Heartbeat};
use super::payload;
use super::ratelimit::SendLimiter;
use super::session::Session;
use super::untrusted;
use super::url::connect_url;

pub use reason::{EndReason, ReasonCounts};
pub use types::{
    Action, CommandRefusal, Input, MachineConfig, OutFrame, Publish, PublishKind, Resume, SendKind,
    Stats, Stop,
};

/// Close code for connections we end but whose session must stay resumable.
pub const CLOSE_RESUMABLE: u16 = 4000;
/// Close code that ends the session (shutdown, invalid session).
pub const CLOSE_NORMAL: u16 = 1000;

/// The session machine of one shard.
#[derive(Debug)]
pub struct Machine {
    cfg: MachineConfig,
    raw_dispatch: HashSet<String>,
    /// MESSAGE_CREATE may take the one-pass path: the firehose does not need
    /// its raw `d`. Decided once, not per frame.
    one_pass_messages: bool,
    rng: fastrand::Rng,
    phase: Phase,
    session: Option<Session>,
    bot_user_id: Option<String>,
    backoff: Backoff,
    /// RESUMEs that failed after the socket opened, in a row.
    resume_failures: u32,
    /// Connects to the resume URL that failed, in a row.
    resume_connect_failures: u32,
    epochs: u64,
    last_rtt: Option<std::time::Duration>,
    /// As last reported by the shell; assumed up until told otherwise.
    nats_up: bool,
    /// The last presence update (op 3 frame) sent, for new sessions.
    presence: Option<String>,
    stats: Stats,
}

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one phase per shard: the open connection's state is kept inline, not boxed per connection"
)]
enum Phase {
    Idle,
    Waiting { until: Instant },
    Connecting { resume: bool },
    Open(Conn),
    Paused,
    Stopped,
}

#[derive(Debug)]
struct Conn {
    resume: bool,
    stage: Stage,
    limiter: SendLimiter,
    /// Sends waiting for room in the rate-limit window, and when room opens.
    queue: VecDeque<OutFrame>,
    retry_at: Option<Instant>,
    /// Reading is paused: the buffer refused an event, which the shell keeps.
    pressure: Option<Pressure>,
}

/// A pause in reading the socket.
#[derive(Debug, Clone, Copy)]
struct Pressure {
    /// The refused event, kept by the shell.
    epoch: u64,
    seq: u64,
    since: Instant,
    /// The pause began, or NATS last acknowledged something since.
    progress_at: Instant,
}

#[derive(Debug)]
enum Stage {
    AwaitingHello {
        deadline: Instant,
    },
    Handshake {
        hb: Heartbeat,
        step: Step,
        deadline: Option<Instant>,
    },
    Live {
        hb: Heartbeat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    AwaitingPermit,
    Identifying,
    Resuming,
}

impl Conn {
    /// The kept event was taken: read again. The time spent paused does not
    /// count against the handshake deadline.
    fn resume_reading(&mut self, now: Instant) {
        let Some(p) = self.pressure.take() else {
            return;
        };
        let paused = now.saturating_duration_since(p.since);
        if let Stage::Handshake {
            deadline: Some(d), ..
        } = &mut self.stage
        {
            *d += paused;
        }
        if let Some(hb) = self.stage.heartbeat() {
            hb.resume(now);
        }
        tracing::trace!(paused_us = paused.as_micros(), "reading resumed");
    }
}

impl Stage {
    const fn heartbeat(&mut self) -> Option<&mut Heartbeat> {
        match self {
            Self::AwaitingHello { .. } => None,
            Self::Handshake { hb, .. } | Self::Live { hb } => Some(hb),
        }
    }
}

/// Why a connection ended, for status events and logs.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    reason: EndReason,
    code: Option<u16>,
    detail: String,
}

impl Machine {
    /// A machine that does nothing until [`Input::Start`].
    #[must_use]
    pub fn new(cfg: MachineConfig) -> Self {
        // A handed-over session starts as if everything up to its seq had
        // been handled here: replays at or below it are not relayed again.
        let session = cfg.resume.as_ref().map(|r| {
            let mut s = Session::new(Arc::clone(&r.session_id), Some(r.resume_url.clone()), 1);
            s.last_seq = r.seq;
            s.handled_through = r.seq;
            s.committed = r.seq;
            s
        });
        let epochs = u64::from(session.is_some());
        Self {
            raw_dispatch: cfg.raw_dispatch.iter().cloned().collect(),
            one_pass_messages: !cfg.raw_dispatch.iter().any(|t| t == "MESSAGE_CREATE"),
            rng: fastrand::Rng::with_seed(cfg.seed),
            backoff: Backoff::new(cfg.backoff_base, cfg.backoff_max),
            cfg,
            phase: Phase::Idle,
            session,
            bot_user_id: None,
            resume_failures: 0,
            resume_connect_failures: 0,
            epochs,
            last_rtt: None,
            nats_up: true,
            presence: None,
            stats: Stats::default(),
        }
    }

    /// Feeds one input; the actions it causes are appended to `out`.
    pub fn handle(&mut self, now: Instant, input: Input<'_>, out: &mut Vec<Action>) {
        match input {
            Input::Start => {
                if matches!(self.phase, Phase::Idle) {
                    self.connect(out);
                }
            }
            Input::Opened => {
                if let Phase::Connecting { resume } = self.phase {
                    self.phase = Phase::Open(Conn {
                        resume,
                        stage: Stage::AwaitingHello {
                            deadline: now + self.cfg.hello_timeout,
                        },
                        limiter: SendLimiter::default(),
                        queue: VecDeque::new(),
                        retry_at: None,
                        pressure: None,
                    });
                }
            }
            Input::ConnectFailed { error } => {
                if let Phase::Connecting { resume } = self.phase {
                    if resume {
                        self.resume_connect_failures += 1;
                    }
                    let ended = Ended {
                        reason: EndReason::ConnectFailed,
                        code: None,
                        detail: format!("could not connect: {}", untrusted::printable(&error)),
                    };
                    self.connection_ended(now, &ended, Disposition::Resume, out);
                }
            }
            Input::Payload(bytes) => {
                if matches!(self.phase, Phase::Open(_)) {
                    self.frame(now, bytes, out);
                }
            }
            Input::Oversized { size } => {
                if let Phase::Open(conn) = &mut self.phase {
                    if let Some(hb) = conn.stage.heartbeat() {
                        hb.on_frame();
                    }
                    self.stats.oversized += 1;
                    tracing::warn!(
                        size,
                        "dropped a gateway payload larger than discord.max_frame_bytes"
                    );
                }
            }
            Input::StreamCorrupt { error } => {
                if matches!(self.phase, Phase::Open(_)) {
                    let ended = Ended {
                        reason: EndReason::CorruptStream,
                        code: Some(CLOSE_RESUMABLE),
                        detail: format!(
                            "transport stream corrupt, resetting the connection: {error}"
                        ),
                    };
                    self.close_and_reconnect(now, &ended, out);
                }
            }
            Input::Closed { code, reason } => {
                if matches!(self.phase, Phase::Open(_)) {
                    self.closed_by_peer(now, code, &reason, out);
                }
            }
            Input::Tick => self.tick(now, out),
            Input::IdentifyPermit => self.identify_permitted(now, out),
            Input::Acked { epoch, seq } => {
                if let Some(s) = self.session.as_mut().filter(|s| s.epoch == epoch) {
                    s.commit(seq);
                }
                if let Phase::Open(Conn {
                    pressure: Some(p), ..
                }) = &mut self.phase
                {
                    p.progress_at = now;
                }
            }
            Input::PublishRejected { epoch, seq } => self.publish_rejected(now, epoch, seq, out),
            Input::PublisherReady => match &mut self.phase {
                Phase::Paused => self.connect(out),
                Phase::Open(conn) => conn.resume_reading(now),
                _ => {}
            },
            Input::NatsDown => {
                self.nats_up = false;
                if let Phase::Open(Conn {
                    pressure: Some(p), ..
                }) = &self.phase
                {
                    let p = *p;
                    self.close_for_nats(now, p, "NATS is disconnected", out);
                }
            }
            Input::NatsUp => self.nats_up = true,
            Input::Command { id, text, presence } => self.command(now, id, text, presence, out),
            Input::Shutdown => self.shutdown(out),
        }
    }

    /// When the machine next needs [`Input::Tick`].
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting { until } => Some(*until),
            Phase::Open(conn) => {
                let stage = match &conn.stage {
                    // Not reading: only the heartbeat and the stall count.
                    Stage::Handshake { hb, .. } if conn.pressure.is_some() => Some(hb.deadline()),
                    Stage::AwaitingHello { deadline } => Some(*deadline),
                    Stage::Handshake { hb, deadline, .. } => {
                        Some(deadline.map_or(hb.deadline(), |d| d.min(hb.deadline())))
                    }
                    Stage::Live { hb } => Some(hb.deadline()),
                };
                let stall = conn
                    .pressure
                    .map(|p| p.progress_at + self.cfg.stall_timeout);
                [stage, conn.retry_at, stall].into_iter().flatten().min()
            }
            _ => None,
        }
    }

    /// Whether the shard has stopped for good.
    #[must_use]
    pub const fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// Whether the machine waits for the publisher to drain
    /// ([`Input::PublisherReady`]).
    #[must_use]
    pub const fn is_paused(&self) -> bool {
        matches!(self.phase, Phase::Paused)
    }

    /// Whether the shell must not read the socket: the buffer refused an
    /// event, and the shell keeps it until [`Input::PublisherReady`].
    #[must_use]
    pub const fn is_reading_paused(&self) -> bool {
        matches!(
            &self.phase,
            Phase::Open(Conn {
                pressure: Some(_),
                ..
            })
        )
    }

    /// Whether events are flowing (READY or RESUMED received).
    #[must_use]
    pub const fn is_live(&self) -> bool {
        matches!(
            &self.phase,
            Phase::Open(Conn {
                stage: Stage::Live { .. },
                ..
            })
        )
    }

    /// The current session, if any.
    #[must_use]
    pub const fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The latest heartbeat round-trip time.
    #[must_use]
    pub const fn heartbeat_rtt(&self) -> Option<std::time::Duration> {
        self.last_rtt
    }

    /// Counters since start.
    #[must_use]
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The shard this machine runs.
    #[must_use]
    pub const fn shard(&self) -> crate::gateway::ShardId {
        self.cfg.shard
    }

    fn status(&self, state: ShardState, detail: impl Into<String>) -> StatusEvent {
        let mut ev = StatusEvent::new(state, self.cfg.shard.pair(), detail);
        if let Some(s) = &self.session {
            ev.session_id = Some(s.id.to_string());
            ev.resume_url.clone_from(&s.resume_url);
            ev.last_seq = Some(s.committed);
        }
        ev
    }

    /// Opens a connection: a RESUME when a resumable session exists, else a
    /// new session on the main gateway URL.
    fn connect(&mut self, out: &mut Vec<Action>) {
        if self.resume_connect_failures >= self.cfg.max_resume_connect_failures {
            self.drop_session("the resume URL could not be reached", out);
        }
        let resume_url = self
            .session
            .as_ref()
            .and_then(|s| s.resume_url.clone().filter(|_| s.committed > 0));
        let resume = resume_url.is_some();
        let base = resume_url.unwrap_or_else(|| self.cfg.gateway_url.clone());
        let url = connect_url(&base, self.cfg.compression);
        self.phase = Phase::Connecting { resume };
        let mut ev = self.status(
            ShardState::Connecting,
            if resume {
                format!("connecting to {url} to resume the session")
            } else {
                format!("connecting to {url} for a new session")
            },
        );
        ev.url = Some(url.clone());
        ev.will_resume = Some(resume);
        out.push(Action::Status(ev));
        out.push(Action::Connect { url });
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Waiting { until } if now >= *until => self.connect(out),
            Phase::Open(conn) => {
                if let Some(p) = conn.pressure
                    && now >= p.progress_at + self.cfg.stall_timeout
                {
                    let why = format!(
                        "no publish acknowledged for {} s",
                        self.cfg.stall_timeout.as_secs_f64()
                    );
                    return self.close_for_nats(now, p, &why, out);
                }
                let expired = match &conn.stage {
                    // Time spent not reading does not count against the
                    // handshake: RESUMED may sit unread behind the replay.
                    _ if conn.pressure.is_some() => None,
                    Stage::AwaitingHello { deadline } => {
                        (now >= *deadline).then_some(EndReason::HelloTimeout)
                    }
                    Stage::Handshake {
                        deadline: Some(d), ..
                    } => (now >= *d).then_some(EndReason::HandshakeTimeout),
                    _ => None,
                };
                if let Some(reason) = expired {
                    let ended = Ended {
                        reason,
                        code: Some(CLOSE_RESUMABLE),
                        detail: format!("gateway did not answer in time ({reason})"),
                    };
                    return self.close_and_reconnect(now, &ended, out);
                }
                let beat = conn.stage.heartbeat().and_then(|hb| hb.poll(now));
                match beat {
                    Some(Beat::Send) => self.send_heartbeat(now, out),
                    Some(Beat::Zombie) => {
                        let ended = Ended {
                            reason: EndReason::ZombieConnection,
                            code: Some(CLOSE_RESUMABLE),
                            detail: "no heartbeat ACK since the last heartbeat: zombie connection"
                                .to_owned(),
                        };
                        return self.close_and_reconnect(now, &ended, out);
                    }
                    None => {}
                }
                self.flush_queue(now, out);
            }
            _ => {}
        }
    }

    fn send_heartbeat(&mut self, now: Instant, out: &mut Vec<Action>) {
        let seq = self.session.as_ref().map(|s| s.last_seq).filter(|s| *s > 0);
        let frame = OutFrame {
            kind: SendKind::Heartbeat,
            text: payload::heartbeat(seq),
        };
        self.send(now, frame, out);
    }

    /// Sends now if the rate limit allows, else queues until it does.
    /// Heartbeats may use the reserve and jump the queue.
    fn send(&mut self, now: Instant, frame: OutFrame, out: &mut Vec<Action>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let priority = frame.kind == SendKind::Heartbeat;
        if priority || conn.queue.is_empty() {
            match conn.limiter.check(now, priority) {
                Ok(()) => {
                    conn.limiter.record(now);
                    out.push(Action::Send(frame));
                    return;
                }
                Err(at) => conn.retry_at = Some(conn.retry_at.map_or(at, |r| r.min(at))),
            }
        }
        tracing::debug!(kind = ?frame.kind, "gateway send delayed by the 120/60s rate limit");
        if priority {
            conn.queue.push_front(frame);
        } else {
            conn.queue.push_back(frame);
        }
    }

    /// A caller's command: sent now, or refused; never queued.
    fn command(
        &mut self,
        now: Instant,
        id: u64,
        text: String,
        presence: bool,
        out: &mut Vec<Action>,
    ) {
        let state = match &self.phase {
            Phase::Open(Conn {
                stage: Stage::Live { .. },
                ..
            }) => None,
            Phase::Open(Conn {
                stage: Stage::AwaitingHello { .. },
                ..
            })
            | Phase::Idle
            | Phase::Connecting { .. } => Some("connecting"),
            Phase::Open(Conn {
                stage:
                    Stage::Handshake {
                        step: Step::Resuming,
                        ..
                    },
                ..
            }) => Some("resuming"),
            Phase::Open(_) => Some("identifying"),
            Phase::Waiting { .. } => Some("waiting to reconnect"),
            Phase::Paused => Some("waiting for NATS to catch up before reconnecting"),
            Phase::Stopped => Some("stopped"),
        };
        let refusal = match (state, &mut self.phase) {
            (Some(state), _) => CommandRefusal::NotConnected { state },
            (None, Phase::Open(conn)) => match conn.limiter.check(now, false) {
                // Something already waits for the window (a heartbeat
                // whose reserve ran out): it goes first.
                Ok(()) if !conn.queue.is_empty() => CommandRefusal::RateLimited {
                    retry_at: conn.retry_at.unwrap_or(now),
                },
                Ok(()) => {
                    conn.limiter.record(now);
                    if presence {
                        self.presence = Some(text.clone());
                    }
                    out.push(Action::Send(OutFrame {
                        kind: SendKind::Command(id),
                        text,
                    }));
                    return;
                }
                Err(retry_at) => CommandRefusal::RateLimited { retry_at },
            },
            (None, _) => return,
        };
        tracing::debug!(?refusal, "gateway command refused");
        out.push(Action::CommandRefused { id, refusal });
    }

    fn flush_queue(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        conn.retry_at = None;
        while let Some(front) = conn.queue.front() {
            match conn.limiter.check(now, front.kind == SendKind::Heartbeat) {
                Ok(()) => {
                    conn.limiter.record(now);
                    if let Some(frame) = conn.queue.pop_front() {
                        out.push(Action::Send(frame));
                    }
                }
                Err(at) => {
                    conn.retry_at = Some(at);
                    break;
                }
            }
        }
    }

    fn identify_permitted(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let Stage::Handshake { step, deadline, .. } = &mut conn.stage else {
            return;
        };
        if *step != Step::AwaitingPermit {
            return;
        }
        *step = Step::Identifying;
        *deadline = Some(now + self.cfg.handshake_timeout);
        self.stats.identifies += 1;
        let text = payload::identify(
            self.cfg.token.expose(),
            self.cfg.intents,
            self.cfg.shard,
            &self.cfg.properties,
        );
        self.send(
            now,
            OutFrame {
                kind: SendKind::Identify,
                text,
            },
            out,
        );
    }

    /// We end the connection ourselves (op 7, zombie, corrupt stream,
    /// timeouts) with a code that keeps the session resumable.
    fn close_and_reconnect(&mut self, now: Instant, ended: &Ended, out: &mut Vec<Action>) {
        out.push(Action::Close {
            code: CLOSE_RESUMABLE,
            reason: ended.reason.as_str(),
        });
        self.connection_ended(now, ended, Disposition::Resume, out);
    }

    fn closed_by_peer(
        &mut self,
        now: Instant,
        code: Option<u16>,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        let disposition = code.map_or(Disposition::Resume, close::classify);
        let detail = match code {
            Some(c) => format!(
                "gateway closed the connection with {c} ({}): {}",
                close::name(c),
                untrusted::printable(reason)
            ),
            None => format!("connection lost: {}", untrusted::printable(reason)),
        };
        if disposition == Disposition::Fatal {
            let c = code.unwrap_or_default();
            let message = format!(
                "Discord closed shard {} with {c} ({}): {}",
                self.cfg.shard,
                close::name(c),
                close::remedy(c)
            );
            tracing::error!(code = c, "{message}");
            let mut ev = self.status(ShardState::Error, detail);
            ev.close_code = code;
            ev.message = Some(message.clone());
            ev.fatal = Some(true);
            out.push(Action::Status(ev));
            self.phase = Phase::Stopped;
            out.push(Action::Stop(Stop::Fatal { code: c, message }));
            return;
        }
        let ended = Ended {
            reason: if code.is_some() {
                EndReason::ClosedByGateway
            } else {
                EndReason::ConnectionLost
            },
            code,
            detail,
        };
        self.connection_ended(now, &ended, disposition, out);
    }

    /// The connection is gone (or never opened): decide between RESUME and a
    /// new session, then back off.
    fn connection_ended(
        &mut self,
        now: Instant,
        ended: &Ended,
        disposition: Disposition,
        out: &mut Vec<Action>,
    ) {
        // An event kept by the shell goes with the connection.
        if let Phase::Open(Conn {
            pressure: Some(p), ..
        }) = &self.phase
        {
            let p = *p;
            self.unhandle(p.epoch, p.seq);
        }
        // A connection opened to resume that ended before RESUMED (whether
        // before HELLO or after RESUME was sent) is a failed resume.
        if let Phase::Open(conn) = &self.phase
            && conn.resume
            && !matches!(conn.stage, Stage::Live { .. })
        {
            self.resume_failures += 1;
        }
        self.stats.reconnects.add(ended.reason);
        match disposition {
            Disposition::Reidentify => self.drop_session(&ended.detail, out),
            _ if self.resume_failures >= self.cfg.max_resume_failures => {
                let why = format!("{} RESUME attempts in a row failed", self.resume_failures);
                self.drop_session(&why, out);
            }
            _ => {}
        }
        let will_resume = self
            .session
            .as_ref()
            .is_some_and(|s| s.resume_url.is_some());
        // Discord asking for a reconnect is routine; every other cause is
        // worth an operator's attention.
        if ended.reason == EndReason::ReconnectRequested {
            tracing::info!(will_resume, "gateway connection ended: {}", ended.detail);
        } else {
            tracing::warn!(
                reason = ended.reason.as_str(),
                code = ?ended.code,
                will_resume,
                "gateway connection ended: {}",
                ended.detail
            );
        }
        let mut ev = self.status(ShardState::Disconnected, ended.detail.clone());
        ev.reason = Some(ended.reason.as_str().to_owned());
        ev.close_code = ended.code;
        ev.will_resume = Some(will_resume);
        out.push(Action::Status(ev));
        let delay = self.backoff.next_delay(self.rng.f64());
        self.phase = Phase::Waiting { until: now + delay };
        let mut ev = self.status(
            ShardState::Backoff,
            format!("reconnecting in {} ms", delay.as_millis()),
        );
        ev.attempt = Some(self.backoff.attempt());
        ev.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        out.push(Action::Status(ev));
    }

    /// Forgets the session: the next connection identifies. Dispatches that
    /// arrived but never reached the publisher are reported as lost.
    fn drop_session(&mut self, why: &str, out: &mut Vec<Action>) {
        self.resume_failures = 0;
        self.resume_connect_failures = 0;
        let Some(session) = self.session.take() else {
            return;
        };
        let lost = (session.last_seq > session.handled_through).then(|| SeqRange {
            from: session.handled_through + 1,
            to: session.last_seq,
        });
        let mut ev = self.status(ShardState::Error, String::new());
        ev.session_id = Some(session.id.to_string());
        ev.last_seq = Some(session.committed);
        ev.fatal = Some(false);
        let message = match &lost {
            Some(range) => {
                self.stats.lost += range.to - range.from + 1;
                format!(
                    "session {} ended ({why}): dispatches {}..={} were never relayed and \
                     anything Discord sent after them cannot be replayed; starting a new session",
                    session.id, range.from, range.to
                )
            }
            None => format!(
                "session {} ended ({why}): anything Discord sent after seq {} cannot be \
                 replayed; starting a new session",
                session.id, session.handled_through
            ),
        };
        tracing::warn!(lost = ?lost, "{message}");
        ev.detail.clone_from(&message);
        ev.message = Some(message);
        ev.lost = lost;
        out.push(Action::Status(ev));
    }

    fn publish_rejected(&mut self, now: Instant, epoch: u64, seq: u64, out: &mut Vec<Action>) {
        let Phase::Open(conn) = &mut self.phase else {
            // Not connected: the shell drops the event, a RESUME replays it.
            self.unhandle(epoch, seq);
            return;
        };
        if conn.pressure.is_some() {
            return;
        }
        let p = Pressure {
            epoch,
            seq,
            since: now,
            progress_at: now,
        };
        conn.pressure = Some(p);
        if let Some(hb) = conn.stage.heartbeat() {
            hb.pause();
        }
        self.stats.read_pauses += 1;
        tracing::debug!(
            seq,
            "event buffer full: reading paused until NATS has caught up"
        );
        if !self.nats_up {
            self.close_for_nats(now, p, "NATS is disconnected", out);
        }
    }

    /// Dispatch `seq` never reached the publisher: as if it never arrived,
    /// so a RESUME replays it.
    fn unhandle(&mut self, epoch: u64, seq: u64) {
        if let Some(s) = self.session.as_mut().filter(|s| s.epoch == epoch) {
            s.handled_through = s.handled_through.min(seq.saturating_sub(1));
        }
    }

    /// The buffer is full and NATS is down or stalled: close resumably and
    /// wait for the publisher to drain before the RESUME. The kept event is
    /// dropped by the shell with the connection; Discord replays it.
    fn close_for_nats(&mut self, now: Instant, p: Pressure, why: &str, out: &mut Vec<Action>) {
        self.unhandle(p.epoch, p.seq);
        let reason = EndReason::NatsBackpressure;
        out.push(Action::Close {
            code: CLOSE_RESUMABLE,
            reason: reason.as_str(),
        });
        self.stats.reconnects.add(reason);
        self.stats.nats_closes += 1;
        let paused_ms = now.saturating_duration_since(p.since).as_millis();
        let detail = format!(
            "{why} and the event buffer is full at seq {} (reading paused for {paused_ms} ms): \
             closing the gateway and resuming once NATS has caught up",
            p.seq
        );
        tracing::warn!(reason = reason.as_str(), seq = p.seq, "{detail}");
        let mut ev = self.status(ShardState::Disconnected, detail);
        ev.reason = Some(reason.as_str().to_owned());
        ev.close_code = Some(CLOSE_RESUMABLE);
        ev.will_resume = Some(self.session.is_some());
        out.push(Action::Status(ev));
        self.phase = Phase::Paused;
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Stopped) {
            return;
        }
        // Never 1000/1001 here: those end the session at Discord, and a
        // successor (this process restarted, or a standby) RESUMEs it.
        if matches!(self.phase, Phase::Open(_)) {
            out.push(Action::Close {
                code: CLOSE_RESUMABLE,
                reason: "shutdown",
            });
        }
        self.phase = Phase::Stopped;
        out.push(Action::Status(
            self.status(ShardState::ShuttingDown, "shutting down"),
        ));
        out.push(Action::Stop(Stop::Shutdown));
    }
}

#[cfg(test)]
mod tests;
