//! Checks on strings from Discord before they reach a NATS header, a
//! subject, a KV key or a log line.
//!
//! Everything a gateway frame carries is untrusted input: a CR/LF in a
//! session id would split a NATS header (and async-nats panics on one), a
//! `.` or `*` in an event name would change the subject it is published on,
//! and a control character in a close reason would forge log lines. Each
//! value is checked against the shape Discord documents, and a value that
//! does not fit is a protocol violation handled by the caller.

/// The longest session id accepted (Discord's are 32 hex digits).
const MAX_SESSION_ID: usize = 128;
/// The longest event name accepted (Discord's longest is under 50).
const MAX_EVENT_NAME: usize = 64;
/// A snowflake is a 64-bit integer: at most 20 decimal digits.
const MAX_SNOWFLAKE: usize = 20;
/// Peer-supplied text in logs is cut to this many characters.
const MAX_LOGGED: usize = 256;

/// A session id is a plain token: ASCII letters, digits, `-` and `_`. It is
/// part of `Nats-Msg-Id` (`{session}:{seq}`), so `:` is refused too.
#[must_use]
pub fn is_session_id(s: &str) -> bool {
    (1..=MAX_SESSION_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An event name (`t`) is upper-case ASCII letters, digits and `_`, so it is
/// one valid NATS subject token (`{prefix}.gateway.dispatch.{T}`).
#[must_use]
pub fn is_event_name(s: &str) -> bool {
    (1..=MAX_EVENT_NAME).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A snowflake id (`guild_id`, …): decimal digits only.
#[must_use]
pub fn is_snowflake(s: &str) -> bool {
    (1..=MAX_SNOWFLAKE).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Peer-supplied text made safe for one log line: control characters
/// escaped, cut to a bounded length.
#[must_use]
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED));
    for (i, c) in s.chars().enumerate() {
        if i == MAX_LOGGED {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        assert!(is_session_id("9a7d1c0ba0e8b0d4f0b2c1e1a5d6f7e8"));
        assert!(is_session_id("sim-session_1"));
        for bad in ["", "sess\r\nX-Evil: 1", "a:b", "a b", "ä", &"x".repeat(129)] {
            assert!(!is_session_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn event_names() {
        assert!(is_event_name("MESSAGE_CREATE"));
        assert!(is_event_name("GUILD_SOUNDBOARD_SOUNDS_UPDATE"));
        for bad in ["", "A.B", "A*", ">", "A B", "a", "A\r\n", &"A".repeat(65)] {
            assert!(!is_event_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn snowflakes() {
        assert!(is_snowflake("1144060924343672001"));
        assert!(is_snowflake("18446744073709551615"));
        for bad in ["", "12a", "-1", "1 2", "123456789012345678901"] {
            assert!(!is_snowflake(bad), "{bad:?}");
        }
    }

    #[test]
    fn printable_escapes_control_characters_and_bounds_length() {
        assert_eq!(printable("bye\r\nX: forged"), "bye\\r\\nX: forged");
        assert_eq!(printable("\u{1b}[31m"), "\\u{1b}[31m");
        let long = printable(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_LOGGED + 1);
    }
}
