//! Callers' commands: sent only on a live connection, within the rate limit
//! outside the heartbeat reserve, never queued; the last presence comes back
//! on every new session and not on a resumed one.

use super::*;

const PRESENCE: &str = r#"{"op":3,"d":{"since":null,"activities":[],"status":"dnd","afk":false}}"#;
const VOICE: &str =
    r#"{"op":4,"d":{"guild_id":"1","channel_id":null,"self_mute":false,"self_deaf":false}}"#;

impl H {
    fn command(&mut self, id: u64, text: &str, presence: bool) -> Vec<Action> {
        self.feed(Input::Command {
            id,
            text: text.to_owned(),
            presence,
        })
    }
}

fn refusal(actions: &[Action], want: u64) -> Option<CommandRefusal> {
    actions.iter().find_map(|a| match a {
        Action::CommandRefused { id, refusal } if *id == want => Some(*refusal),
        _ => None,
    })
}

fn command_sent(actions: &[Action], want: u64) -> bool {
    sends(actions)
        .iter()
        .any(|f| f.kind == SendKind::Command(want))
}

fn presence_resends(actions: &[Action]) -> Vec<&OutFrame> {
    sends(actions)
        .into_iter()
        .filter(|f| f.kind == SendKind::Presence)
        .collect()
}

fn not_connected(state: &'static str) -> Option<CommandRefusal> {
    Some(CommandRefusal::NotConnected { state })
}

#[test]
fn commands_wait_for_a_live_session_and_are_not_buffered() {
    let mut h = H::new();
    assert_eq!(
        refusal(&h.command(1, VOICE, false), 1),
        not_connected("connecting")
    );
    h.feed(Input::Start);
    assert_eq!(
        refusal(&h.command(2, VOICE, false), 2),
        not_connected("connecting")
    );
    h.feed(Input::Opened);
    assert_eq!(
        refusal(&h.command(3, VOICE, false), 3),
        not_connected("connecting")
    );
    h.hello();
    assert_eq!(
        refusal(&h.command(4, PRESENCE, true), 4),
        not_connected("identifying")
    );
    h.feed(Input::IdentifyPermit);
    assert_eq!(
        refusal(&h.command(5, VOICE, false), 5),
        not_connected("identifying")
    );
    let out = h.ready(1, "sess-1");
    assert!(
        presence_resends(&out).is_empty(),
        "a refused presence is not remembered"
    );
    // Nothing refused earlier went out later.
    let out = h.command(6, VOICE, false);
    let frames = sends(&out);
    assert_eq!(frames.len(), 1, "{out:?}");
    assert_eq!(frames[0].kind, SendKind::Command(6));
    assert_eq!(frames[0].text, VOICE);

    // Reconnecting: refused while waiting out the backoff and resuming.
    h.json(&json!({"op": 7}));
    assert_eq!(
        refusal(&h.command(7, VOICE, false), 7),
        not_connected("waiting to reconnect")
    );
    h.reconnect();
    assert_eq!(
        refusal(&h.command(8, VOICE, false), 8),
        not_connected("resuming")
    );
    h.dispatch(2, "RESUMED", &json!({}));
    assert!(command_sent(&h.command(9, VOICE, false), 9));
    h.feed(Input::Shutdown);
    assert_eq!(
        refusal(&h.command(10, VOICE, false), 10),
        not_connected("stopped")
    );
}

#[test]
fn a_burst_of_commands_is_refused_past_the_budget_and_never_delays_a_heartbeat() {
    let mut h = H::new();
    h.live();
    let t0 = h.now;
    let (mut sent, mut limited) = (0, 0);
    for id in 0..200 {
        let out = h.command(id, PRESENCE, true);
        if command_sent(&out, id) {
            sent += 1;
        } else {
            match refusal(&out, id) {
                Some(CommandRefusal::RateLimited { retry_at }) => {
                    limited += 1;
                    // The window frees its oldest slot one minute after it.
                    assert!(retry_at > t0 && retry_at <= t0 + Duration::from_secs(60));
                }
                other => panic!("command {id}: {other:?}"),
            }
        }
    }
    // 120 per minute, 4 reserved for heartbeats at 41.25 s, 1 spent on
    // IDENTIFY: 115 commands fit.
    assert_eq!((sent, limited), (115, 85));
    // A minute of heartbeats (and one Discord asks for) goes out on time.
    let mut beats = 0;
    loop {
        let at = h.m.next_deadline().expect("a heartbeat deadline");
        if at >= t0 + Duration::from_secs(59) {
            break;
        }
        let out = h.next();
        assert_eq!(h.now, at);
        let frames = sends(&out);
        if frames.iter().any(|f| f.kind == SendKind::Heartbeat) {
            beats += 1;
            h.json(&json!({"op": 11}));
        }
        // Still no room for a command.
        assert!(matches!(
            refusal(&h.command(1_000 + beats, VOICE, false), 1_000 + beats),
            Some(CommandRefusal::RateLimited { .. })
        ));
    }
    let asked = h.json(&json!({"op": 1}));
    assert_eq!(
        sent_json(&asked, SendKind::Heartbeat).map(|v| v["op"].clone()),
        Some(json!(1))
    );
    assert!(beats >= 1, "heartbeats went out during the burst");
    // Once the window has slid past the burst, commands fit again.
    h.now = t0 + Duration::from_secs(60);
    h.feed(Input::Tick);
    assert!(command_sent(&h.command(5_000, VOICE, false), 5_000));
}

#[test]
fn the_last_presence_is_sent_again_on_a_new_session_only() {
    let mut h = H::new();
    h.live();
    let other = PRESENCE.replace("dnd", "idle");
    assert!(command_sent(&h.command(1, &other, true), 1));
    assert!(command_sent(&h.command(2, PRESENCE, true), 2));
    // Not a presence: not remembered.
    assert!(command_sent(&h.command(3, VOICE, false), 3));

    // A RESUME keeps the session, and its presence, at Discord.
    h.json(&json!({"op": 7}));
    h.reconnect();
    let out = h.dispatch(2, "RESUMED", &json!({}));
    assert!(presence_resends(&out).is_empty(), "{out:?}");

    // A new session starts without one: the last one goes out after READY.
    h.json(&json!({"op": 9, "d": false}));
    let (_, _) = h.reconnect();
    h.feed(Input::IdentifyPermit);
    let out = h.ready(1, "sess-2");
    let again = presence_resends(&out);
    assert_eq!(again.len(), 1, "{out:?}");
    assert_eq!(again[0].text, PRESENCE);
    // And after every later new session too.
    h.json(&json!({"op": 9, "d": false}));
    h.reconnect();
    h.feed(Input::IdentifyPermit);
    assert_eq!(presence_resends(&h.ready(1, "sess-3")).len(), 1);
}
