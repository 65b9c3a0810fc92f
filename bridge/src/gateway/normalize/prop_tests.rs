//! Property tests of the normalizer: any JSON `d` is handled without a
//! panic, and whatever it relays validates against the agent event schema,
//! parses with serde_json (as the adapter and capsules parse it) and
//! carries a guild header value that is a snowflake. Well-formed messages
//! and interactions with hostile strings are relayed with their text intact.

use std::sync::LazyLock;

use discord_bridge_schemas::AGENT_EVENT_SCHEMA;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::gateway::untrusted::{self, MAX_JSON_DEPTH};
use crate::prop_support::{config, hostile_string, json, nested};

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(AGENT_EVENT_SCHEMA).expect("schema JSON");
    jsonschema::validator_for(&schema).expect("a valid schema")
});

fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).expect("raw JSON")
}

/// What every relayed event must be, whatever came in.
fn check_relayed(n: &Normalized) -> Result<Value, TestCaseError> {
    let body: Value = serde_json::from_slice(&n.body)
        .map_err(|e| TestCaseError::fail(format!("body is not JSON for serde_json: {e}")))?;
    let errors: Vec<String> = SCHEMA.iter_errors(&body).map(|e| e.to_string()).collect();
    prop_assert!(errors.is_empty(), "schema: {:?} for {}", errors, body);
    prop_assert!(untrusted::check_json(&n.body).is_ok());
    if let Some(g) = &n.guild_id {
        prop_assert!(untrusted::is_snowflake(g), "guild header {:?}", g);
    }
    Ok(body)
}

fn snowflake() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|n| n.to_string())
}

/// A MESSAGE_CREATE body of the documented shape, with hostile text and
/// arbitrary nested extras.
fn message() -> impl Strategy<Value = Value> {
    (
        (snowflake(), snowflake(), prop::option::of(snowflake()), snowflake()),
        (hostile_string(), hostile_string(), prop::option::of(hostile_string())),
        (any::<u8>(), any::<u32>(), any::<bool>()),
        (json(), json(), prop::collection::vec(json(), 0..3)),
    )
        .prop_map(|((id, channel, guild, author), (content, username, global), (ty, flags, bot), (member, reference, attachments))| {
            json!({
                "id": id, "channel_id": channel, "guild_id": guild,
                "author": {"id": author, "username": username, "global_name": global, "bot": bot},
                "content": content, "timestamp": "2024-01-01T00:00:00.000000+00:00",
                "type": ty, "flags": flags, "tts": false, "nonce": content,
                "attachments": attachments, "mentions": [], "mention_roles": [],
                "member": {"roles": [], "extra": member},
                "referenced_message": {"id": "1", "nested": reference},
            })
        })
}

fn interaction() -> impl Strategy<Value = Value> {
    (
        snowflake(),
        1u8..6,
        prop::option::of(snowflake()),
        hostile_string(),
        json(),
    )
        .prop_map(|(id, ty, guild, token, data)| {
            let mut v = json!({
                "id": id, "application_id": "1", "type": ty, "token": token,
                "version": 1, "data": {"name": "x", "options": [data]},
            });
            if let Some(g) = guild {
                v["guild_id"] = Value::from(g);
                v["member"] = json!({"user": {"id": "2"}});
            } else {
                v["user"] = json!({"id": "2"});
            }
            v
        })
}

