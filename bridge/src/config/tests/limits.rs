//! Every configuration input has a cap: absurd numbers, huge strings, long
//! lists and oversized files are configuration errors naming the key, never
//! an allocation failure, an overflow or a hang.

use super::super::build::{MAX_FRAME_BYTES, bounds};
use super::super::gateway_url::MAX_GATEWAY_URL;
use super::super::rules::{MAX_STREAM_NAME, MAX_SUBJECT_PREFIX};
use super::super::value::{MAX_LIST_ENTRIES, MAX_STRING_BYTES};
use super::*;
use crate::codec::MIN_CEILING;
use crate::gateway::heartbeat::MAX_INTERVAL;
use crate::gateway::shard::MAX_SHARDS;
use crate::gateway::untrusted::{
    MAX_EVENT_NAME, MAX_JSON_DEPTH, MAX_LOGGED, MAX_SESSION_ID, MAX_SNOWFLAKE,
};

/// Each numeric key with the largest value it accepts.
const NUMERIC: &[(&str, &str, u64)] = &[
    (
        "discord.max_frame_bytes",
        "DISCORD_MAX_FRAME_BYTES",
        MAX_FRAME_BYTES,
    ),
    (
        "discord.backoff_base_ms",
        "DISCORD_BACKOFF_BASE_MS",
        bounds::HOUR_MS,
    ),
    (
        "discord.backoff_max_ms",
        "DISCORD_BACKOFF_MAX_MS",
        bounds::HOUR_MS,
    ),
    (
        "discord.shard_lease_secs",
        "DISCORD_SHARD_LEASE_SECS",
        bounds::HOUR_SECS,
    ),
    (
        "discord.session_start_reserve",
        "DISCORD_SESSION_START_RESERVE",
        bounds::SESSION_START_RESERVE,
    ),
    (
        "nats.duplicate_window_secs",
        "BRIDGE_DUPLICATE_WINDOW_SECS",
        bounds::DAY_SECS,
    ),
    (
        "nats.stream_max_age_secs",
        "BRIDGE_STREAM_MAX_AGE_SECS",
        bounds::TEN_YEARS_SECS,
    ),
    (
        "nats.stream_max_bytes",
        "BRIDGE_STREAM_MAX_BYTES",
        bounds::STREAM_BYTES,
    ),
    ("nats.stream_replicas", "BRIDGE_STREAM_REPLICAS", 5),
    (
        "nats.buffer_events",
        "BRIDGE_BUFFER_EVENTS",
        bounds::BUFFER_EVENTS,
    ),
    (
        "nats.buffer_bytes",
        "BRIDGE_BUFFER_BYTES",
        bounds::BUFFER_BYTES,
    ),
    (
        "nats.max_inflight",
        "BRIDGE_MAX_INFLIGHT",
        bounds::MAX_INFLIGHT,
    ),
    (
        "nats.ack_timeout_ms",
        "BRIDGE_ACK_TIMEOUT_MS",
        bounds::HOUR_MS,
    ),
    (
        "nats.stall_timeout_secs",
        "BRIDGE_STALL_TIMEOUT_SECS",
        bounds::DAY_SECS,
    ),
];

/// What a key needs beside it to be valid at its maximum.
fn companions(key: &str) -> Vec<(&'static str, &'static str)> {
    match key {
        // The base may not exceed the max, and the window not the max age.
        "discord.backoff_base_ms" => vec![("DISCORD_BACKOFF_MAX_MS", "3600000")],
        "nats.duplicate_window_secs" => vec![("BRIDGE_STREAM_MAX_AGE_SECS", "0")],
        _ => vec![],
    }
}

