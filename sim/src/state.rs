//! The simulator's shared state: the public records ([`SimState`]) plus the
//! live connections' handles, behind one lock that is never held across an
//! `.await`. Every change bumps a watch channel so that
//! [`Simulator::wait_for`](super::Simulator::wait_for) wakes up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::config::{HttpFault, SimConfig};
use super::flood::FloodRun;
use super::record::{
    CloseInfo, Closer, ConnId, ConnectionRecord, Dispatch, RefusalCause, SimState, Violation,
    ViolationRecord,
};

/// A frame sent as is, bypassing the connection's compressor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// A text message.
    Text(String),
    /// A binary message (e.g. a corrupt compressed stream).
    Binary(Vec<u8>),
}

/// What a control call asks a connection task to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send this payload through the connection's compressor.
    Payload(String),
    /// Send this frame untouched.
    Raw(RawFrame),
    /// Send op 7 and detach the session.
    Reconnect,
    /// Send op 9 with this `d` and detach the session.
    InvalidSession(bool),
    /// Close with this code and reason.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Write a flood of dispatches.
    Flood(Arc<FloodRun>),
}

/// Capacity of each connection's command queue.
pub(crate) const COMMAND_QUEUE: usize = 256;

/// The simulator's handle on one open connection.
pub(crate) struct Live {
    pub(crate) commands: mpsc::Sender<Command>,
    /// Woken when a dispatch is appended to the attached session.
    pub(crate) notify: Arc<Notify>,
    /// The session this connection delivers, once identified or resumed.
    pub(crate) session: Option<String>,
    /// The last session it delivered, kept after op 7 / op 9 detached it:
    /// closing with 1000/1001 still ends that session.
    pub(crate) served: Option<String>,
    pub(crate) shard: Option<u32>,
    /// The last sequence number sent on this connection.
    pub(crate) delivered: u64,
    /// Dispatches after this sequence are not sent on this connection (set
    /// when op 7, op 9 or a close is queued, so later dispatches are
    /// buffered for the RESUME instead).
    pub(crate) flush_limit: Option<u64>,
    /// Arrival times of recent client payloads (rate limit).
    pub(crate) window: VecDeque<Instant>,
    pub(crate) last_heartbeat: Instant,
}

/// Everything behind the lock.
pub(crate) struct Inner {
    pub(crate) state: SimState,
    pub(crate) live: HashMap<ConnId, Live>,
    pub(crate) faults: VecDeque<HttpFault>,
    /// Last accepted IDENTIFY per bucket.
    pub(crate) last_identify: HashMap<u32, Instant>,
    pub(crate) acks_paused: HashSet<u32>,
    /// Session ids the next READYs use instead of random ones.
    pub(crate) forced_session_ids: VecDeque<String>,
    next_conn: u64,
}

/// Close codes after which Discord does not let the session be resumed.
pub(crate) const fn invalidates_session(code: u16) -> bool {
    matches!(code, 4004 | 4007 | 4009..=4014)
}

impl Inner {
    pub(crate) fn new(config: &SimConfig) -> Self {
        Self {
            state: SimState {
                session_start_remaining: config.session_start_remaining,
                ..SimState::default()
            },
            live: HashMap::new(),
            faults: VecDeque::new(),
            last_identify: HashMap::new(),
            acks_paused: HashSet::new(),
            forced_session_ids: VecDeque::new(),
            next_conn: 0,
        }
    }

    /// Registers a new connection; returns its id and command receiver.
    pub(crate) fn open(
        &mut self,
        mut record: ConnectionRecord,
        notify: Arc<Notify>,
    ) -> (ConnId, mpsc::Receiver<Command>) {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        record.id = id;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        self.live.insert(
            id,
            Live {
                commands: tx,
                notify,
                session: None,
                served: None,
                shard: None,
                delivered: 0,
                flush_limit: None,
                window: VecDeque::new(),
                last_heartbeat: record.opened,
            },
        );
        self.state.connections.insert(id, record);
        (id, rx)
    }

