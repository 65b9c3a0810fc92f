//! Checks on values from Discord before they reach a NATS header, a
//! subject, a KV key, a log line or a consumer's JSON parser.
//!
//! Everything a gateway frame carries is untrusted input: a CR/LF in a
//! session id would split a NATS header (and async-nats panics on one), a
//! `.` or `*` in an event name would change the subject it is published on,
//! a control character in a close reason would forge log lines, and a JSON
//! document nested deeper than a consumer's parser allows (serde_json stops
//! at 128 levels) or holding a number no `f64` can represent would be
//! stored in JetStream and then fail at every consumer. Each value is
//! checked against the shape Discord documents, and a value that does not
//! fit is a protocol violation handled by the caller.

/// The longest session id accepted (Discord's are 32 hex digits).
pub(crate) const MAX_SESSION_ID: usize = 128;
/// The longest event name accepted (Discord's longest is under 50).
pub(crate) const MAX_EVENT_NAME: usize = 64;
/// A snowflake is a 64-bit integer: at most 20 decimal digits.
pub(crate) const MAX_SNOWFLAKE: usize = 20;
/// Peer-supplied text in logs is cut to this many characters.
pub(crate) const MAX_LOGGED: usize = 256;
/// The deepest nesting of arrays and objects in a JSON document the bridge
/// publishes. serde_json refuses documents nested 128 levels deep; half of
/// that leaves room for consumers that wrap an event in envelopes of their
/// own, and is still several times what Discord's payloads use.
pub const MAX_JSON_DEPTH: usize = 64;

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

/// Why a JSON document is not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonLimit {
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    #[error("nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    /// A number outside the range of an `f64` (e.g. `1e999`), which the
    /// bridge's own scan accepts but serde_json consumers refuse.
    #[error("holds a number too large for a 64-bit float")]
    NumberOutOfRange,
}

/// Checks a JSON document that is already known to be well-formed (it came
/// through serde_json) against the limits of its consumers: nesting depth
/// and number range. One pass over the bytes, without allocating.
///
/// # Errors
/// The first limit the document exceeds.
pub fn check_json(json: &[u8]) -> Result<(), JsonLimit> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b'"' => {
                // Skip the string; an escape hides the byte after it.
                i += 1;
                while let Some(&c) = json.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(JsonLimit::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let len = json[i..]
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(json.len() - i);
                let number = &json[i..i + len];
                // Plain integers up to 300 digits and any number without an
                // exponent that short are finite; only the rest is parsed.
                if (len > 300 || number.iter().any(|c| matches!(c, b'e' | b'E')))
                    && !std::str::from_utf8(number)
                        .ok()
                        .and_then(|n| n.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                {
                    return Err(JsonLimit::NumberOutOfRange);
                }
                i += len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
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

    #[test]
    fn json_limits() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(check_json(nested(MAX_JSON_DEPTH).as_bytes()), Ok(()));
        assert_eq!(
            check_json(nested(MAX_JSON_DEPTH + 1).as_bytes()),
            Err(JsonLimit::TooDeep)
        );
        // Brackets inside strings, escaped quotes included, do not count.
        let in_string = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(500));
        assert_eq!(check_json(in_string.as_bytes()), Ok(()));
        let mixed = format!("{}1{}", r#"{"a":["#.repeat(40), "]}".repeat(40));
        assert_eq!(check_json(mixed.as_bytes()), Err(JsonLimit::TooDeep));
        for ok in [
            "[1e308,-1.5E-400,0,-0.0,123456789012345678901234567890]",
            "1e2",
        ] {
            assert_eq!(check_json(ok.as_bytes()), Ok(()), "{ok}");
        }
        for bad in ["[1e999]", r#"{"x":-1E+400}"#, &"9".repeat(400)] {
            assert_eq!(
                check_json(bad.as_bytes()),
                Err(JsonLimit::NumberOutOfRange),
                "{bad}"
            );
        }
    }
}
