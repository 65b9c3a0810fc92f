//! What goes in and out of the session machine.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use discord_bridge_schemas::{AgentEventKind, StatusEvent};

use crate::codec::Compression;
use crate::gateway::payload::Properties;
use crate::gateway::{Intents, ShardId};
use crate::secret::Secret;

/// Everything the machine needs to know about its shard.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Which shard this is.
    pub shard: ShardId,
    /// The bot token, sent in IDENTIFY and RESUME.
    pub token: Secret,
    /// Intents sent in IDENTIFY.
    pub intents: Intents,
    /// Where new sessions connect (from `GET /gateway/bot` or configuration).
    pub gateway_url: String,
    /// Transport compression requested in the URL.
    pub compression: Compression,
    /// Accept non-`wss://discord.gg` resume URLs (simulator and tests).
    pub allow_insecure_gateway: bool,
    /// Reconnect backoff: first step.
    pub backoff_base: Duration,
    /// Reconnect backoff: ceiling.
    pub backoff_max: Duration,
    /// Dispatch names also published raw (the firehose).
    pub raw_dispatch: Vec<String>,
    /// IDENTIFY connection properties.
    pub properties: Properties,
    /// How long to wait for HELLO after the socket opened.
    pub hello_timeout: Duration,
    /// How long to wait for READY or RESUMED after IDENTIFY or RESUME.
    pub handshake_timeout: Duration,
    /// RESUMEs that may fail after the socket opened (no RESUMED, no op 9)
    /// before the session is given up for a fresh IDENTIFY.
    pub max_resume_failures: u32,
    /// Failed connects to `resume_gateway_url` before falling back to a new
    /// session on the main gateway URL.
    pub max_resume_connect_failures: u32,
    /// How long the event buffer may stay full with no publish acknowledged
    /// before the connection is closed (resumably) instead of waiting on.
    pub stall_timeout: Duration,
    /// Seed of the machine's randomness (jitter); fixed in tests.
    pub seed: u64,
    /// A session handed over by the previous owner of the shard: the first
    /// connection RESUMEs it instead of identifying.
    pub resume: Option<Resume>,
}

/// A session to resume, from a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Discord's session id (validated).
    pub session_id: Arc<str>,
    /// Where to resume it (validated).
    pub resume_url: String,
    /// Everything up to here is stored: Discord replays what follows.
    pub seq: u64,
}

impl MachineConfig {
    /// Defaults for everything but the identity of the shard.
    #[must_use]
    pub fn new(shard: ShardId, token: Secret, gateway_url: String) -> Self {
        Self {
            shard,
            token,
            intents: Intents::default(),
            gateway_url,
            compression: Compression::default(),
            allow_insecure_gateway: false,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            raw_dispatch: Vec::new(),
            properties: Properties::default(),
            hello_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(120),
            max_resume_failures: 3,
            max_resume_connect_failures: 10,
            stall_timeout: Duration::from_secs(30),
            seed: fastrand::u64(..),
            resume: None,
        }
    }
}

/// One input to the machine.
#[derive(Debug)]
pub enum Input<'a> {
    /// Begin: connect.
    Start,
    /// The WebSocket opened.
    Opened,
    /// The WebSocket could not be opened.
    ConnectFailed {
        /// Why (never contains secrets).
        error: String,
    },
    /// One complete JSON payload.
    Payload(&'a [u8]),
    /// A payload larger than the cap was dropped.
    Oversized {
        /// Its size.
        size: usize,
    },
    /// The compressed stream broke: the connection must be reset.
    StreamCorrupt {
        /// Why.
        error: String,
    },
    /// The connection ended: a close frame (`code`) or a transport error.
    Closed {
        /// The close code, if a close frame arrived.
        code: Option<u16>,
        /// Close reason or transport error.
        reason: String,
    },
    /// Time passed: check deadlines.
    Tick,
    /// The identify rate limiter allows an IDENTIFY now.
    IdentifyPermit,
    /// Everything of session `epoch` up to `seq` is stored (or was not to
    /// be stored): the outbox's resume point moved.
    Acked {
        /// The session.
        epoch: u64,
        /// The sequence.
        seq: u64,
    },
    /// The publisher's buffer is full: the event `seq` was not taken. The
    /// shell keeps it and reads nothing more from the socket until it fits
    /// ([`Input::PublisherReady`]): TCP pushes back to Discord.
    PublishRejected {
        /// The session.
        epoch: u64,
        /// The sequence.
        seq: u64,
    },
    /// The publisher has room again (after [`Input::PublishRejected`]): the
    /// kept event was taken and reading resumes, or, after a close for
    /// NATS, the next connection may start.
    PublisherReady,
    /// The NATS connection is down (the client reconnects on its own).
    NatsDown,
    /// The NATS connection is up again.
    NatsUp,
    /// A caller's gateway command (already checked): send `text` now if the
    /// connection is live and the rate limit has room outside the
    /// heartbeat reserve, else refuse it ([`Action::CommandRefused`]).
    /// Commands are never queued: the caller gets an answer at once.
    Command {
        /// Echoed in [`SendKind::Command`] or [`Action::CommandRefused`].
        id: u64,
        /// The whole frame, `{"op":…,"d":…}`.
        text: String,
        /// An op 3: remembered once sent, and sent again on every new
        /// session.
        presence: bool,
    },
    /// Stop for good.
    Shutdown,
}