    /// Records the end of a connection and detaches its session. A client
    /// closing with 1000/1001 ends its session, like on Discord; so does a
    /// server close with a code that invalidates sessions.
    pub(crate) fn closed(&mut self, conn: ConnId, info: CloseInfo) {
        let ends_session = match (info.by, info.code) {
            (Closer::Client, Some(1000 | 1001)) => true,
            (Closer::Server, Some(code)) => invalidates_session(code),
            _ => false,
        };
        let (by, at) = (info.by, info.at);
        if let Some(record) = self.state.connections.get_mut(&conn)
            && record.closed.is_none()
        {
            record.closed = Some(info);
        }
        let Some(live) = self.live.remove(&conn) else {
            return;
        };
        let Some(id) = live.served else {
            return;
        };
        let Some(s) = self.state.sessions.get_mut(&id) else {
            return;
        };
        if s.attached == Some(conn) {
            s.attached = None;
        }
        // Unless another connection has resumed it meanwhile.
        if ends_session && s.attached.is_none() {
            let cause = match by {
                Closer::Client => RefusalCause::EndedByClient,
                _ => RefusalCause::EndedByServer,
            };
            let delivered = s.delivered;
            self.end_session(&id, delivered, cause, at);
        }
    }

    /// Ends a session for good (a RESUME of it gets op 9 `false`) and
    /// records its dispatches after `sent` (those no connection was or will
    /// be sent) as refused; returns whether the session exists.
    pub(crate) fn end_session(
        &mut self,
        id: &str,
        sent: u64,
        cause: RefusalCause,
        at: Instant,
    ) -> bool {
        let Some(s) = self.state.sessions.get_mut(id) else {
            return false;
        };
        if !s.invalidated {
            s.invalidated = true;
            let refused = s.refused_after(sent, cause, at);
            self.state.refusals.extend(refused);
        }
        true
    }

    /// Detaches a connection from its session (after op 7 / op 9): later
    /// dispatches are buffered for a RESUME.
    pub(crate) fn detach(&mut self, conn: ConnId) {
        let Some(live) = self.live.get_mut(&conn) else {
            return;
        };
        live.flush_limit = None;
        if let Some(id) = live.session.take()
            && let Some(s) = self.state.sessions.get_mut(&id)
            && s.attached == Some(conn)
        {
            s.attached = None;
        }
    }

    /// Attaches a session to a connection that has sent everything up to
    /// `delivered`.
    pub(crate) fn attach(&mut self, conn: ConnId, session_id: &str, delivered: u64) {
        let Some(session) = self.state.sessions.get_mut(session_id) else {
            return;
        };
        session.attached = Some(conn);
        let shard = session.shard.id;
        self.state
            .shard_sessions
            .insert(shard, session_id.to_owned());
        if let Some(live) = self.live.get_mut(&conn) {
            live.session = Some(session_id.to_owned());
            live.served = Some(session_id.to_owned());
            live.shard = Some(shard);
            live.delivered = delivered;
            live.flush_limit = None;
        }
        if let Some(record) = self.state.connections.get_mut(&conn) {
            record.shard = Some(shard);
            record.session_id = Some(session_id.to_owned());
        }
    }

    /// Appends a dispatch to a session (whether or not it is valid) and wakes
    /// its connection; returns its sequence number.
    pub(crate) fn append(
        &mut self,
        session_id: &str,
        t: &str,
        d: Value,
        capacity: usize,
    ) -> Option<u64> {
        let session = self.state.sessions.get_mut(session_id)?;
        session.seq += 1;
        let seq = session.seq;
        session
            .history
            .push_back(Dispatch::new(seq, t.to_owned(), d));
        while session.history.len() > capacity.max(1) {
            session.history.pop_front();
        }
        if let Some(live) = session.attached.and_then(|c| self.live.get(&c)) {
            live.notify.notify_one();
        }
        Some(seq)
    }

