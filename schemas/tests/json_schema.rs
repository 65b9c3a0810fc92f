//! The checked-in JSON Schema files against the Rust types: every field of a
//! type is in its schema and the other way round, required fields match, and
//! what the types serialize validates. Adding a field to one side only fails
//! here.

use std::collections::BTreeSet;

use discord_bridge_schemas::status::SeqRange;
use discord_bridge_schemas::{
    AGENT_EVENT_SCHEMA, AgentEventKind, Author, COMMAND_REPLY_SCHEMA, COMMAND_SCHEMA,
    CommandErrorCode, CommandReply, GatewayCommand, MessagePayload, STATUS_EVENT_SCHEMA,
    ShardState, StatusEvent,
};
use serde_json::{Value, json};

fn schema(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).expect("schema is JSON");
    jsonschema::meta::validate(&v).expect("a valid draft 2020-12 schema");
    v
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

fn full_message() -> MessagePayload {
    MessagePayload {
        id: "1".into(),
        channel_id: "2".into(),
        guild_id: Some("3".into()),
        author: full_author(),
        content: "hi".into(),
        timestamp: Some("2024-01-01T00:00:00+00:00".into()),
        message_type: Some(0),
        flags: Some(0),
        attachments: Some(json!([])),
        mentions: Some(json!([])),
        mention_roles: Some(json!([])),
        mention_everyone: Some(false),
        member: Some(json!({"roles": []})),
        message_reference: Some(json!({"message_id": "9"})),
        referenced_message: Some(json!({"id": "9"})),
        webhook_id: Some("8".into()),
    }
}

fn full_author() -> Author {
    Author {
        id: "4".into(),
        username: "alice".into(),
        global_name: Some("Alice".into()),
        bot: Some(false),
    }
}

fn minimal_message() -> MessagePayload {
    MessagePayload {
        id: "1".into(),
        channel_id: "2".into(),
        guild_id: None,
        author: Author {
            id: "4".into(),
            username: "alice".into(),
            global_name: None,
            bot: None,
        },
        content: String::new(),
        timestamp: None,
        message_type: None,
        flags: None,
        attachments: None,
        mentions: None,
        mention_roles: None,
        mention_everyone: None,
        member: None,
        message_reference: None,
        referenced_message: None,
        webhook_id: None,
    }
}

fn envelope(kind: &str, payload: Value) -> Value {
    json!({"type": kind, "source": "gateway", "payload": payload})
}

#[test]
fn message_schema_lists_exactly_the_type_fields() {
    let s = schema(AGENT_EVENT_SCHEMA);
    let def = &s["$defs"]["message"];
    let full = serde_json::to_value(full_message()).unwrap();
    assert_eq!(
        keys(&full),
        keys(&def["properties"]),
        "MessagePayload fields vs schema properties"
    );
    let minimal = serde_json::to_value(minimal_message()).unwrap();
    assert_eq!(
        keys(&minimal),
        strings(&def["required"]),
        "always-present fields vs required"
    );
    let author = &s["$defs"]["author"];
    assert_eq!(keys(&full["author"]), keys(&author["properties"]));
    assert_eq!(keys(&minimal["author"]), strings(&author["required"]));
}

#[test]
fn agent_event_kinds_match_the_enum() {
    let s = schema(AGENT_EVENT_SCHEMA);
    let kinds: BTreeSet<String> = [AgentEventKind::Message, AgentEventKind::Interaction]
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, strings(&s["properties"]["type"]["enum"]));
    for k in [AgentEventKind::Message, AgentEventKind::Interaction] {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
}

#[test]
fn serialized_events_validate_and_broken_ones_do_not() {
    let v = jsonschema::validator_for(&schema(AGENT_EVENT_SCHEMA)).unwrap();
    for payload in [full_message(), minimal_message()] {
        let ev = envelope("message", serde_json::to_value(payload).unwrap());
        assert!(v.is_valid(&ev), "{ev}");
    }
    let interaction = envelope(
        "interaction",
        json!({"id": "5", "type": 2, "token": "t", "data": {"name": "chat"}}),
    );
    assert!(v.is_valid(&interaction));

    let mut no_author = serde_json::to_value(full_message()).unwrap();
    no_author.as_object_mut().unwrap().remove("author");
    let mut numeric_guild = serde_json::to_value(full_message()).unwrap();
    numeric_guild["guild_id"] = json!(3);
    let bad = [
        envelope("message", no_author),
        envelope("message", numeric_guild),
        envelope("message", json!({"type": 2})),
        envelope("interaction", json!({"id": "5"})),
        envelope("reaction", json!({})),
        json!({"type": "message", "payload": {}}),
        json!({"type": "message", "source": "webhook", "payload": serde_json::to_value(full_message()).unwrap()}),
    ];
    for ev in &bad {
        assert!(!v.is_valid(ev), "should be refused: {ev}");
    }
}