/// Whether a send may use the heartbeat reserve of the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// op 1.
    Heartbeat,
    /// op 2 (contains the token).
    Identify,
    /// op 6 (contains the token).
    Resume,
    /// A caller's command; the shell reports when it is written.
    Command(u64),
    /// The remembered presence, sent again on a new session.
    Presence,
}

/// Why a command was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandRefusal {
    /// No live session: the connection is in this state.
    NotConnected {
        /// What the shard is doing, e.g. `identifying`.
        state: &'static str,
    },
    /// The rate limit has no room outside the heartbeat reserve until then.
    RateLimited {
        /// When a command fits again.
        retry_at: std::time::Instant,
    },
}

/// A text frame to send. Its `Debug` never shows the text, which may hold
/// the token.
#[derive(Clone, PartialEq, Eq)]
pub struct OutFrame {
    /// What it is.
    pub kind: SendKind,
    /// The JSON text.
    pub text: String,
}

impl fmt::Debug for OutFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutFrame")
            .field("kind", &self.kind)
            .field("len", &self.text.len())
            .finish()
    }
}

/// What a published event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishKind {
    /// A normalized agent event, stored in JetStream.
    Agent(AgentEventKind),
    /// A raw dispatch for the firehose subject (core NATS, not stored).
    Raw(Box<str>),
}

/// An event for the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The local session number, echoed back in acks.
    pub epoch: u64,
    /// Discord's session id (for `Nats-Msg-Id`).
    pub session_id: Arc<str>,
    /// Dispatch sequence.
    pub seq: u64,
    /// What it is.
    pub kind: PublishKind,
    /// For the `Discord-Guild` header.
    pub guild_id: Option<String>,
    /// The message body.
    pub body: Vec<u8>,
}

impl Publish {
    /// The dispatch name, for the `Discord-Event` header.
    #[must_use]
    pub fn event_name(&self) -> &str {
        match &self.kind {
            PublishKind::Agent(AgentEventKind::Message) => "MESSAGE_CREATE",
            PublishKind::Agent(AgentEventKind::Interaction) => "INTERACTION_CREATE",
            PublishKind::Raw(t) => t,
        }
    }

    /// Whether this event goes to the durable agent stream.
    #[must_use]
    pub const fn is_durable(&self) -> bool {
        matches!(self.kind, PublishKind::Agent(_))
    }
}

/// Why the shard stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Shutdown was requested.
    Shutdown,
    /// Discord closed with a code that reconnecting cannot fix.
    Fatal {
        /// The close code.
        code: u16,
        /// Names the code and the fix.
        message: String,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a WebSocket to this URL (query included), then feed
    /// [`Input::Opened`] or [`Input::ConnectFailed`].
    Connect {
        /// The URL.
        url: String,
    },
    /// Send a text frame.
    Send(OutFrame),
    /// Send a close frame with this code and drop the connection. Nothing
    /// more is read from it. The shell logs it with its reason.
    Close {
        /// The code: 1000 ends the session, anything else keeps it resumable.
        code: u16,
        /// Why, as a stable word (`shutdown`, `zombie_connection`, …).
        reason: &'static str,
    },
    /// Ask the identify rate limiter for a permit, then feed
    /// [`Input::IdentifyPermit`]. Forget the request when the connection
    /// closes.
    RequestIdentify,
    /// Hand an event to the publisher; feed [`Input::PublishRejected`] if it
    /// cannot take it.
    Publish(Publish),
    /// Dispatch `seq` of session `epoch` is not stored: it counts as stored
    /// once everything before it is. Feed [`Input::Acked`] when that moves
    /// the resume point at once.
    Skip {
        /// The session.
        epoch: u64,
        /// The dispatch.
        seq: u64,
    },
    /// Publish a status event.
    Status(StatusEvent),
    /// Command `id` ([`Input::Command`]) was not sent.
    CommandRefused {
        /// The command.
        id: u64,
        /// Why.
        refusal: CommandRefusal,
    },
    /// The shard is done.
    Stop(Stop),
}

/// Counters for the status endpoint and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Agent events handed to the publisher.
    pub relayed: u64,
    /// Messages by the bot itself, not relayed.
    pub own_messages: u64,
    /// Frames or dispatch bodies that could not be used.
    pub malformed: u64,
    /// Frames dropped for exceeding the size cap.
    pub oversized: u64,
    /// Payloads with an opcode Discord does not document.
    pub unknown_opcodes: u64,
    /// Replayed dispatches already handled before a RESUME.
    pub replays_skipped: u64,
    /// Connections lost, by cause ([`ReasonCounts::total`] for all).
    pub reconnects: super::ReasonCounts,
    /// Times reading paused because the event buffer was full (TCP
    /// back-pressure on Discord, no reconnect).
    pub read_pauses: u64,
    /// Connections closed because NATS was down or stalled with a full
    /// buffer (also counted in `reconnects`).
    pub nats_closes: u64,
    /// Dispatches known to be lost (session invalidated before replay).
    pub lost: u64,
    /// READY received.
    pub sessions: u64,
    /// IDENTIFYs sent: each spends one of the bot's session starts.
    pub identifies: u64,
    /// RESUMEs sent.
    pub resumes: u64,
    /// MESSAGE_CREATE dispatches decoded by the one-pass path (Discord's key
    /// order, `t` before `d`); the rest of them took the general path. Shows
    /// that the hot path is hot: a gateway, proxy or test double that
    /// reorders keys silently doubles the decoding work.
    pub one_pass_messages: u64,
}
