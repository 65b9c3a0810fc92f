//! Property tests of the loader: arbitrary environment values for every
//! key and arbitrary TOML-ish files never panic it, every error names a key
//! (or the file) and never quotes a secret, and valid values survive the
//! round trip environment → `check-config` output → file unchanged.

use proptest::prelude::*;
use toml::Value as Toml;

use super::super::build::{MAX_FRAME_BYTES, bounds};
use super::*;
use crate::gateway::intents::INTENT_NAMES;
use crate::gateway::shard::MAX_SHARDS;
use crate::prop_support::{config, hostile_string};

/// Secret values carry this marker, so a leak is found whatever the value.
const MARK: &str = "SeCrEt";

fn secret_value() -> impl Strategy<Value = String> {
    (any::<u64>(), hostile_string()).prop_map(|(n, s)| {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).take(40).collect();
        format!("{MARK}{n:x}{s}")
    })
}

/// What an operator (or a broken deployment) might put in a variable.
fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => hostile_string(),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "true", "no", "auto", "0/1", "3-1/4", "0-3/8", "none", "zstd-stream", "core",
            "nats://a:1,nats://b:2", "wss://gateway.discord.gg", "GUILDS,GUILD_MESSAGES",
            "1e3", "-0", "0x10", "1_000", "18446744073709551616", ",,,", " ",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..9000).prop_map(|n| "9".repeat(n)),
    ]
}

fn key_names_or_errors_ok(
    errors: &[ConfigError],
    extra_ok: impl Fn(&str) -> bool,
) -> Result<(), TestCaseError> {
    for e in errors {
        // Named, on one line.
        prop_assert!(
            !e.key.is_empty() && !e.key.chars().any(char::is_control),
            "error without a usable key: {:?}",
            e
        );
        match keys::by_key(&e.key) {
            Some(k) => prop_assert_eq!(&e.env, k.env),
            None if e.key == "--config" => {}
            // An unknown key of the file: it has no variable.
            None => prop_assert!(extra_ok(&e.key) && e.env.is_empty(), "{}", e),
        }
        prop_assert!(!e.message.is_empty());
    }
    Ok(())
}

fn no_secret_in(text: &str, secrets: &[String]) -> Result<(), TestCaseError> {
    for s in secrets {
        prop_assert!(!text.contains(s.as_str()), "a secret leaked: {}", text);
    }
    // No value carrying the marker is quoted even partly.
    prop_assert!(!text.contains(MARK), "a secret leaked: {}", text);
    Ok(())
}

