//! Validation of what the end-to-end tests observe against the published
//! JSON Schemas (`schemas/json/`): every agent event read from a stream,
//! every status event the [`crate::stack::Stack`] collects, and every
//! gateway command reply goes through here.

use std::sync::OnceLock;

use discord_bridge_schemas::{
    AGENT_EVENT_SCHEMA, COMMAND_REPLY_SCHEMA, COMMAND_SCHEMA, STATUS_EVENT_SCHEMA,
};
use jsonschema::Validator;
use serde_json::Value;

fn compile(text: &str) -> Validator {
    let schema: Value = serde_json::from_str(text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn check(validator: &Validator, what: &str, instance: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its JSON Schema: {errors:?}\n{instance}"
    );
}

/// Panics unless `event` is a valid agent event.
pub fn assert_agent_event(event: &Value) {
    static V: OnceLock<Validator> = OnceLock::new();
    check(
        V.get_or_init(|| compile(AGENT_EVENT_SCHEMA)),
        "agent event",
        event,
    );
}

/// Panics unless `event` is a valid status event.
pub fn assert_status_event(event: &Value) {
    static V: OnceLock<Validator> = OnceLock::new();
    check(
        V.get_or_init(|| compile(STATUS_EVENT_SCHEMA)),
        "status event",
        event,
    );
}

/// Panics unless `reply` is a valid gateway command reply.
pub fn assert_command_reply(reply: &Value) {
    static V: OnceLock<Validator> = OnceLock::new();
    check(
        V.get_or_init(|| compile(COMMAND_REPLY_SCHEMA)),
        "gateway command reply",
        reply,
    );
}

/// Panics unless `request` is a valid gateway command request.
pub fn assert_command_request(request: &Value) {
    static V: OnceLock<Validator> = OnceLock::new();
    check(
        V.get_or_init(|| compile(COMMAND_SCHEMA)),
        "gateway command request",
        request,
    );
}