#[test]
fn every_numeric_key_has_an_upper_bound_that_names_it() {
    for &(key, env, max) in NUMERIC {
        let at_max = max.to_string();
        let mut vars = companions(key);
        vars.push((env, &at_max));
        env_only(&vars).unwrap_or_else(|e| panic!("{key} at its maximum {max}: {e}"));
        for too_big in [max + 1, u64::MAX] {
            let text = too_big.to_string();
            let mut vars = companions(key);
            vars.push((env, &text));
            let errors = errors_of(env_only(&vars));
            assert_eq!(keys_of(&errors), [key], "{key} = {too_big}");
            assert_eq!(errors[0].env, env);
            if key != "nats.stream_replicas" {
                assert!(
                    errors[0].message.contains(&format!("use at most {max}")),
                    "{}",
                    errors[0]
                );
            }
        }
        // Beyond u64: not a whole number, named all the same.
        let errors = errors_of(env_only(&[(env, "99999999999999999999999")]));
        assert_eq!(keys_of(&errors), [key]);
    }
}

#[test]
fn shard_totals_are_bounded() {
    let ok = format!("0-3/{MAX_SHARDS}");
    env_only(&[("DISCORD_SHARDS", &ok)]).unwrap();
    let errors = errors_of(env_only(&[("DISCORD_SHARDS", "0-99999999/100000000")]));
    assert_eq!(keys_of(&errors), ["discord.shards"]);
    assert!(errors[0].message.contains("65536"), "{}", errors[0]);
}

#[test]
fn the_duplicate_window_cannot_exceed_the_max_age() {
    let errors = errors_of(env_only(&[
        ("BRIDGE_DUPLICATE_WINDOW_SECS", "600"),
        ("BRIDGE_STREAM_MAX_AGE_SECS", "300"),
    ]));
    assert_eq!(keys_of(&errors), ["nats.duplicate_window_secs"]);
    assert!(errors[0].message.contains("nats.stream_max_age_secs"));
    env_only(&[
        ("BRIDGE_DUPLICATE_WINDOW_SECS", "600"),
        ("BRIDGE_STREAM_MAX_AGE_SECS", "0"),
    ])
    .unwrap();
}

#[test]
fn long_strings_are_refused_without_being_echoed() {
    let long = "s".repeat(MAX_STRING_BYTES + 1);
    for (env, key) in [
        ("DISCORD_BOT_TOKEN", "discord.token"),
        ("NATS_PASSWORD", "nats.password"),
        ("NATS_USER", "nats.user"),
        ("DISCORD_API_BASE", "discord.api_base"),
        ("NATS_URL", "nats.url"),
        ("DISCORD_SHARDS", "discord.shards"),
    ] {
        let errors = errors_of(env_only(&[(env, &long)]));
        assert!(keys_of(&errors).contains(&key), "{env}: {errors:?}");
        let text = ConfigErrors(errors).to_string();
        assert!(text.contains("4097 bytes long"), "{text}");
        assert!(!text.contains(&"s".repeat(64)), "{env} echoed: {text}");
    }
    // Specific caps below the general one.
    let prefix = "p".repeat(257);
    let stream = "S".repeat(256);
    let errors = errors_of(env_only(&[
        ("BRIDGE_CAPSULE_ID", &prefix),
        ("BRIDGE_STREAM", &stream),
    ]));
    assert_eq!(keys_of(&errors), ["nats.subject_prefix", "nats.stream"]);
}

#[test]
fn long_lists_are_refused() {
    let names = vec!["GUILD_CREATE"; MAX_LIST_ENTRIES + 1].join(",");
    let errors = errors_of(env_only(&[("BRIDGE_RAW_DISPATCH", &names)]));
    assert_eq!(keys_of(&errors), ["nats.raw_dispatch"]);
    assert!(errors[0].message.contains("at most 256"), "{}", errors[0]);

    let dir = empty_dir();
    let path = dir.path().join("many.toml");
    let urls: Vec<String> = (0..=MAX_LIST_ENTRIES)
        .map(|i| format!("\"nats://h{i}:4222\""))
        .collect();
    std::fs::write(&path, format!("[nats]\nurl = [{}]\n", urls.join(","))).unwrap();
    let errors = errors_of(try_load(&[], Some(path), dir.path(), false));
    assert_eq!(keys_of(&errors), ["nats.url"]);
}