fn full_status() -> StatusEvent {
    let mut ev = StatusEvent::new(ShardState::Error, [1, 4], "d");
    ev.url = Some("wss://gateway.discord.gg/?v=10".into());
    ev.session_id = Some("s".into());
    ev.resume_url = Some("wss://gateway.discord.gg".into());
    ev.last_seq = Some(4);
    ev.reason = Some("invalid_session".into());
    ev.close_code = Some(4009);
    ev.will_resume = Some(false);
    ev.attempt = Some(2);
    ev.delay_ms = Some(1500);
    ev.message = Some("m".into());
    ev.fatal = Some(false);
    ev.lost = Some(SeqRange { from: 5, to: 7 });
    ev.at = Some("2026-01-01T00:00:00Z".into());
    ev.owner = Some("host:1:0000abcd".into());
    ev
}

#[test]
fn status_schema_lists_exactly_the_type_fields() {
    let s = schema(STATUS_EVENT_SCHEMA);
    let full = serde_json::to_value(full_status()).unwrap();
    assert_eq!(keys(&full), keys(&s["properties"]));
    let minimal =
        serde_json::to_value(StatusEvent::new(ShardState::Connected, [0, 1], "x")).unwrap();
    assert_eq!(keys(&minimal), strings(&s["required"]));
    assert_eq!(
        keys(&full["lost"]),
        keys(&s["properties"]["lost"]["properties"])
    );
    let states: BTreeSet<String> = [
        ShardState::Connecting,
        ShardState::Identifying,
        ShardState::Connected,
        ShardState::Resuming,
        ShardState::Disconnected,
        ShardState::Backoff,
        ShardState::Error,
        ShardState::ShuttingDown,
    ]
    .iter()
    .map(|s| {
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(v, s.as_str());
        v.as_str().unwrap().to_owned()
    })
    .collect();
    assert_eq!(states, strings(&s["properties"]["state"]["enum"]));
}

#[test]
fn status_events_validate_and_broken_ones_do_not() {
    let v = jsonschema::validator_for(&schema(STATUS_EVENT_SCHEMA)).unwrap();
    assert!(v.is_valid(&serde_json::to_value(full_status()).unwrap()));
    let bad = [
        json!({"state": "connected", "shard": [0, 1]}),
        json!({"state": "exploded", "shard": [0, 1], "detail": ""}),
        json!({"state": "connected", "shard": [0], "detail": ""}),
        json!({"state": "connected", "shard": [0, 1, 2], "detail": ""}),
        json!({"state": "connected", "shard": [0, 0], "detail": ""}),
        json!({"state": "error", "shard": [0, 1], "detail": "", "lost": {"from": 1}}),
    ];
    for ev in &bad {
        assert!(!v.is_valid(ev), "should be refused: {ev}");
    }
}

/// Discord's own examples of the four commands (discord-api-docs,
/// gateway-events), as requests.
fn command_examples() -> Vec<GatewayCommand> {
    let c = |op, d, shard| GatewayCommand { op, d, shard };
    vec![
        c(
            3,
            json!({"since": 91_879_201, "activities": [{"name": "Save the Oxford Comma", "type": 0}],
                   "status": "online", "afk": false}),
            Some(1),
        ),
        c(
            4,
            json!({"guild_id": "41771983423143937", "channel_id": "127121515262115840",
                   "self_mute": false, "self_deaf": false}),
            None,
        ),
        c(
            8,
            json!({"guild_id": "41771983444115456", "query": "", "limit": 0}),
            None,
        ),
        c(
            31,
            json!({"guild_ids": ["613425648685547541", "81384788765712384"]}),
            None,
        ),
    ]
}

