//! One readable line per event, as the capsule would receive it.

use discord_bridge_schemas::{AgentEvent, AgentEventKind, ShardState, StatusEvent};
use serde_json::Value;

/// The line for an agent event; `shard`/`seq` come from its headers.
#[must_use]
pub fn agent_line(event: &AgentEvent, shard: Option<&str>, seq: Option<&str>) -> String {
    let origin = match (shard, seq) {
        (Some(shard), Some(seq)) => format!("  [shard {shard}, seq {seq}]"),
        _ => String::new(),
    };
    match event.kind {
        AgentEventKind::Message => match event.message() {
            Ok(m) => {
                let place = m
                    .guild_id
                    .as_deref()
                    .map_or_else(|| "DM".to_owned(), |g| format!("guild {g}"));
                format!(
                    "message      {place:<24} {}: {}{origin}",
                    m.author.username,
                    one_line(&m.content)
                )
            }
            Err(e) => format!("message      (unreadable: {e}){origin}"),
        },
        AgentEventKind::Interaction => {
            let p = &event.payload;
            let name = p["data"]["name"].as_str().unwrap_or("?");
            let user = p["member"]["user"]["username"]
                .as_str()
                .or_else(|| p["user"]["username"].as_str())
                .unwrap_or("?");
            let options = p["data"]["options"]
                .as_array()
                .map(|opts| {
                    opts.iter()
                        .map(|o| {
                            format!(
                                " {}={}",
                                o["name"].as_str().unwrap_or("?"),
                                short(&o["value"])
                            )
                        })
                        .collect::<String>()
                })
                .unwrap_or_default();
            let place = p["guild_id"]
                .as_str()
                .map_or_else(|| "DM".to_owned(), |g| format!("guild {g}"));
            format!(
                "interaction  {place:<24} /{name}{options} by {user} (type {}){origin}",
                p["type"]
            )
        }
    }
}

/// The line for a status event.
#[must_use]
pub fn status_line(ev: &StatusEvent) -> String {
    let state = ev.state.as_str();
    let [id, total] = ev.shard;
    let mut line = format!("status       shard {id}/{total} {state:<13} {}", ev.detail);
    if ev.state == ShardState::Backoff
        && let Some(ms) = ev.delay_ms
    {
        line = format!("status       shard {id}/{total} {state:<13} reconnecting in {ms} ms");
    }
    line
}

fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 100 {
        format!("{}…", flat.chars().take(100).collect::<String>())
    } else {
        flat
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => one_line(s),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_readable() {
        let ev: AgentEvent = serde_json::from_str(
            r#"{"type":"message","source":"gateway","payload":{"id":"1","channel_id":"2","guild_id":null,"author":{"id":"3","username":"alice"},"content":"hi\nthere","timestamp":"t"}}"#,
        )
        .unwrap();
        let line = agent_line(&ev, Some("0/1"), Some("7"));
        assert!(
            line.contains("DM") && line.contains("alice: hi there") && line.contains("seq 7"),
            "{line}"
        );
        let ev: AgentEvent = serde_json::from_str(
            r#"{"type":"interaction","source":"gateway","payload":{"type":2,"guild_id":"9","data":{"name":"chat","options":[{"name":"prompt","value":"yo"}]},"member":{"user":{"username":"bob"}}}}"#,
        )
        .unwrap();
        let line = agent_line(&ev, None, None);
        assert!(
            line.contains("/chat prompt=yo by bob") && line.contains("guild 9"),
            "{line}"
        );
        let st = StatusEvent::new(ShardState::Connected, [0, 1], "READY");
        assert!(status_line(&st).contains("shard 0/1 connected"));
    }
}