/// Valid values, in the form a variable takes, for the keys that need no
/// file or secret; each strategy stays within the key's documented range.
fn valid_env() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let intents = prop::collection::vec(prop::sample::select(INTENT_NAMES.to_vec()), 1..6)
        .prop_map(|names| names.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(","));
    let shards = prop_oneof![
        Just("auto".to_owned()),
        (1..=MAX_SHARDS)
            .prop_flat_map(|total| (0..total, Just(total)))
            .prop_map(|(id, total)| format!("{id}/{total}")),
        (1..=64u32)
            .prop_flat_map(|total| (0..total, 0..total, Just(total)))
            .prop_filter("a range of two shards or more", |(a, b, _)| a != b)
            .prop_map(|(a, b, t)| format!("{}-{}/{t}", a.min(b), a.max(b))),
    ];
    let backoff =
        (1..=bounds::HOUR_MS, 1..=bounds::HOUR_MS).prop_map(|(a, b)| (a.min(b), a.max(b)));
    let retention = (120..=bounds::DAY_SECS).prop_flat_map(|window| {
        (
            Just(window),
            prop_oneof![Just(0), window..=bounds::TEN_YEARS_SECS],
        )
    });
    (
        (
            intents,
            shards,
            backoff,
            retention,
            prop::sample::select(vec!["zstd-stream", "zlib-stream", "none"]),
            any::<bool>(),
            65_536..=MAX_FRAME_BYTES,
            2..=bounds::HOUR_SECS,
        ),
        (
            0..=bounds::SESSION_START_RESERVE,
            prop::collection::vec((1u8..=99, 1u16..), 1..4),
            prop::sample::select(vec!["jetstream", "core"]),
            (0u32..1000, 0u32..1000),
            prop::collection::vec(
                prop::sample::select(vec!["GUILD_CREATE", "TYPING_START", "MESSAGE_REACTION_ADD"]),
                0..3,
            ),
            0..=bounds::STREAM_BYTES,
            prop::sample::select(vec![1u64, 3, 5]),
            (
                1..=bounds::BUFFER_EVENTS,
                1..=bounds::BUFFER_BYTES,
                1..=bounds::MAX_INFLIGHT,
            ),
            (1..=bounds::HOUR_MS, 1..=bounds::DAY_SECS),
        ),
    )
        .prop_map(
            |(
                (intents, shards, (base, max), (window, age), compression, insecure, frame, lease),
                (
                    reserve,
                    urls,
                    publish,
                    (prefix, stream),
                    raw,
                    bytes,
                    replicas,
                    (events, buffer, inflight),
                    (ack, stall),
                ),
            )| {
                let urls: Vec<String> = urls
                    .iter()
                    .map(|(h, p)| format!("nats://h{h}:{p}"))
                    .collect();
                let mut raw = raw;
                raw.dedup();
                vec![
                    ("DISCORD_GATEWAY_INTENTS", intents),
                    ("DISCORD_SHARDS", shards),
                    ("DISCORD_BACKOFF_BASE_MS", base.to_string()),
                    ("DISCORD_BACKOFF_MAX_MS", max.to_string()),
                    ("BRIDGE_DUPLICATE_WINDOW_SECS", window.to_string()),
                    ("BRIDGE_STREAM_MAX_AGE_SECS", age.to_string()),
                    ("DISCORD_GATEWAY_COMPRESSION", compression.to_owned()),
                    ("DISCORD_ALLOW_INSECURE_GATEWAY", insecure.to_string()),
                    ("DISCORD_MAX_FRAME_BYTES", frame.to_string()),
                    ("DISCORD_SHARD_LEASE_SECS", lease.to_string()),
                    ("DISCORD_SESSION_START_RESERVE", reserve.to_string()),
                    ("NATS_URL", urls.join(",")),
                    ("BRIDGE_PUBLISH_MODE", publish.to_owned()),
                    ("BRIDGE_CAPSULE_ID", format!("capsule-{prefix}")),
                    ("BRIDGE_STREAM", format!("STREAM_{stream}")),
                    ("BRIDGE_RAW_DISPATCH", raw.join(",")),
                    ("BRIDGE_STREAM_MAX_BYTES", bytes.to_string()),
                    ("BRIDGE_STREAM_REPLICAS", replicas.to_string()),
                    ("BRIDGE_BUFFER_EVENTS", events.to_string()),
                    ("BRIDGE_BUFFER_BYTES", buffer.to_string()),
                    ("BRIDGE_MAX_INFLIGHT", inflight.to_string()),
                    ("BRIDGE_ACK_TIMEOUT_MS", ack.to_string()),
                    ("BRIDGE_STALL_TIMEOUT_SECS", stall.to_string()),
                ]
            },
        )
}

