//! What the simulated Discord looks like: the bot, its guilds, the limits it
//! enforces, and where it listens.

use std::net::SocketAddr;
use std::time::Duration;

/// Configuration of a [`Simulator`](super::Simulator). Every field has a
/// default that mimics a small production bot, so tests change only what
/// they exercise (`SimConfig { heartbeat_interval: …, ..SimConfig::default() }`).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The bot token the simulator accepts, in IDENTIFY, RESUME and the
    /// `Authorization: Bot <token>` header.
    pub token: String,
    /// Recommended shard count returned by `GET /gateway/bot`.
    pub shards: u32,
    /// `session_start_limit.max_concurrency`: the number of identify buckets
    /// (`shard_id % max_concurrency`).
    pub max_concurrency: u32,
    /// `session_start_limit.total`.
    pub session_start_total: u32,
    /// `session_start_limit.remaining` at start; every accepted IDENTIFY
    /// takes one, and an IDENTIFY at zero is refused like Discord does (the
    /// token is reset: close 4004) and recorded as a violation.
    pub session_start_remaining: u32,
    /// `session_start_limit.reset_after` in milliseconds.
    pub reset_after_ms: u64,
    /// The interval announced in HELLO (Discord uses 41.25 s; tests use a
    /// few hundred milliseconds).
    pub heartbeat_interval: Duration,
    /// When set, a connection that sends no heartbeat for this long (counted
    /// from HELLO, then from the last heartbeat) is closed with 4009 and a
    /// violation is recorded. Discord does this at about 1.5 × the interval.
    pub heartbeat_timeout: Option<Duration>,
    /// The bot's user id (READY `user.id`, and the author of the bot's own
    /// messages in the demo traffic).
    pub bot_user_id: u64,
    /// The bot's username (READY `user.username`).
    pub bot_username: String,
    /// The application id (READY `application.id`, interactions'
    /// `application_id`). Discord gives modern bots the same id as their user.
    pub application_id: u64,
    /// The guilds the bot is in; each shard announces the ones that route to
    /// it (`(guild_id >> 22) % total`) in READY, then sends their GUILD_CREATE.
    pub guilds: Vec<u64>,
    /// The intents the "Developer Portal" allows; asking for another
    /// privileged intent closes the connection with 4014.
    pub privileged_allowed: u64,
    /// Two IDENTIFYs in the same bucket closer than this (across all
    /// connections) are a violation: recorded, and closed with 4008.
    pub identify_floor: Duration,
    /// More guilds than this on one shard closes IDENTIFY with 4011
    /// ("sharding required"); Discord's limit is 2500.
    pub max_guilds_per_shard: usize,
    /// Client payloads allowed per [`send_window`](Self::send_window) on one
    /// connection; one more closes it with 4008 (Discord: 120 per 60 s).
    pub send_limit: usize,
    /// The window of [`send_limit`](Self::send_limit).
    pub send_window: Duration,
    /// How many dispatches a session keeps for RESUME replay. A RESUME from
    /// further back gets op 9 `false`, like a session Discord could not
    /// replay.
    pub replay_capacity: usize,
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
}

/// Guild ids from Discord's own documentation examples: three route to shard
/// 0 and one to shard 1 when the bot runs two shards.
pub const DEFAULT_GUILDS: [u64; 4] = [
    197_038_439_483_310_086,
    290_926_798_626_357_999,
    772_904_309_264_089_089,
    41_771_983_423_143_937,
];

/// The default bot user (and application) id: a snowflake from 2023.
pub const DEFAULT_BOT_ID: u64 = 1_144_060_924_343_672_893;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            token: "sim-token".to_owned(),
            shards: 1,
            max_concurrency: 1,
            session_start_total: 1000,
            session_start_remaining: 1000,
            reset_after_ms: 14_400_000,
            heartbeat_interval: Duration::from_millis(41_250),
            heartbeat_timeout: None,
            bot_user_id: DEFAULT_BOT_ID,
            bot_username: "sim-bot".to_owned(),
            application_id: DEFAULT_BOT_ID,
            guilds: DEFAULT_GUILDS.to_vec(),
            privileged_allowed: 0,
            identify_floor: Duration::from_secs(5),
            max_guilds_per_shard: 2500,
            send_limit: 120,
            send_window: Duration::from_secs(60),
            replay_capacity: 10_000,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// A scripted answer for the next `GET /gateway/bot` requests, to test how a
/// client copes with Discord's REST API failing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpFault {
    /// The HTTP status to answer (e.g. 500, 502, 429).
    pub status: u16,
    /// For 429: the `retry_after` (seconds) of the body, also sent rounded up
    /// in the `Retry-After` header.
    pub retry_after: Option<f64>,
}

impl HttpFault {
    /// A plain error status.
    #[must_use]
    pub const fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }

    /// A 429 asking to retry after `seconds`.
    #[must_use]
    pub const fn rate_limited(seconds: f64) -> Self {
        Self {
            status: 429,
            retry_after: Some(seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::shard_for_guild;

    #[test]
    fn default_guilds_spread_over_two_shards() {
        let on = |s| {
            DEFAULT_GUILDS
                .iter()
                .filter(|g| shard_for_guild(**g, 2) == s)
                .count()
        };
        assert!(on(0) > 0 && on(1) > 0, "{} / {}", on(0), on(1));
    }
}