#[test]
fn an_oversized_configuration_file_is_refused_without_reading_it_all() {
    let dir = empty_dir();
    let path = dir.path().join("big.toml");
    let mut text = "[discord]\nintents = 4609\n".to_owned();
    while u64::try_from(text.len()).unwrap() <= MAX_FILE_BYTES {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &text).unwrap();
    let errors = errors_of(try_load(&[], Some(path), dir.path(), false));
    assert_eq!(keys_of(&errors), ["--config"]);
    assert!(
        errors[0].message.contains("larger than 1024 KiB"),
        "{}",
        errors[0]
    );
    // A file that never ends (a character device) is cut off the same way.
    let zero = PathBuf::from("/dev/zero");
    if zero.exists() {
        let errors = errors_of(try_load(&[], Some(zero), dir.path(), false));
        assert_eq!(keys_of(&errors), ["--config"]);
    }
}

/// The README's "Input limits" table quotes the limits in this crate; a
/// limit changed here without the table fails this test.
#[test]
fn the_readme_input_limits_table_quotes_the_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("### Input limits")
        .expect("an Input limits section");
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n#").map_or(section.len(), |i| i + 4)];
    let row = |label: &str| -> &str {
        section
            .lines()
            .find(|l| l.starts_with("| ") && l.contains(label))
            .unwrap_or_else(|| panic!("no row for {label:?} in the Input limits table"))
    };
    let mib = |n: usize| format!("{} MiB", n >> 20);
    let checks: Vec<(&str, String)> = vec![
        ("decompression bomb", mib(MIN_CEILING)),
        ("JSON nesting", format!("{MAX_JSON_DEPTH} levels")),
        (
            "ids of a relayed event",
            format!("1 to {MAX_SNOWFLAKE} decimal digits"),
        ),
        ("event name", format!("{MAX_EVENT_NAME} bytes")),
        ("`session_id`", format!("{MAX_SESSION_ID} bytes")),
        ("gateway URL (", format!("{MAX_GATEWAY_URL} bytes")),
        (
            "heartbeat_interval",
            format!("{} minutes", MAX_INTERVAL.as_secs() / 60),
        ),
        ("peer text in logs", format!("{MAX_LOGGED} characters")),
        (
            "configuration file",
            format!("{} MiB", MAX_FILE_BYTES >> 20),
        ),
        (
            "any configuration string",
            format!("{MAX_STRING_BYTES} bytes"),
        ),
        (
            "any configuration string",
            format!("subject prefix {MAX_SUBJECT_PREFIX}"),
        ),
        (
            "any configuration string",
            format!("stream name {MAX_STREAM_NAME}"),
        ),
        ("configuration lists", format!("{MAX_LIST_ENTRIES} entries")),
        ("shard total", MAX_SHARDS.to_string()),
        (
            "`GET /gateway/bot` answer",
            format!("at most {MAX_SHARDS} shards"),
        ),
        (
            "numeric settings",
            format!("`discord.max_frame_bytes` ≤ {} GiB", MAX_FRAME_BYTES >> 30),
        ),
    ];
    for (label, text) in &checks {
        assert!(
            row(label).contains(text.as_str()),
            "the {label:?} row should say {text:?}"
        );
    }
    let numeric = row("numeric settings");
    for &(key, _, max) in NUMERIC {
        if key == "discord.max_frame_bytes" || key == "nats.stream_replicas" {
            continue;
        }
        // Some mention of the key is followed by its bound within the same
        // `;`-separated entry.
        let quoted = numeric.match_indices(&format!("`{key}`")).any(|(at, _)| {
            let entry = numeric[at..].split("; ").next().unwrap_or_default();
            entry.contains(&format!("≤ {max}"))
        });
        assert!(quoted, "{key} should be quoted with its bound {max}");
    }
}

/// Unknown keys are named as TOML writes them: an empty key or one with a
/// line break stays one readable name (found by the config fuzz target).
#[test]
fn odd_unknown_keys_are_named_quoted() {
    let dir = empty_dir();
    let path = dir.path().join("odd.toml");
    std::fs::write(&path, "\"\" = 6\n\"a\\nb\" = 1\n[nats]\n\"\" = 2\n").unwrap();
    let errors = errors_of(try_load(&[], Some(path), dir.path(), false));
    let mut keys = keys_of(&errors);
    keys.sort_unstable();
    assert_eq!(keys, ["\"\"", "\"a\\nb\"", "nats.\"\""]);
}