    /// Appends a dispatch to the current session of `shard`, unless it was
    /// invalidated.
    pub(crate) fn dispatch(
        &mut self,
        shard: u32,
        t: &str,
        d: Value,
        capacity: usize,
    ) -> Option<u64> {
        let session = self.state.session_of(shard)?;
        if session.invalidated {
            return None;
        }
        let id = session.id.clone();
        self.append(&id, t, d, capacity)
    }

    /// The dispatches a connection has yet to send (up to its flush limit),
    /// serialized; `Err` when some were evicted from the history before it
    /// could send them.
    pub(crate) fn pending(&mut self, conn: ConnId) -> Result<Vec<String>, u64> {
        let Some(live) = self.live.get_mut(&conn) else {
            return Ok(Vec::new());
        };
        let Some(session) = live
            .session
            .as_ref()
            .and_then(|id| self.state.sessions.get_mut(id))
        else {
            return Ok(Vec::new());
        };
        let limit = live.flush_limit.unwrap_or(u64::MAX);
        if live.delivered >= session.seq.min(limit) {
            return Ok(Vec::new());
        }
        if let Some(first) = session.history.front()
            && first.seq > live.delivered + 1
            && live.delivered < session.seq
        {
            return Err(first.seq - 1 - live.delivered);
        }
        let out: Vec<String> = session
            .after(live.delivered)
            .take_while(|d| d.seq <= limit)
            .map(Dispatch::to_json)
            .collect();
        live.delivered = session.seq.min(limit).max(live.delivered);
        session.delivered = session.delivered.max(live.delivered);
        Ok(out)
    }

    /// Appends the next `n` dispatches of a flood to the session that
    /// connection `conn` delivers, as written by it; returns their payloads
    /// and the first sequence number. Empty when it delivers no session or
    /// must not send more (op 7 / op 9 / a close is queued).
    pub(crate) fn append_flood(
        &mut self,
        conn: ConnId,
        run: &FloodRun,
        n: u64,
        capacity: usize,
    ) -> (Vec<String>, u64) {
        let Some(live) = self.live.get_mut(&conn) else {
            return (Vec::new(), 0);
        };
        if live.flush_limit.is_some() {
            return (Vec::new(), 0);
        }
        let Some(session) = live
            .session
            .as_ref()
            .and_then(|id| self.state.sessions.get_mut(id))
        else {
            return (Vec::new(), 0);
        };
        let first = session.seq + 1;
        let done = run.written.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or_default());
        for i in 0..n {
            session.seq += 1;
            let event = run.event(done + i);
            let dispatch = Dispatch::serialized(session.seq, event.t.clone(), Arc::clone(&event.d));
            out.push(dispatch.to_json());
            session.history.push_back(dispatch);
        }
        while session.history.len() > capacity.max(1) {
            session.history.pop_front();
        }
        live.delivered = session.seq;
        session.delivered = session.seq;
        (out, first)
    }

    /// The live connection attached to the current session of `shard`.
    pub(crate) fn live_of(&mut self, shard: u32) -> Option<(ConnId, &mut Live)> {
        let conn = self.state.session_of(shard)?.attached?;
        self.live.get_mut(&conn).map(|l| (conn, l))
    }

    pub(crate) fn violation(&mut self, violation: Violation, at: Instant) {
        tracing::warn!(?violation, "sim: client broke a gateway rule");
        self.state
            .violations
            .push(ViolationRecord { violation, at });
    }
}

/// The state shared by the simulator handle and its tasks.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) gateway_url: String,
    pub(crate) resume_url: String,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, gateway_url: String, resume_url: String) -> Arc<Self> {
        let inner = Inner::new(&config);
        Arc::new(Self {
            config,
            gateway_url,
            resume_url,
            inner: Mutex::new(inner),
            changed: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the lock, then wakes every waiter.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let out = f(&mut self.lock());
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        out
    }

    /// Runs `f` under the lock without signalling a change.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.lock())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
