//! Gateway intents as Discord documents them: the bits a client may set in
//! IDENTIFY's `intents`, and the privileged ones that need the Developer
//! Portal switch. An unknown bit is refused with close code 4013, a
//! privileged one the bot is not allowed with 4014.

/// Discord's intents by bit.
pub const INTENTS: [(&str, u64); 21] = [
    ("GUILDS", 1 << 0),
    ("GUILD_MEMBERS", 1 << 1),
    ("GUILD_MODERATION", 1 << 2),
    ("GUILD_EXPRESSIONS", 1 << 3),
    ("GUILD_INTEGRATIONS", 1 << 4),
    ("GUILD_WEBHOOKS", 1 << 5),
    ("GUILD_INVITES", 1 << 6),
    ("GUILD_VOICE_STATES", 1 << 7),
    ("GUILD_PRESENCES", 1 << 8),
    ("GUILD_MESSAGES", 1 << 9),
    ("GUILD_MESSAGE_REACTIONS", 1 << 10),
    ("GUILD_MESSAGE_TYPING", 1 << 11),
    ("DIRECT_MESSAGES", 1 << 12),
    ("DIRECT_MESSAGE_REACTIONS", 1 << 13),
    ("DIRECT_MESSAGE_TYPING", 1 << 14),
    ("MESSAGE_CONTENT", 1 << 15),
    ("GUILD_SCHEDULED_EVENTS", 1 << 16),
    ("AUTO_MODERATION_CONFIGURATION", 1 << 20),
    ("AUTO_MODERATION_EXECUTION", 1 << 21),
    ("GUILD_MESSAGE_POLLS", 1 << 24),
    ("DIRECT_MESSAGE_POLLS", 1 << 25),
];

/// `GUILD_MEMBERS`: privileged.
pub const GUILD_MEMBERS: u64 = 1 << 1;
/// `GUILD_PRESENCES`: privileged.
pub const GUILD_PRESENCES: u64 = 1 << 8;
/// `MESSAGE_CONTENT`: privileged.
pub const MESSAGE_CONTENT: u64 = 1 << 15;

/// The privileged intents.
pub const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;

/// Every bit of [`INTENTS`].
pub const KNOWN_BITS: u64 = {
    let mut bits = 0;
    let mut i = 0;
    while i < INTENTS.len() {
        bits |= INTENTS[i].1;
        i += 1;
    }
    bits
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_bits() {
        // Bits 17-19, 22 and 23 are not intents (any more).
        assert_eq!(KNOWN_BITS, 0x0331_ffff);
        assert_eq!(PRIVILEGED, 0x8102);
        assert_eq!(PRIVILEGED & KNOWN_BITS, PRIVILEGED);
        let names: Vec<&str> = INTENTS.iter().map(|(n, _)| *n).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique);
    }
}
