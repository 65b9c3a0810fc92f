//! Demo traffic: a steady, varied mix of what a bot's gateway carries, so
//! that `discord-bridge demo` shows the bridge relaying what an agent needs
//! and filtering what it does not.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Simulator;
use super::events::{self, User, general_channel, snowflake};

/// How the generator paces and mixes events.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// Shortest pause between two events.
    pub min_interval: Duration,
    /// Longest pause between two events.
    pub max_interval: Duration,
    /// Every this many steps, send op 7 to a connected shard instead of an
    /// event, so the demo shows a RESUME (`None`: never).
    pub reconnect_every: Option<u64>,
    /// Stop after this many steps (`None`: until cancelled).
    pub max_steps: Option<u64>,
    /// Seed for a reproducible mix (`None`: random).
    pub seed: Option<u64>,
    /// Start with one event of each kind, then a RECONNECT, before the random
    /// mix: a short demo run still shows everything the bridge does.
    pub opening: bool,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_millis(500),
            max_interval: Duration::from_millis(1000),
            reconnect_every: Some(40),
            max_steps: None,
            seed: None,
            opening: true,
        }
    }
}

/// What one step emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrafficKind {
    /// MESSAGE_CREATE in a guild (relayed).
    GuildMessage,
    /// MESSAGE_CREATE in a DM (relayed).
    DirectMessage,
    /// INTERACTION_CREATE of a slash command (relayed).
    Interaction,
    /// MESSAGE_CREATE authored by the bot itself (the bridge must drop it).
    OwnMessage,
    /// TYPING_START (not relayed).
    Typing,
    /// PRESENCE_UPDATE (not relayed).
    Presence,
    /// A repeated GUILD_CREATE (not relayed).
    GuildCreate,
    /// An op 7 RECONNECT (the bridge must RESUME).
    Reconnect,
}

/// One emitted event, to compare with what reached the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// What it was.
    pub kind: TrafficKind,
    /// The shard it went to.
    pub shard: u32,
    /// Its sequence number (0 for a RECONNECT).
    pub seq: u64,
    /// The message or interaction id, if it has one.
    pub id: Option<String>,
}

/// At most this many [`Emitted`] entries are kept in a report.
pub const EMITTED_CAP: usize = 10_000;

/// What the generator emitted, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficReport {
    /// Guild messages.
    pub guild_messages: u64,
    /// DMs.
    pub direct_messages: u64,
    /// Slash-command interactions.
    pub interactions: u64,
    /// Messages by the bot itself.
    pub own_messages: u64,
    /// TYPING_STARTs.
    pub typing: u64,
    /// PRESENCE_UPDATEs.
    pub presences: u64,
    /// Repeated GUILD_CREATEs.
    pub guild_creates: u64,
    /// Op 7s sent.
    pub reconnects: u64,
    /// Events that could not be dispatched (their shard had no session).
    pub undelivered: u64,
    /// The first [`EMITTED_CAP`] events, in order.
    pub emitted: Vec<Emitted>,
}

impl TrafficReport {
    /// Events the bridge should publish as agent events (messages by others
    /// and interactions).
    #[must_use]
    pub const fn relayable(&self) -> u64 {
        self.guild_messages + self.direct_messages + self.interactions
    }

    fn count(&mut self, kind: TrafficKind) {
        let counter = match kind {
            TrafficKind::GuildMessage => &mut self.guild_messages,
            TrafficKind::DirectMessage => &mut self.direct_messages,
            TrafficKind::Interaction => &mut self.interactions,
            TrafficKind::OwnMessage => &mut self.own_messages,
            TrafficKind::Typing => &mut self.typing,
            TrafficKind::Presence => &mut self.presences,
            TrafficKind::GuildCreate => &mut self.guild_creates,
            TrafficKind::Reconnect => &mut self.reconnects,
        };
        *counter += 1;
    }

    fn record(&mut self, emitted: Emitted) {
        self.count(emitted.kind);
        if self.emitted.len() < EMITTED_CAP {
            self.emitted.push(emitted);
        }
    }
}

const WEIGHTS: [(TrafficKind, u32); 7] = [
    (TrafficKind::GuildMessage, 35),
    (TrafficKind::DirectMessage, 12),
    (TrafficKind::Interaction, 15),
    (TrafficKind::OwnMessage, 8),
    (TrafficKind::Typing, 13),
    (TrafficKind::Presence, 12),
    (TrafficKind::GuildCreate, 5),
];

/// The opening tour: everything relayed, everything filtered, a RESUME.
const OPENING: [TrafficKind; 7] = [
    TrafficKind::GuildMessage,
    TrafficKind::Interaction,
    TrafficKind::DirectMessage,
    TrafficKind::OwnMessage,
    TrafficKind::Typing,
    TrafficKind::Presence,
    TrafficKind::Reconnect,
];

const CHATTER: [&str; 8] = [
    "hey, is the bot awake?",
    "can you summarize the last meeting notes?",
    "what's on the release checklist today?",
    "thanks, that worked 🎉",
    "remind me to review the PR at 3pm",
    "has anyone seen the deploy logs?",
    "ping",
    "how do I reset my password?",
];

const COMMANDS: [(&str, &str, &str); 3] = [
    ("ask", "question", "what changed in v2?"),
    ("remind", "when", "in 10 minutes"),
    ("search", "query", "gateway resume"),
];

/// The people and channels of a demo run.
struct Cast {
    users: Vec<User>,
    dm_channels: Vec<u64>,
    bot: User,
}