#[test]
fn command_schema_lists_exactly_the_type_fields() {
    let s = schema(COMMAND_SCHEMA);
    let full = serde_json::to_value(&command_examples()[0]).unwrap();
    assert_eq!(keys(&full), keys(&s["properties"]));
    let minimal = serde_json::to_value(&command_examples()[1]).unwrap();
    assert_eq!(keys(&minimal), strings(&s["required"]));
    let ops: Vec<u64> = s["properties"]["op"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let known: Vec<u64> = discord_bridge_schemas::command::COMMAND_OPS
        .iter()
        .map(|op| u64::from(*op))
        .collect();
    assert_eq!(ops, known);
}

#[test]
fn command_requests_validate_and_broken_ones_do_not() {
    let v = jsonschema::validator_for(&schema(COMMAND_SCHEMA)).unwrap();
    for example in command_examples() {
        let value = serde_json::to_value(&example).unwrap();
        assert!(v.is_valid(&value), "{value}");
        let back: GatewayCommand = serde_json::from_value(value).unwrap();
        assert_eq!(back, example);
    }
    let bad = [
        json!({"op": 2, "d": {}}),
        json!({"op": 3, "d": []}),
        json!({"op": 3}),
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "online", "afk": false}, "shards": 1}),
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "away", "afk": false}}),
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "online", "afk": false}, "shard": -1}),
        json!({"op": 4, "d": {"guild_id": "x1", "channel_id": null, "self_mute": false, "self_deaf": false}}),
        json!({"op": 4, "d": {"guild_id": "1", "self_mute": false, "self_deaf": false}}),
        json!({"op": 8, "d": {"query": "", "limit": 0}}),
        json!({"op": 8, "d": {"guild_id": "1", "query": ""}}),
        json!({"op": 8, "d": {"guild_id": "1", "user_ids": ["2"], "nonce": "x".repeat(33)}}),
        json!({"op": 31, "d": {"guild_ids": []}}),
        json!({"op": 31, "d": {"guild_ids": "1"}}),
    ];
    for request in &bad {
        assert!(!v.is_valid(request), "should be refused: {request}");
        assert!(
            serde_json::from_value::<GatewayCommand>(request.clone()).is_err()
                || !v.is_valid(request),
        );
    }
    // The Rust type refuses unknown top-level fields too.
    assert!(serde_json::from_value::<GatewayCommand>(bad[3].clone()).is_err());
}

#[test]
fn command_reply_schema_lists_exactly_the_type_fields() {
    let s = schema(COMMAND_REPLY_SCHEMA);
    let full = CommandReply {
        ok: false,
        code: Some(CommandErrorCode::RateLimited),
        error: Some("spent".into()),
        retry_after_ms: Some(1500),
        shards: vec![0],
    };
    let full = serde_json::to_value(full).unwrap();
    assert_eq!(keys(&full), keys(&s["properties"]));
    let minimal = serde_json::to_value(CommandReply::written(Vec::new())).unwrap();
    assert_eq!(keys(&minimal), strings(&s["required"]));
    let codes: BTreeSet<String> = CommandErrorCode::ALL
        .iter()
        .map(|c| {
            let v = serde_json::to_value(c).unwrap();
            assert_eq!(v, c.as_str());
            assert_eq!(c.to_string(), c.as_str());
            v.as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(codes, strings(&s["properties"]["code"]["enum"]));
}

#[test]
fn command_replies_validate_and_broken_ones_do_not() {
    let v = jsonschema::validator_for(&schema(COMMAND_REPLY_SCHEMA)).unwrap();
    let mut limited = CommandReply::refused(CommandErrorCode::RateLimited, "spent");
    limited.retry_after_ms = Some(12);
    let replies = [
        CommandReply::written(vec![0, 1]),
        CommandReply::refused(CommandErrorCode::NotOwned, "shard 3 is not run here"),
        limited,
    ];
    for reply in &replies {
        let value = serde_json::to_value(reply).unwrap();
        assert!(v.is_valid(&value), "{value}");
        assert_eq!(
            &serde_json::from_value::<CommandReply>(value).unwrap(),
            reply
        );
    }
    let bad = [
        json!({}),
        json!({"ok": false}),
        json!({"ok": false, "code": "exploded", "error": "x"}),
        json!({"ok": true, "code": "bad_request"}),
        json!({"ok": true, "shards": [-1]}),
    ];
    for reply in &bad {
        assert!(!v.is_valid(reply), "should be refused: {reply}");
    }
}
