//! Conversions from raw values to typed settings.
//!
//! A raw value is a [`toml::Value`]: the file gives values their natural
//! types (integers, booleans, arrays) while the environment and the key
//! table's defaults give only strings, so every conversion accepts both. The
//! error strings never contain the value of a string, because the same
//! conversions read secrets; callers that know a value is not secret add it.

use toml::Value;

use crate::gateway::Intents;

/// How a value's type is described in errors ("found a table").
fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(..) => "a string",
        Value::Boolean(..) => "a boolean",
        Value::Integer(..) | Value::Float(..) => "a number",
        Value::Datetime(..) => "a date",
        Value::Table(..) => "a table",
        Value::Array(..) => "a list",
    }
}

/// The longest string value accepted, in bytes: URLs, paths, names and
/// secrets are all far shorter, and a value is quoted in errors and
/// `check-config`.
pub(crate) const MAX_STRING_BYTES: usize = 4096;

/// The most entries a list value may have (URLs, intents, dispatch types).
pub(crate) const MAX_LIST_ENTRIES: usize = 256;

/// Refuses values too large to be a setting, before any conversion, and
/// without quoting them (the value may be a secret).
pub(super) fn check_size(value: &Value) -> Result<(), String> {
    match value {
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(format!(
            "is {} bytes long; a value may have at most {MAX_STRING_BYTES}",
            s.len()
        )),
        Value::Array(items) if items.len() > MAX_LIST_ENTRIES => Err(format!(
            "has {} entries; a list may have at most {MAX_LIST_ENTRIES}",
            items.len()
        )),
        Value::Array(items) => items.iter().try_for_each(check_size),
        Value::Table(t) if t.len() > MAX_LIST_ENTRIES => {
            Err(format!("has {} entries; expected a single value", t.len()))
        }
        _ => Ok(()),
    }
}

/// A string, trimmed of surrounding whitespace.
pub(super) fn string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.trim().to_owned()),
        other => Err(format!("expected a string, found {}", kind(other))),
    }
}

/// A string where the empty string means "unset".
pub(super) fn optional_string(value: &Value) -> Result<Option<String>, String> {
    string(value).map(|s| if s.is_empty() { None } else { Some(s) })
}

/// `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off` from the environment.
pub(super) fn boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::Boolean(b) => Ok(*b),
        Value::Integer(0) => Ok(false),
        Value::Integer(1) => Ok(true),
        Value::Integer(_) => {
            Err("expected true or false (or 1/0), found another number".to_owned())
        }
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!(
                "{:?} is not a boolean; use true or false (1/0 and yes/no are accepted too)",
                s.trim()
            )),
        },
        other => Err(format!("expected true or false, found {}", kind(other))),
    }
}

/// A non-negative integer, from a TOML integer or a decimal string (`_`
/// separators allowed, as in TOML).
pub(super) fn unsigned(value: &Value) -> Result<u64, String> {
    match value {
        Value::Integer(n) => u64::try_from(*n).map_err(|_| "must not be negative".to_owned()),
        Value::Float(_) => Err("expected a whole number, found a fraction".to_owned()),
        Value::String(s) => {
            let t = s.trim();
            t.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{t:?} is not a whole number (expected e.g. 1000)"))
        }
        other => Err(format!("expected a whole number, found {}", kind(other))),
    }
}

/// A list of strings: a TOML array of strings, or a comma-separated string.
/// Empty entries are dropped.
pub(super) fn list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.trim().to_owned()),
                other => Err(format!(
                    "expected a list of strings, found {} in the list",
                    kind(other)
                )),
            })
            .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        Value::String(s) => {
            let entries: Vec<String> = s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if entries.len() > MAX_LIST_ENTRIES {
                return Err(format!(
                    "has {} entries; a list may have at most {MAX_LIST_ENTRIES}",
                    entries.len()
                ));
            }
            Ok(entries)
        }
        other => Err(format!(
            "expected a list or a comma-separated string, found {}",
            kind(other)
        )),
    }
}

/// Intents from a number, a string of names (or a number), or a TOML list of
/// names and numbers.
pub(super) fn intents(value: &Value) -> Result<Intents, String> {
    match value {
        Value::Integer(_) | Value::Float(_) => {
            Intents::from_bits(unsigned(value)?).map_err(|e| e.to_string())
        }
        Value::String(s) => Intents::parse(s).map_err(|e| e.to_string()),
        Value::Array(items) => {
            let mut bits = 0;
            for item in items {
                bits |= match item {
                    Value::String(name) => {
                        Intents::bit_of(name.trim()).map_err(|e| e.to_string())?
                    }
                    Value::Integer(_) | Value::Float(_) => unsigned(item)?,
                    other => {
                        return Err(format!(
                            "expected intent names or numbers in the list, found {}",
                            kind(other)
                        ));
                    }
                };
            }
            if items.is_empty() {
                return Err("no intents given; use 0 to ask for none".to_owned());
            }
            Intents::from_bits(bits).map_err(|e| e.to_string())
        }
        other => Err(format!(
            "expected a number or a list of intent names, found {}",
            kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::from(text)
    }

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "1", "yes", "on"] {
            assert_eq!(boolean(&s(t)), Ok(true), "{t}");
        }
        for f in ["false", "0", "No", "off"] {
            assert_eq!(boolean(&s(f)), Ok(false), "{f}");
        }
        assert_eq!(boolean(&Value::from(true)), Ok(true));
        assert!(boolean(&s("maybe")).unwrap_err().contains("\"maybe\""));
        assert!(boolean(&Value::from(2u8)).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(unsigned(&s(" 1000 ")), Ok(1000));
        assert_eq!(unsigned(&s("64_000")), Ok(64_000));
        assert_eq!(unsigned(&Value::from(42i64)), Ok(42));
        assert!(
            unsigned(&Value::from(-1i64))
                .unwrap_err()
                .contains("negative")
        );
        assert!(
            unsigned(&Value::from(1.5f64))
                .unwrap_err()
                .contains("fraction")
        );
        assert!(unsigned(&s("ten")).unwrap_err().contains("\"ten\""));
        assert!(unsigned(&Value::from(true)).is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(
            list(&s("a, b,,c ")),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            list(&Value::from(vec!["x", " y"])),
            Ok(vec!["x".into(), "y".into()])
        );
        assert!(list(&Value::from(vec![1u8])).is_err());
    }

    #[test]
    fn strings_do_not_echo_their_value_on_type_errors() {
        assert_eq!(string(&s("  hi ")), Ok("hi".into()));
        assert_eq!(optional_string(&s("  ")), Ok(None));
        assert!(
            string(&Value::from(5u8))
                .unwrap_err()
                .contains("found a number")
        );
    }

    #[test]
    fn intents_in_every_form() {
        let default = Intents::default();
        assert_eq!(intents(&Value::from(4609u32)), Ok(default));
        assert_eq!(intents(&s("4609")), Ok(default));
        assert_eq!(
            intents(&s("GUILDS,GUILD_MESSAGES,DIRECT_MESSAGES")),
            Ok(default)
        );
        assert_eq!(
            intents(&Value::from(vec![
                "GUILDS",
                "guild_messages",
                "DIRECT_MESSAGES"
            ])),
            Ok(default)
        );
        assert_eq!(intents(&Value::from(0u8)), Ok(Intents(0)));
        assert!(
            intents(&Value::from(vec!["NOPE"]))
                .unwrap_err()
                .contains("NOPE")
        );
        assert!(intents(&Value::from(Vec::<String>::new())).is_err());
        assert!(intents(&Value::from(1i64 << 40)).is_err());
    }
}
