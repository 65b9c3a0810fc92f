//! Gateway intents: the bitfield sent in IDENTIFY, parsed from a number or a
//! comma-separated list of Discord's intent names.

use std::fmt;

/// Discord's intent names and bits (current names first, then the names
/// Discord retired, which are still accepted).
pub const INTENT_NAMES: &[(&str, u64)] = &[
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
    // Retired names, same bits.
    ("GUILD_BANS", 1 << 2),
    ("GUILD_EMOJIS_AND_STICKERS", 1 << 3),
];

/// Intents that must be switched on in the Developer Portal; asking for them
/// without that ends the connection with close code 4014.
pub const PRIVILEGED: u64 = (1 << 1) | (1 << 8) | (1 << 15);

/// Every bit Discord defines.
pub const KNOWN_BITS: u64 = {
    let mut bits = 0;
    let mut i = 0;
    while i < INTENT_NAMES.len() {
        bits |= INTENT_NAMES[i].1;
        i += 1;
    }
    bits
};

/// GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES: no privileged intent, enough for
/// messages that mention the bot, DMs and interactions.
pub const DEFAULT: Intents = Intents(4609);

/// A gateway intents bitfield.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Intents(pub u64);

/// Why an intents value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentsError {
    /// A name that is not one of Discord's intents.
    #[error("unknown intent name {0:?} (known: {names})", names = known_names())]
    UnknownName(String),
    /// A number with bits Discord does not define.
    #[error("{0} sets bits that are not Discord intents (unknown bits: {1:#x})")]
    UnknownBits(u64, u64),
    /// Nothing was given.
    #[error("no intents given")]
    Empty,
}

fn known_names() -> String {
    INTENT_NAMES[..INTENT_NAMES.len() - 2]
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Intents {
    /// Accepts a number.
    ///
    /// # Errors
    /// Fails when the number sets bits Discord does not define.
    pub fn from_bits(bits: u64) -> Result<Self, IntentsError> {
        let unknown = bits & !KNOWN_BITS;
        if unknown != 0 {
            return Err(IntentsError::UnknownBits(bits, unknown));
        }
        Ok(Self(bits))
    }

    /// Parses a decimal number or names separated by commas, `|` or spaces
    /// (case-insensitive), e.g. `GUILDS,GUILD_MESSAGES`.
    ///
    /// # Errors
    /// Fails on an unknown name or unknown bits.
    pub fn parse(text: &str) -> Result<Self, IntentsError> {
        let text = text.trim();
        if let Ok(bits) = text.parse::<u64>() {
            return Self::from_bits(bits);
        }
        let mut bits = 0;
        let mut any = false;
        for name in text
            .split([',', '|', ' ', '\t'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            bits |= Self::bit_of(name)?;
            any = true;
        }
        if !any {
            return Err(IntentsError::Empty);
        }
        Ok(Self(bits))
    }

    /// The bit of one intent name (case-insensitive).
    ///
    /// # Errors
    /// Fails when the name is not an intent.
    pub fn bit_of(name: &str) -> Result<u64, IntentsError> {
        INTENT_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, b)| *b)
            .ok_or_else(|| IntentsError::UnknownName(name.to_owned()))
    }

    /// The bits.
    #[must_use]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether any privileged intent is requested.
    #[must_use]
    pub const fn has_privileged(self) -> bool {
        self.0 & PRIVILEGED != 0
    }

    /// Current names of the set bits.
    #[must_use]
    pub fn names(self) -> Vec<&'static str> {
        INTENT_NAMES[..INTENT_NAMES.len() - 2]
            .iter()
            .filter(|(_, b)| self.0 & b != 0)
            .map(|(n, _)| *n)
            .collect()
    }
}

impl Default for Intents {
    fn default() -> Self {
        DEFAULT
    }
}

impl fmt::Display for Intents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.names().join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_guilds_guild_messages_direct_messages() {
        assert_eq!(
            DEFAULT.names(),
            ["GUILDS", "GUILD_MESSAGES", "DIRECT_MESSAGES"]
        );
        assert!(!DEFAULT.has_privileged());
    }

    #[test]
    fn parses_numbers_and_names() {
        assert_eq!(Intents::parse("4609").unwrap(), DEFAULT);
        assert_eq!(
            Intents::parse("guilds, GUILD_MESSAGES|direct_messages").unwrap(),
            DEFAULT
        );
        assert_eq!(
            Intents::parse("GUILD_EXPRESSIONS,GUILD_MESSAGE_POLLS,DIRECT_MESSAGE_POLLS")
                .unwrap()
                .bits(),
            (1 << 3) | (1 << 24) | (1 << 25)
        );
        assert_eq!(
            Intents::parse("GUILD_BANS").unwrap().names(),
            ["GUILD_MODERATION"]
        );
        assert!(Intents::parse("MESSAGE_CONTENT").unwrap().has_privileged());
    }

    #[test]
    fn refuses_unknown_names_and_bits() {
        let err = Intents::parse("GUILDS,NOPE").unwrap_err();
        assert_eq!(err, IntentsError::UnknownName("NOPE".into()));
        assert!(err.to_string().contains("GUILD_MESSAGE_POLLS"));
        assert!(matches!(
            Intents::parse("4194304"),
            Err(IntentsError::UnknownBits(_, 0x40_0000))
        ));
        assert_eq!(Intents::parse(" , "), Err(IntentsError::Empty));
    }
}
