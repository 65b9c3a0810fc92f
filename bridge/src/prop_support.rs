//! Shared pieces of the property tests (proptest): the case budget and
//! generators of JSON documents and hostile strings.
//!
//! Every property runs 256 cases by default, a budget that keeps the suite
//! fast on two cores. `PROPTEST_CASES=N` scales every property (the costly
//! ones keep their share of it), e.g. `PROPTEST_CASES=20000 cargo test -p
//! discord-bridge prop_` for a long run. A failure prints the minimal input
//! and is saved under `proptest-regressions/` next to the test, to be
//! committed so that it is replayed first from then on.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

/// The configuration of a property that runs `share` of every 256 cases
/// of the budget (256 = all of it), at least one.
pub(crate) fn config(share: u32) -> Config {
    let default = Config::default();
    Config {
        cases: (default.cases.saturating_mul(share) / 256).max(1),
        // Shrinking a failure of a costly property would take minutes.
        max_shrink_iters: 256,
        ..default
    }
}

/// Strings as a hostile peer would write them: control characters, quotes
/// and backslashes, header and subject syntax, non-ASCII, and long runs.
pub(crate) fn hostile_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        2 => prop::sample::select(vec![
            "\r\n", "\0", "\u{1b}[31m", "\"", "\\", ":", ".", "*", ">", " ", "\u{7f}",
            "\u{2028}", "\u{feff}", "é", "😀", "MESSAGE_CREATE", "1234567890",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..3000).prop_map(|n| "x".repeat(n)),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| parts.concat())
}

/// Any JSON document, up to a few levels deep, with hostile strings.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((hostile_string(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `n` levels of arrays around `inner`: deeper than any consumer parses.
pub(crate) fn nested(n: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(n), "]".repeat(n))
}
