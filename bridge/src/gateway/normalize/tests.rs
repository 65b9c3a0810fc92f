use discord_bridge_schemas::{AgentEvent, MessagePayload};
use serde_json::{Value, json};

use super::*;

const FRAMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/corpus/frames");
const BODIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/corpus/bodies");

fn d_of(frame: &str) -> Box<RawValue> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(format!("{FRAMES}/{frame}")).unwrap()).unwrap();
    serde_json::value::to_raw_value(&v["d"]).unwrap()
}

fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap()
}

fn relay(outcome: Outcome) -> Normalized {
    match outcome {
        Outcome::Relay(n) => n,
        other => panic!("expected a relay, got {other:?}"),
    }
}

#[test]
fn real_message_create_becomes_a_message_event() {
    let d = d_of("discordbm_message_create.json");
    let n = relay(normalize("MESSAGE_CREATE", &d, Some("1")).unwrap());
    assert_eq!(n.kind, AgentEventKind::Message);
    assert_eq!(n.guild_id.as_deref(), Some("439103874612675485"));
    let event: AgentEvent = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(event.source, "gateway");
    let m: MessagePayload = event.message().unwrap();
    assert_eq!(m.id, "1028029980795478046");
    assert_eq!(m.channel_id, "435923868503506954");
    assert_eq!(m.author.id, "560661188019488714");
    assert_eq!(m.author.username, "GoodUser");
    assert_eq!(m.content, "blah bljhshADh blah");
    assert_eq!(
        m.timestamp.as_deref(),
        Some("2022-10-07T19:44:07.295000+00:00")
    );
    assert_eq!(m.message_type, Some(0));
    assert!(m.member.is_some());
    // Fields the capsule does not read are not copied.
    let body: Value = serde_json::from_slice(&n.body).unwrap();
    assert!(body["payload"].get("nonce").is_none());
    assert!(body["payload"].get("components").is_none());
}

#[test]
fn every_message_in_the_corpus_normalizes() {
    for frame in [
        "disgord_message_create.json",
        "discordbm_message_create.json",
    ] {
        let d = d_of(frame);
        let n = relay(normalize("MESSAGE_CREATE", &d, None).unwrap());
        let event: AgentEvent = serde_json::from_slice(&n.body).unwrap();
        event.message().unwrap();
    }
    for body in [
        "docs_example_message.json",
        "docs_example_crossposted_message.json",
    ] {
        let v: Value =
            serde_json::from_slice(&std::fs::read(format!("{BODIES}/{body}")).unwrap()).unwrap();
        let n = relay(normalize("MESSAGE_CREATE", &raw(&v), None).unwrap());
        let event: AgentEvent = serde_json::from_slice(&n.body).unwrap();
        let m = event.message().unwrap();
        assert_eq!(m.id, v["id"].as_str().unwrap(), "{body}");
    }
}

#[test]
fn escapes_are_kept_verbatim() {
    let d = raw(&json!({
        "id": "1", "channel_id": "2",
        "author": {"id": "3", "username": "quote\"back\\slash"},
        "content": "line\nbreak \u{1F600} \"quoted\"",
        "timestamp": "t"
    }));
    let n = relay(normalize("MESSAGE_CREATE", &d, None).unwrap());
    let m = serde_json::from_slice::<AgentEvent>(&n.body)
        .unwrap()
        .message()
        .unwrap();
    assert_eq!(m.author.username, "quote\"back\\slash");
    assert_eq!(m.content, "line\nbreak \u{1F600} \"quoted\"");
}

#[test]
fn dm_has_null_guild() {
    let d = raw(
        &json!({"id":"1","channel_id":"2","author":{"id":"3","username":"u"},"content":"hi","timestamp":"t"}),
    );
    let n = relay(normalize("MESSAGE_CREATE", &d, None).unwrap());
    assert_eq!(n.guild_id, None);
    let body: Value = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(body["payload"]["guild_id"], Value::Null);
}

#[test]
fn own_messages_are_not_relayed() {
    let d = d_of("discordbm_message_create.json");
    assert_eq!(
        normalize("MESSAGE_CREATE", &d, Some("560661188019488714")).unwrap(),
        Outcome::OwnMessage
    );
}

