//! Sharding as Discord documents it: a bot with `num_shards` shards gets a
//! guild's events on shard `(guild_id >> 22) % num_shards`, direct messages
//! on shard 0, and may identify one shard per rate-limit bucket
//! (`shard_id % max_concurrency`) at a time.

use std::fmt;

/// The `shard` of an IDENTIFY: `[shard_id, num_shards]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    /// `shard_id`, from 0.
    pub id: u32,
    /// `num_shards`.
    pub total: u32,
}

impl ShardId {
    /// Shard `id` of `total`.
    #[must_use]
    pub const fn new(id: u32, total: u32) -> Self {
        Self { id, total }
    }

    /// Its identify rate-limit bucket, `shard_id % max_concurrency` (0 when
    /// `max_concurrency` is 0, which Discord never sends).
    #[must_use]
    pub const fn bucket(self, max_concurrency: u32) -> u32 {
        match max_concurrency {
            0 => 0,
            n => self.id % n,
        }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.id, self.total)
    }
}

/// The shard that receives the events of `guild_id` when the bot runs
/// `num_shards` shards: `(guild_id >> 22) % num_shards` (shard 0 for 0
/// shards, which no valid IDENTIFY asks for).
#[must_use]
pub fn shard_for_guild(guild_id: u64, num_shards: u32) -> u32 {
    if num_shards == 0 {
        return 0;
    }
    let shard = (guild_id >> 22) % u64::from(num_shards);
    // The remainder is below `num_shards`, a u32.
    u32::try_from(shard).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_formula() {
        // The snowflake's timestamp bits decide: the low 22 bits never do.
        assert_eq!(shard_for_guild(0, 2), 0);
        assert_eq!(shard_for_guild((1 << 22) - 1, 2), 0);
        assert_eq!(shard_for_guild(1 << 22, 2), 1);
        assert_eq!(shard_for_guild(3 << 22, 3), 0);
        assert_eq!(shard_for_guild(5 << 22 | 0x3f_ffff, 3), 2);
        assert_eq!(shard_for_guild(u64::MAX, 1), 0);
        assert_eq!(shard_for_guild(u64::MAX, 0), 0);
        assert_eq!(shard_for_guild(197_038_439_483_310_086, 2), 0);
    }

    #[test]
    fn buckets() {
        assert_eq!(ShardId::new(5, 8).bucket(4), 1);
        assert_eq!(ShardId::new(5, 8).bucket(1), 0);
        assert_eq!(ShardId::new(5, 8).bucket(0), 0);
        assert_eq!(ShardId::new(1, 2).to_string(), "[1, 2]");
    }
}