/// Emits demo events on `sim` until `cancel` fires (or `max_steps`), and
/// reports what it emitted. Starts once some shard has a session.
pub async fn run_demo_traffic(
    sim: &Simulator,
    cancel: CancellationToken,
    options: TrafficOptions,
) -> TrafficReport {
    let mut report = TrafficReport::default();
    let mut rng = options
        .seed
        .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    let config = sim.config();
    let users: Vec<User> = ["alice", "bob", "carol", "dmitri"]
        .iter()
        .map(|name| User::new(snowflake(), name))
        .collect();
    let cast = Cast {
        dm_channels: users.iter().map(|_| snowflake()).collect(),
        users,
        bot: User {
            id: config.bot_user_id,
            username: config.bot_username.clone(),
            bot: true,
        },
    };
    let year = Duration::from_secs(365 * 86_400);
    let started = tokio::select! {
        () = cancel.cancelled() => return report,
        started = sim.wait_for(year, |s| (!s.shard_sessions.is_empty()).then_some(())) => started,
    };
    if started.is_err() {
        return report;
    }
    let (low, high) = (
        options.min_interval,
        options.max_interval.max(options.min_interval),
    );
    let mut step = 0_u64;
    while options.max_steps.is_none_or(|max| step < max) {
        let span = u64::try_from((high - low).as_millis()).unwrap_or(u64::MAX);
        let pause = low + Duration::from_millis(rng.u64(0..=span));
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        step += 1;
        let opening = usize::try_from(step - 1)
            .ok()
            .and_then(|i| OPENING.get(i))
            .filter(|_| options.opening)
            .copied();
        let scheduled_reconnect = options
            .reconnect_every
            .is_some_and(|every| every > 0 && step.is_multiple_of(every));
        if opening == Some(TrafficKind::Reconnect) || (opening.is_none() && scheduled_reconnect) {
            reconnect_one(sim, &mut rng, &mut report);
            continue;
        }
        let kind = opening.unwrap_or_else(|| pick(&mut rng));
        emit(sim, &mut rng, &cast, kind, &mut report);
    }
    report
}

fn pick(rng: &mut fastrand::Rng) -> TrafficKind {
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.u32(0..total);
    for (kind, weight) in WEIGHTS {
        if roll < weight {
            return kind;
        }
        roll -= weight;
    }
    TrafficKind::GuildMessage
}

fn reconnect_one(sim: &Simulator, rng: &mut fastrand::Rng, report: &mut TrafficReport) {
    let shards: Vec<u32> = sim.read(|s| {
        s.shard_sessions
            .keys()
            .copied()
            .filter(|shard| s.connection_of(*shard).is_some())
            .collect()
    });
    if let Some(shard) = rng.choice(shards)
        && sim.reconnect(shard)
    {
        tracing::info!(shard, "sim: demo sends op 7 reconnect");
        report.record(Emitted {
            kind: TrafficKind::Reconnect,
            shard,
            seq: 0,
            id: None,
        });
    }
}

fn emit(
    sim: &Simulator,
    rng: &mut fastrand::Rng,
    cast: &Cast,
    kind: TrafficKind,
    report: &mut TrafficReport,
) {
    let config = sim.config();
    let Some(guild) = rng.choice(config.guilds.iter().copied()) else {
        return;
    };
    let who = rng.usize(0..cast.users.len().max(1));
    let (Some(user), Some(dm)) = (cast.users.get(who), cast.dm_channels.get(who)) else {
        return;
    };
    let channel = general_channel(guild);
    let (target, event, d): (Option<u64>, &str, Value) = match kind {
        TrafficKind::GuildMessage => {
            let text = rng.choice(CHATTER).unwrap_or("hello");
            (
                Some(guild),
                "MESSAGE_CREATE",
                events::message_create(channel, Some(guild), user, text),
            )
        }
        TrafficKind::DirectMessage => {
            let text = rng.choice(CHATTER).unwrap_or("hello");
            (
                None,
                "MESSAGE_CREATE",
                events::message_create(*dm, None, user, text),
            )
        }
        TrafficKind::OwnMessage => {
            let text = "On it! Here is what I found.";
            (
                Some(guild),
                "MESSAGE_CREATE",
                events::message_create(channel, Some(guild), &cast.bot, text),
            )
        }
        TrafficKind::Interaction => {
            let (name, option, value) = rng.choice(COMMANDS).unwrap_or(COMMANDS[0]);
            let options = json!([{"type": 3, "name": option, "value": value}]);
            let app = config.application_id;
            if rng.u8(0..4) == 0 {
                (
                    None,
                    "INTERACTION_CREATE",
                    events::interaction_create(app, *dm, None, user, name, options),
                )
            } else {
                let d = events::interaction_create(app, channel, Some(guild), user, name, options);
                (Some(guild), "INTERACTION_CREATE", d)
            }
        }
        TrafficKind::Typing => (
            Some(guild),
            "TYPING_START",
            events::typing_start(channel, Some(guild), user),
        ),
        TrafficKind::Presence => {
            let status = rng.choice(["online", "idle", "dnd"]).unwrap_or("online");
            (
                Some(guild),
                "PRESENCE_UPDATE",
                events::presence_update(guild, user, status),
            )
        }
        TrafficKind::GuildCreate | TrafficKind::Reconnect => {
            (Some(guild), "GUILD_CREATE", events::guild_create(guild))
        }
    };
    let id = matches!(
        kind,
        TrafficKind::GuildMessage
            | TrafficKind::DirectMessage
            | TrafficKind::Interaction
            | TrafficKind::OwnMessage
    )
    .then(|| d.get("id").and_then(Value::as_str).map(str::to_owned))
    .flatten();
    match sim.dispatch_to_guild(target, event, d) {
        Some((shard, seq)) => {
            tracing::debug!(?kind, shard, seq, "sim: demo event");
            report.record(Emitted {
                kind,
                shard,
                seq,
                id,
            });
        }
        None => report.undelivered += 1,
    }
}
