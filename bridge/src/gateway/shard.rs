//! Shard ids, the `discord.shards` selection, and guild-to-shard routing.

use std::fmt;

/// One shard of a sharded bot: `[id, total]` in IDENTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    /// Zero-based shard number.
    pub id: u32,
    /// Number of shards of the bot.
    pub total: u32,
}

impl ShardId {
    /// Shard `id` of `total`.
    #[must_use]
    pub const fn new(id: u32, total: u32) -> Self {
        Self { id, total }
    }

    /// The identify rate-limit bucket of this shard: `id % max_concurrency`.
    #[must_use]
    pub const fn bucket(self, max_concurrency: u32) -> u32 {
        if max_concurrency == 0 {
            0
        } else {
            self.id % max_concurrency
        }
    }

    /// `[id, total]` as sent to Discord and reported in status events.
    #[must_use]
    pub const fn pair(self) -> [u32; 2] {
        [self.id, self.total]
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.id, self.total)
    }
}

/// The shard a guild's events arrive on: `(guild_id >> 22) % total`.
/// Direct messages always arrive on shard 0.
#[must_use]
pub const fn shard_for_guild(guild_id: u64, total: u32) -> u32 {
    if total == 0 {
        return 0;
    }
    // The remainder is < total, which fits in u32.
    #[allow(clippy::cast_possible_truncation)]
    let shard = ((guild_id >> 22) % total as u64) as u32;
    shard
}

/// The largest shard count accepted, configured or recommended by Discord:
/// 65536, dozens of times what the largest bots run (Discord asks for one
/// shard per 1000–2500 guilds). A process allocates per shard it runs, so a
/// typo like `0-99999999/100000000` must be a configuration error, not an
/// attempt to start a hundred million sessions.
pub const MAX_SHARDS: u32 = 1 << 16;

/// Which shards this process runs (`discord.shards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    /// All shards Discord recommends (`GET /gateway/bot`), in this process.
    Auto,
    /// Shards `from..=to` of `total`.
    Range {
        /// First shard id.
        from: u32,
        /// Last shard id (inclusive).
        to: u32,
        /// Shard count of the bot.
        total: u32,
    },
}

/// Why a `discord.shards` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardSpecError {
    /// Not `auto`, `ID/TOTAL` or `A-B/TOTAL`.
    #[error("{0:?} is not `auto`, `ID/TOTAL` or `A-B/TOTAL` (e.g. `0/1`, `0-3/8`)")]
    Syntax(String),
    /// Total of zero.
    #[error("the shard total must be at least 1")]
    ZeroTotal,
    /// A total above [`MAX_SHARDS`].
    #[error("a shard total of {0} is more than the {MAX_SHARDS} the bridge runs")]
    TooMany(u32),
    /// An id not below the total, or a range that runs backwards.
    #[error("shards {from}-{to} are not within 0..{total} in ascending order")]
    OutOfRange {
        /// First id.
        from: u32,
        /// Last id.
        to: u32,
        /// Total.
        total: u32,
    },
}

impl ShardSpec {
    /// Parses `auto`, `ID/TOTAL` or `A-B/TOTAL`.
    ///
    /// # Errors
    /// Fails on bad syntax, a zero total or ids outside `0..total`.
    pub fn parse(text: &str) -> Result<Self, ShardSpecError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        let syntax = || ShardSpecError::Syntax(text.to_owned());
        let (ids, total) = text.split_once('/').ok_or_else(syntax)?;
        let total: u32 = total.trim().parse().map_err(|_| syntax())?;
        let (from, to) = match ids.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| syntax())?,
                b.trim().parse().map_err(|_| syntax())?,
            ),
            None => {
                let id = ids.trim().parse().map_err(|_| syntax())?;
                (id, id)
            }
        };
        if total == 0 {
            return Err(ShardSpecError::ZeroTotal);
        }
        if total > MAX_SHARDS {
            return Err(ShardSpecError::TooMany(total));
        }
        if from > to || to >= total {
            return Err(ShardSpecError::OutOfRange { from, to, total });
        }
        Ok(Self::Range { from, to, total })
    }

    /// The shards to run, given Discord's recommended count for `Auto`.
    #[must_use]
    pub fn shards(self, recommended: u32) -> Vec<ShardId> {
        match self {
            Self::Auto => {
                let total = recommended.max(1);
                (0..total).map(|id| ShardId::new(id, total)).collect()
            }
            Self::Range { from, to, total } => {
                (from..=to).map(|id| ShardId::new(id, total)).collect()
            }
        }
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Range { from, to, total } if from == to => write!(f, "{from}/{total}"),
            Self::Range { from, to, total } => write!(f, "{from}-{to}/{total}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(ShardSpec::parse("auto"), Ok(ShardSpec::Auto));
        assert_eq!(
            ShardSpec::parse("1/2"),
            Ok(ShardSpec::Range {
                from: 1,
                to: 1,
                total: 2
            })
        );
        assert_eq!(
            ShardSpec::parse("0-3/8").unwrap().shards(0),
            (0..4).map(|i| ShardId::new(i, 8)).collect::<Vec<_>>()
        );
        assert_eq!(ShardSpec::Auto.shards(3).len(), 3);
        assert_eq!(ShardSpec::Auto.shards(0), [ShardId::new(0, 1)]);
        assert_eq!(ShardSpec::parse("2-5/8").unwrap().to_string(), "2-5/8");
    }

    #[test]
    fn refuses_bad_specs() {
        assert!(matches!(
            ShardSpec::parse("two"),
            Err(ShardSpecError::Syntax(_))
        ));
        assert_eq!(ShardSpec::parse("0/0"), Err(ShardSpecError::ZeroTotal));
        assert_eq!(
            ShardSpec::parse("0-99999999/100000000"),
            Err(ShardSpecError::TooMany(100_000_000))
        );
        assert!(ShardSpec::parse(&format!("0/{MAX_SHARDS}")).is_ok());
        assert!(matches!(
            ShardSpec::parse("2/2"),
            Err(ShardSpecError::OutOfRange { .. })
        ));
        assert!(matches!(
            ShardSpec::parse("3-1/4"),
            Err(ShardSpecError::OutOfRange { .. })
        ));
    }

    #[test]
    fn guild_routing_and_buckets() {
        // Discord's documented example: guild 41771983423143937 on 2 shards.
        let guild: u64 = 41_771_983_423_143_937;
        assert_eq!(shard_for_guild(guild, 1), 0);
        assert_eq!(shard_for_guild(guild, 2), ((guild >> 22) % 2) as u32);
        assert_eq!(ShardId::new(17, 32).bucket(16), 1);
        assert_eq!(ShardId::new(3, 4).bucket(0), 0);
    }
}