proptest! {
    #![proptest_config(config(256))]

    /// Any JSON as `d`, under any event name: no panic, and a relayed event
    /// is always valid.
    #[test]
    fn prop_any_body_is_handled_and_relays_are_valid(
        d in json(),
        event in prop_oneof![
            Just("MESSAGE_CREATE".to_owned()),
            Just("INTERACTION_CREATE".to_owned()),
            hostile_string(),
        ],
        bot in prop::option::of(hostile_string()),
    ) {
        let d = raw(&d);
        if let Ok(Outcome::Relay(n)) = normalize(&event, &d, bot.as_deref()) {
            check_relayed(&n)?;
        }
    }

    /// The documented shape of a message with mutated values: each field
    /// replaced by any JSON value. Whatever is relayed is valid.
    #[test]
    fn prop_mutated_messages_relay_only_valid_events(
        mut m in message(),
        edits in prop::collection::vec((prop::sample::select(vec![
            "id", "channel_id", "guild_id", "author", "content", "timestamp", "type",
            "flags", "attachments", "mentions", "mention_roles", "mention_everyone",
            "member", "message_reference", "referenced_message", "webhook_id",
        ]), prop_oneof![1 => Just(Value::Null), 3 => json()]), 1..4),
    ) {
        for (field, value) in edits {
            m[field] = value;
        }
        if let Ok(Outcome::Relay(n)) = normalize("MESSAGE_CREATE", &raw(&m), None) {
            check_relayed(&n)?;
        }
    }

    /// The same for interactions: each field the schema constrains given
    /// any value, `null` included.
    #[test]
    fn prop_mutated_interactions_relay_only_valid_events(
        mut i in interaction(),
        edits in prop::collection::vec((prop::sample::select(vec![
            "id", "type", "application_id", "guild_id", "channel_id", "token", "data",
            "member", "user",
        ]), prop_oneof![1 => Just(Value::Null), 3 => json()]), 1..4),
    ) {
        for (field, value) in edits {
            i[field] = value;
        }
        if let Ok(Outcome::Relay(n)) = normalize("INTERACTION_CREATE", &raw(&i), None) {
            check_relayed(&n)?;
        }
    }

    /// A valid message is relayed, valid, with its text exactly as sent.
    #[test]
    fn prop_valid_messages_relay_their_text_verbatim(m in message()) {
        let n = match normalize("MESSAGE_CREATE", &raw(&m), Some("0")) {
            Ok(Outcome::Relay(n)) => n,
            other => return Err(TestCaseError::fail(format!("not relayed: {other:?}"))),
        };
        let body = check_relayed(&n)?;
        let p = &body["payload"];
        prop_assert_eq!(&p["content"], &m["content"]);
        prop_assert_eq!(&p["author"]["username"], &m["author"]["username"]);
        prop_assert_eq!(&p["author"]["global_name"], &m["author"]["global_name"]);
        prop_assert_eq!(&p["member"], &m["member"]);
        prop_assert_eq!(&p["referenced_message"], &m["referenced_message"]);
        prop_assert_eq!(n.guild_id.as_deref(), m["guild_id"].as_str());
    }

    /// A valid interaction is relayed verbatim and valid.
    #[test]
    fn prop_valid_interactions_relay_verbatim(i in interaction()) {
        let n = match normalize("INTERACTION_CREATE", &raw(&i), None) {
            Ok(Outcome::Relay(n)) => n,
            other => return Err(TestCaseError::fail(format!("not relayed: {other:?}"))),
        };
        let body = check_relayed(&n)?;
        prop_assert_eq!(&body["payload"], &i);
    }

    /// Nesting at the limit is relayed; one level more is refused, wherever
    /// it hides in the body.
    #[test]
    fn prop_nesting_beyond_the_limit_is_refused(
        m in message(),
        field in prop::sample::select(vec!["member", "referenced_message", "attachments"]),
        extra in 0usize..40,
    ) {
        // `payload.member` sits two levels down and is an object itself.
        let wrap = |levels: usize| {
            let inner = nested(levels, "1");
            let value = if field == "attachments" {
                format!("[{inner}]")
            } else {
                format!(r#"{{"x":{inner}}}"#)
            };
            let mut m = m.clone();
            m[field] = Value::from("__deep__");
            let text = m.to_string().replace(r#""__deep__""#, &value);
            serde_json::from_str::<Box<RawValue>>(&text).expect("JSON")
        };
        let at_limit = matches!(
            normalize("MESSAGE_CREATE", &wrap(MAX_JSON_DEPTH - 3), None),
            Ok(Outcome::Relay(_))
        );
        prop_assert!(at_limit, "a body at the depth limit is relayed");
        let beyond = matches!(
            normalize("MESSAGE_CREATE", &wrap(MAX_JSON_DEPTH - 2 + extra), None),
            Err(NormalizeError::Limit { source: untrusted::JsonLimit::TooDeep, .. })
        );
        prop_assert!(beyond, "a body beyond the depth limit is refused");
    }
}

/// Deep nesting and out-of-range numbers, which serde_json's raw values
/// accept but its consumers refuse, are not relayed in an interaction.
#[test]
fn interactions_beyond_the_json_limits_are_refused() {
    let deep = format!(
        r#"{{"id":"1","type":2,"data":{{"x":{}}}}}"#,
        nested(MAX_JSON_DEPTH, "{}")
    );
    let huge = r#"{"id":"1","type":2,"data":{"value":1e999}}"#;
    for text in [deep.as_str(), huge] {
        let d: Box<RawValue> = serde_json::from_str(text).expect("raw JSON");
        assert!(
            matches!(
                normalize("INTERACTION_CREATE", &d, None),
                Err(NormalizeError::Limit { .. })
            ),
            "{text}"
        );
    }
}

/// Ids the schema calls snowflakes are checked; extras of the wrong shape
/// are left out rather than relayed against the schema.
#[test]
fn ids_must_be_snowflakes_and_bad_extras_are_left_out() {
    let base = json!({"id": "1", "channel_id": "2", "author": {"id": "3", "username": "u"},
                      "content": "c", "timestamp": "t"});
    for (path, bad) in [("id", "x"), ("channel_id", "1 2"), ("author", "")] {
        let mut m = base.clone();
        if path == "author" {
            m["author"]["id"] = Value::from(bad);
        } else {
            m[path] = Value::from(bad);
        }
        assert!(
            matches!(
                normalize("MESSAGE_CREATE", &raw(&m), None),
                Err(NormalizeError::FieldType { .. })
            ),
            "{path}"
        );
    }
    let mut m = base.clone();
    m["type"] = json!(-1);
    m["flags"] = json!(1.5);
    m["webhook_id"] = json!("not a snowflake");
    let n = match normalize("MESSAGE_CREATE", &raw(&m), None) {
        Ok(Outcome::Relay(n)) => n,
        other => panic!("{other:?}"),
    };
    let body: Value = serde_json::from_slice(&n.body).expect("JSON");
    for gone in ["type", "flags", "webhook_id"] {
        assert!(body["payload"].get(gone).is_none(), "{gone}");
    }
    for (field, bad) in [
        ("type", json!(0)),
        ("type", json!("2")),
        ("id", json!(5)),
        ("application_id", json!(null)),
        ("guild_id", json!(null)),
        ("channel_id", json!("c")),
        ("token", json!(1)),
        ("data", json!([])),
        ("member", json!("m")),
        ("user", json!(7)),
    ] {
        let mut i = json!({"id": "1", "type": 2, "application_id": "3"});
        i[field] = bad;
        assert!(
            normalize("INTERACTION_CREATE", &raw(&i), None).is_err(),
            "{field}"
        );
    }
}
