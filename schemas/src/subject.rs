//! Subject names and JetStream message ids.
//!
//! The prefix is the capsule id (`nats.subject_prefix`, default
//! [`DEFAULT_PREFIX`]); the Astrid capsule subscribes to
//! `{prefix}.agent.events` on its IPC bus, so the bridge publishes there.

/// The default subject prefix: the id of the Astrid Discord capsule.
pub const DEFAULT_PREFIX: &str = "astrid-discord";

/// `{prefix}.agent.events`: normalized agent events.
#[must_use]
pub fn agent_events(prefix: &str) -> String {
    format!("{prefix}.agent.events")
}

/// `{prefix}.gateway.status`: per-shard lifecycle transitions.
#[must_use]
pub fn gateway_status(prefix: &str) -> String {
    format!("{prefix}.gateway.status")
}

/// `{prefix}.gateway.dispatch.{event}`: the optional raw dispatch firehose.
#[must_use]
pub fn gateway_dispatch(prefix: &str, event: &str) -> String {
    format!("{prefix}.gateway.dispatch.{event}")
}

/// `{prefix}.gateway.command`: gateway commands (request/reply), answered
/// by every process for what it runs.
#[must_use]
pub fn gateway_command(prefix: &str) -> String {
    format!("{prefix}.gateway.command")
}

/// `{prefix}.gateway.command.{shard}`: gateway commands for one shard,
/// subscribed only by the process that runs it.
#[must_use]
pub fn gateway_command_shard(prefix: &str, shard: u32) -> String {
    format!("{prefix}.gateway.command.{shard}")
}

/// `Nats-Msg-Id` of a dispatch: `{session_id}:{seq}`.
///
/// Discord replays the same `(session, seq)` pairs after a RESUME, so this id
/// lets the JetStream duplicate window drop replays that were already stored.
#[must_use]
pub fn msg_id(session_id: &str, seq: u64) -> String {
    format!("{session_id}:{seq}")
}

/// Why a string cannot be used as a subject prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// The prefix is empty.
    Empty,
    /// A dot-separated token is empty (leading, trailing or doubled dot).
    EmptyToken,
    /// The prefix contains a wildcard (`*`, `>`) or whitespace.
    InvalidChar(char),
}

impl std::fmt::Display for PrefixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("must not be empty"),
            Self::EmptyToken => f.write_str("must not start or end with '.' or contain '..'"),
            Self::InvalidChar(c) => write!(
                f,
                "must not contain {c:?} (no wildcards or whitespace in a subject prefix)"
            ),
        }
    }
}

impl std::error::Error for PrefixError {}

/// Checks that `prefix` can head a literal NATS subject.
///
/// # Errors
/// Returns which rule the prefix breaks.
pub fn validate_prefix(prefix: &str) -> Result<(), PrefixError> {
    if prefix.is_empty() {
        return Err(PrefixError::Empty);
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| matches!(c, '*' | '>') || c.is_whitespace() || c.is_control())
    {
        return Err(PrefixError::InvalidChar(c));
    }
    if prefix.split('.').any(str::is_empty) {
        return Err(PrefixError::EmptyToken);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_contract() {
        assert_eq!(
            agent_events("astrid-discord"),
            "astrid-discord.agent.events"
        );
        assert_eq!(gateway_status("x"), "x.gateway.status");
        assert_eq!(
            gateway_dispatch("x", "GUILD_CREATE"),
            "x.gateway.dispatch.GUILD_CREATE"
        );
        assert_eq!(msg_id("abc", 42), "abc:42");
        assert_eq!(gateway_command("x"), "x.gateway.command");
        assert_eq!(gateway_command_shard("x", 3), "x.gateway.command.3");
    }

    #[test]
    fn prefix_validation() {
        assert!(validate_prefix("astrid-discord").is_ok());
        assert!(validate_prefix("tenant.bot1").is_ok());
        assert_eq!(validate_prefix(""), Err(PrefixError::Empty));
        assert_eq!(validate_prefix("a..b"), Err(PrefixError::EmptyToken));
        assert_eq!(validate_prefix(".a"), Err(PrefixError::EmptyToken));
        assert_eq!(validate_prefix("a.*"), Err(PrefixError::InvalidChar('*')));
        assert_eq!(validate_prefix("a >"), Err(PrefixError::InvalidChar(' ')));
    }
}