/// One line of a TOML-ish file.
fn toml_line() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = KEYS
        .iter()
        .map(|k| k.split().1)
        .chain(["tokn", "x", ""])
        .collect();
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        hostile_string().prop_map(|s| Toml::String(s).to_string()),
        hostile_string(),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("{ a = 1 }".to_owned()),
        prop::collection::vec(
            hostile_string().prop_map(|s| Toml::String(s).to_string()),
            0..4
        )
        .prop_map(|v| format!("[{}]", v.join(", "))),
    ];
    // Secret values go only under secret keys' names (an intent list must
    // quote what it cannot read, a secret never).
    let secret = (
        prop::sample::select(vec!["token", "password", "nkey_seed"]),
        secret_value(),
        any::<bool>(),
    )
        .prop_map(|(k, s, quoted)| {
            if quoted {
                format!("{k} = {}", Toml::String(s))
            } else {
                format!("{k} = {s}")
            }
        });
    prop_oneof![
        2 => prop::sample::select(vec!["[discord]", "[nats]", "[other]", "[discord.sub]", "[[nats]]", "discord = 1"])
            .prop_map(str::to_owned),
        6 => (prop::sample::select(names), value.clone()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => (hostile_string(), value).prop_map(|(k, v)| format!("{} = {v}", Toml::String(k))),
        1 => secret,
        1 => hostile_string(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Any value in any variable: a configuration or errors that each name
    /// their key and variable, and never a secret.
    #[test]
    fn prop_arbitrary_environment_values_load_or_name_the_key(
        values in prop::collection::vec(prop::option::weighted(0.4, env_value()), KEYS.len()),
        secrets in prop::collection::vec(secret_value(), 4),
    ) {
        let mut vars: Vec<(&str, String)> = Vec::new();
        let mut secret_values = Vec::new();
        let mut secret_iter = secrets.into_iter();
        for (key, value) in KEYS.iter().zip(values) {
            if key.secret {
                if value.is_some() {
                    let s = secret_iter.next().unwrap_or_else(|| format!("{MARK}spare"));
                    secret_values.push(s.clone());
                    vars.push((key.env, s));
                }
            } else if let Some(v) = value {
                vars.push((key.env, v));
            }
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match env_only(&pairs) {
            Ok(loaded) => no_secret_in(&loaded.render(), &secret_values)?,
            Err(errors) => {
                key_names_or_errors_ok(&errors.0, |_| false)?;
                no_secret_in(&errors.to_string(), &secret_values)?;
            }
        }
    }

    /// Any TOML-ish file: loads, or every error names a key of the table,
    /// the file (`--config`), or an unknown key written in the file.
    #[test]
    fn prop_arbitrary_files_load_or_name_the_key(
        lines in prop::collection::vec(toml_line(), 0..14),
        require_token in any::<bool>(),
    ) {
        let text = lines.join("\n");
        let dir = empty_dir();
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &text).expect("write");
        match try_load(&[], Some(path), dir.path(), require_token) {
            Ok(loaded) => prop_assert!(!loaded.render().contains(MARK)),
            Err(errors) => {
                key_names_or_errors_ok(&errors.0, |_| true)?;
                prop_assert!(!errors.to_string().contains(MARK), "{}", errors);
            }
        }
    }

    /// Valid values load, and `check-config`'s output read back as a file
    /// is the same configuration.
    #[test]
    fn prop_valid_values_round_trip_through_check_config(vars in valid_env()) {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dir = empty_dir();
        let first = try_load(&pairs, None, dir.path(), false)
            .map_err(|e| TestCaseError::fail(format!("valid values refused: {e}")))?;
        for (env, value) in &vars {
            let key = keys::by_env(env).expect("a key");
            let got = shown(&first.config, key.key).expect("shown").env_text().unwrap_or_default();
            if key.key == "discord.intents" {
                let want = Intents::parse(value).expect("names").bits().to_string();
                prop_assert_eq!(got, want);
            } else {
                prop_assert_eq!(&got, value, "{}", key.key);
            }
        }
        let path = dir.path().join("rendered.toml");
        std::fs::write(&path, first.render()).expect("write");
        let second = try_load(&[], Some(path), dir.path(), false)
            .map_err(|e| TestCaseError::fail(format!("check-config output refused: {e}")))?;
        for key in KEYS {
            prop_assert_eq!(
                shown(&first.config, key.key),
                shown(&second.config, key.key),
                "{}", key.key
            );
        }
    }
}