#[test]
fn interaction_payload_is_verbatim() {
    let d = d_of("discordbm_interaction_create.json");
    let n = relay(normalize("INTERACTION_CREATE", &d, None).unwrap());
    assert_eq!(n.kind, AgentEventKind::Interaction);
    let body: Value = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(body["type"], "interaction");
    assert_eq!(body["source"], "gateway");
    let original: Value = serde_json::from_str(d.get()).unwrap();
    assert_eq!(body["payload"], original);
    assert_eq!(
        body["payload"]["type"], 5,
        "payload.type is the interaction type"
    );
    assert_eq!(n.guild_id.as_deref(), original["guild_id"].as_str());
}

#[test]
fn docs_interactions_normalize() {
    for i in 1..=3 {
        let v: Value = serde_json::from_slice(
            &std::fs::read(format!("{BODIES}/docs_interaction_example_{i}.json")).unwrap(),
        )
        .unwrap();
        let n = relay(normalize("INTERACTION_CREATE", &raw(&v), None).unwrap());
        let body: Value = serde_json::from_slice(&n.body).unwrap();
        assert_eq!(body["payload"], v);
    }
}

#[test]
fn other_events_are_not_relayed() {
    for frame in [
        "disgord_typing_start.json",
        "disgord_presence_update.json",
        "discordbm_voice_state_update.json",
        "discordbm_zlibcap_guild_create.json",
    ] {
        let d = d_of(frame);
        let v: Value =
            serde_json::from_slice(&std::fs::read(format!("{FRAMES}/{frame}")).unwrap()).unwrap();
        let t = v["t"].as_str().unwrap();
        assert_eq!(
            normalize(t, &d, None).unwrap(),
            Outcome::NotRelayed,
            "{frame}"
        );
    }
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    let cases = [
        json!({"id": "1"}),
        json!({"id": 1, "channel_id": "2", "author": {"id": "3"}}),
        json!({"id": "1", "channel_id": "2", "author": {"id": "3"}, "content": 5}),
        json!({"id": "1", "channel_id": "2", "author": "x"}),
        json!([1, 2, 3]),
        json!("string"),
    ];
    for d in &cases {
        assert!(normalize("MESSAGE_CREATE", &raw(d), None).is_err(), "{d}");
    }
    assert!(normalize("INTERACTION_CREATE", &raw(&json!([1])), None).is_err());
    assert!(normalize("INTERACTION_CREATE", &raw(&json!({"guild_id": 5})), None).is_err());
}

/// A guild id becomes the `Discord-Guild` header and picks the shard, so
/// anything but a snowflake is refused.
#[test]
fn guild_ids_must_be_snowflakes() {
    for bad in ["", "12 34", "x", "1.2", "123456789012345678901"] {
        let m = json!({"id": "1", "channel_id": "2", "guild_id": bad,
                       "author": {"id": "3"}, "content": "c"});
        assert!(
            matches!(
                normalize("MESSAGE_CREATE", &raw(&m), None),
                Err(NormalizeError::FieldType {
                    field: "guild_id",
                    ..
                })
            ),
            "{bad:?}"
        );
        let i = json!({"id": "1", "type": 2, "guild_id": bad});
        assert!(
            normalize("INTERACTION_CREATE", &raw(&i), None).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn mistyped_extras_are_left_out() {
    let d = raw(&json!({
        "id": "1", "channel_id": "2", "author": {"id": "3", "username": "u", "bot": "yes"},
        "content": "", "timestamp": "t", "attachments": "nope", "type": 19, "flags": null
    }));
    let n = relay(normalize("MESSAGE_CREATE", &d, None).unwrap());
    let body: Value = serde_json::from_slice(&n.body).unwrap();
    assert!(body["payload"].get("attachments").is_none());
    assert!(body["payload"]["author"].get("bot").is_none());
    assert_eq!(body["payload"]["type"], 19);
    let m = serde_json::from_slice::<AgentEvent>(&n.body)
        .unwrap()
        .message()
        .unwrap();
    assert_eq!(m.message_type, Some(19));
}
