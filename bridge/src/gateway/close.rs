//! What a close code means for the session (the README's Gateway behaviour, following Discord's
//! documentation where the seed design differed: 4007 and 4009 need a new
//! session, 4011 and 4012 are fatal).

/// What to do after the gateway closed with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Reconnect to `resume_gateway_url` and RESUME the session.
    Resume,
    /// The session is gone: reconnect and IDENTIFY (through the identify floor).
    Reidentify,
    /// Reconnecting cannot help: stop the shard and tell the operator.
    Fatal,
}

/// Classifies a close code received from Discord. Codes Discord does not
/// document (including 1000/1001 sent by the server during its deploys) are
/// resumed: a RESUME that Discord refuses costs one op 9 and leads to a new
/// session anyway, while a needless IDENTIFY costs a session start.
#[must_use]
pub const fn classify(code: u16) -> Disposition {
    match code {
        4004 | 4010 | 4011 | 4012 | 4013 | 4014 => Disposition::Fatal,
        4007 | 4009 => Disposition::Reidentify,
        _ => Disposition::Resume,
    }
}

/// Discord's name for a gateway close code.
#[must_use]
pub const fn name(code: u16) -> &'static str {
    match code {
        1000 => "normal closure",
        1001 => "going away",
        4000 => "unknown error",
        4001 => "unknown opcode",
        4002 => "decode error",
        4003 => "not authenticated",
        4004 => "authentication failed",
        4005 => "already authenticated",
        4007 => "invalid seq",
        4008 => "rate limited",
        4009 => "session timed out",
        4010 => "invalid shard",
        4011 => "sharding required",
        4012 => "invalid API version",
        4013 => "invalid intent(s)",
        4014 => "disallowed intent(s)",
        _ => "undocumented close code",
    }
}

/// What the operator should do about a fatal close code.
#[must_use]
pub const fn remedy(code: u16) -> &'static str {
    match code {
        4004 => {
            "Discord rejected the bot token: set DISCORD_BOT_TOKEN (discord.token) to the token \
             from Developer Portal > your application > Bot (reset it if it leaked)"
        }
        4010 => {
            "Discord rejected the shard: check DISCORD_SHARDS (discord.shards); ids must be below \
             the total, and the total must match what every process of this bot uses"
        }
        4011 => {
            "the bot is in too many guilds for this shard count: set DISCORD_SHARDS=auto \
             (discord.shards) or a total at least as large as Discord's recommendation"
        }
        4012 => {
            "Discord refused gateway API v10: check DISCORD_GATEWAY_URL (discord.gateway_url) \
             and DISCORD_API_BASE (discord.api_base)"
        }
        4013 => {
            "Discord refused the intents: check DISCORD_GATEWAY_INTENTS (discord.intents) \
             against Discord's list of intents"
        }
        4014 => {
            "a privileged intent (GUILD_MEMBERS, GUILD_PRESENCES or MESSAGE_CONTENT) is not \
             enabled for this bot: enable it in Developer Portal > Bot > Privileged Gateway \
             Intents, or remove it from DISCORD_GATEWAY_INTENTS (discord.intents)"
        }
        _ => "reconnecting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code() {
        use Disposition::*;
        let table = [
            (4000, Resume),
            (4001, Resume),
            (4002, Resume),
            (4003, Resume),
            (4004, Fatal),
            (4005, Resume),
            (4007, Reidentify),
            (4008, Resume),
            (4009, Reidentify),
            (4010, Fatal),
            (4011, Fatal),
            (4012, Fatal),
            (4013, Fatal),
            (4014, Fatal),
            (1000, Resume),
            (1001, Resume),
            (1006, Resume),
            (4999, Resume),
        ];
        for (code, disposition) in table {
            assert_eq!(classify(code), disposition, "close code {code}");
        }
    }

    #[test]
    fn fatal_codes_name_a_setting() {
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            let r = remedy(code);
            assert!(r.contains("DISCORD_"), "{code}: {r}");
            assert_ne!(name(code), "undocumented close code");
        }
    }
}
