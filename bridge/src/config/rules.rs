//! Single-value rules that are not a plain type conversion: pure functions,
//! so each is tested on its own.

/// Refuses the token mistakes Discord would only report as close code 4004,
/// without ever repeating the token.
pub(super) fn check_token(token: &str) -> Result<(), &'static str> {
    if token
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("bot "))
    {
        return Err("starts with `Bot `: give the token alone, the bridge adds the prefix");
    }
    if token.chars().any(char::is_whitespace) {
        return Err("contains whitespace; copy the token again from the Developer Portal");
    }
    if token.chars().any(char::is_control) || !token.is_ascii() {
        return Err(
            "contains characters a Discord token never has; copy it again from the Developer Portal",
        );
    }
    Ok(())
}

/// A NATS server URL with a scheme async-nats speaks and no credentials:
/// in a URL they would be printed like any other setting.
pub(super) fn check_nats_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "has no scheme; write it as nats://HOST:PORT".to_owned())?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "nats" | "tls" | "ws" | "wss") {
        return Err(format!(
            "scheme {scheme}:// is not nats://, tls://, ws:// or wss://"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "carries credentials; put them in nats.user/nats.password (NATS_USER/NATS_PASSWORD) \
             or nats.token (NATS_TOKEN), which are kept secret"
                .to_owned(),
        );
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("has no host".to_owned());
    }
    if url.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    Ok(())
}

/// Why an `nats.nkey_seed` value is refused. Neither message repeats the
/// seed, and neither does the nkeys error kind quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SeedError {
    /// Not an nkey seed at all (a typo, a public key, base32 damage).
    #[error("is not an nkey seed ({0}); give the user's seed, which starts with SU")]
    NotASeed(String),
    /// A seed, but of an account, operator or server key.
    #[error("is the seed of an {0} key, not of a user; give the user's seed (SU...)")]
    NotAUser(String),
}

/// An nkey seed of a user (`SU...`): what the server's `authorization`
/// lists is that user's public key (`U...`).
pub(super) fn check_user_seed(seed: &str) -> Result<(), SeedError> {
    let pair = nkeys::KeyPair::from_seed(seed.trim())
        .map_err(|e| SeedError::NotASeed(e.kind().to_string()))?;
    if pair.key_pair_type() != nkeys::KeyPairType::User {
        return Err(SeedError::NotAUser(format!("{:?}", pair.key_pair_type())));
    }
    Ok(())
}

/// The longest stream name JetStream accepts.
pub(crate) const MAX_STREAM_NAME: usize = 255;

/// The longest subject prefix: every subject the bridge uses is built from
/// it, and NATS bounds a whole protocol line (subject, reply and sizes) at
/// 4 KiB by default.
pub(crate) const MAX_SUBJECT_PREFIX: usize = 256;

/// A JetStream stream name; the server refuses these characters and names
/// longer than [`MAX_STREAM_NAME`].
pub(super) fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; use e.g. ASTRID_DISCORD".to_owned());
    }
    if name.len() > MAX_STREAM_NAME {
        return Err(format!(
            "is {} bytes long; JetStream accepts stream names of at most {MAX_STREAM_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "{name:?} contains {c:?}; a stream name has no spaces, dots, wildcards or slashes"
        ));
    }
    Ok(())
}

/// A dispatch type becomes the last token of a subject, so it is upper-cased
/// and limited to the characters Discord uses.
pub(super) fn check_event_name(name: &str) -> Result<String, String> {
    // The gateway refuses longer event names (`gateway::untrusted`), so
    // such an entry could never match.
    if name.len() > 64 {
        return Err(format!(
            "an entry is {} bytes long; dispatch types have at most 64",
            name.len()
        ));
    }
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(name.to_ascii_uppercase())
    } else {
        Err(format!(
            "{name:?} is not a dispatch type; use names like MESSAGE_REACTION_ADD, comma-separated"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_refused_by_kind_without_repeating_them() {
        const BROKEN: &str = "SUAJVZAGOHNOYECZYARCXADLZ2HPXB6GXB4VFMUST7KGGYLX7GUVCJT5BA";
        const ACCOUNT: &str = "SAAKYL6EUVVSNWQX6DLJ2I24NXGLEDADITWWKQQRAKE36BIWFAGFYCWAIU";
        let broken = check_user_seed(BROKEN).unwrap_err();
        assert!(matches!(broken, SeedError::NotASeed(_)), "{broken:?}");
        let account = check_user_seed(ACCOUNT).unwrap_err();
        assert!(matches!(account, SeedError::NotAUser(_)), "{account:?}");
        for e in [broken, account] {
            let text = e.to_string();
            assert!(!text.contains(BROKEN) && !text.contains(ACCOUNT), "{text}");
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(check_token("MTIz.Gh.abc-_"), Ok(()));
        for bad in [
            "Bot MTIz.Gh.abc",
            "bot MTIz",
            "MTIz Gh",
            "MTIz\tGh",
            "MTIzé",
        ] {
            assert!(check_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nats_urls() {
        for ok in [
            "nats://127.0.0.1:4222",
            "TLS://nats.example",
            "ws://h:80/x",
            "wss://h",
        ] {
            assert_eq!(check_nats_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:4222",
            "http://h:4222",
            "nats://",
            "nats://:4222",
            "nats://a b",
            "nats://u:p@h",
            "nats://tok@h",
        ] {
            assert!(check_nats_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_and_event_names() {
        assert_eq!(check_stream_name("ASTRID_DISCORD-2"), Ok(()));
        for bad in ["", "A B", "A.B", "A*", "A>", "A/B", &"S".repeat(256)] {
            assert!(check_stream_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_stream_name(&"S".repeat(255)), Ok(()));
        assert_eq!(check_event_name("guild_create"), Ok("GUILD_CREATE".into()));
        for bad in ["GUILD.CREATE", "*", "A B", "A>"] {
            assert!(check_event_name(bad).is_err(), "{bad}");
        }
    }
}
