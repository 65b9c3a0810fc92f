//! Property tests of the envelope decoder: random and mutated bytes never
//! panic it, and the one-pass MESSAGE_CREATE path (the hot path) agrees
//! with the general path (`decode`, then the normalizer) on every frame it
//! accepts — function by function and through two session machines, one
//! with the hot path and one without.

use std::time::Instant;

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::gateway::machine::{Action, Input, Machine, MachineConfig, PublishKind};
use crate::gateway::normalize::{self, Outcome};
use crate::prop_support::{config, hostile_string, json};
use crate::secret::Secret;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/corpus");

/// The `d` of every MESSAGE_CREATE in the corpus (real frames and
/// Discord's documentation examples).
fn message_bodies() -> Vec<Value> {
    let read = |path: &str| -> Value {
        let text = std::fs::read(format!("{CORPUS}/{path}")).expect("corpus file");
        serde_json::from_slice(&text).expect("corpus JSON")
    };
    let mut bodies: Vec<Value> = [
        "discordbm_message_create.json",
        "disgord_message_create.json",
    ]
    .iter()
    .map(|f| read(&format!("frames/{f}"))["d"].clone())
    .collect();
    for f in [
        "docs_example_message.json",
        "docs_example_crossposted_message.json",
    ] {
        bodies.push(read(&format!("bodies/{f}")));
    }
    bodies
}

/// One edit of a message body.
#[derive(Debug, Clone)]
enum Edit {
    /// Give a field (top level or the author's) another value.
    Set {
        author: bool,
        field: prop::sample::Index,
        value: Value,
    },
    /// Remove a field.
    Remove {
        author: bool,
        field: prop::sample::Index,
    },
    /// A field the capsule reads, as a hostile string.
    Hostile {
        field: prop::sample::Index,
        text: String,
    },
    /// Wrap the member object in `depth` arrays.
    Nest { depth: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<bool>(), any::<prop::sample::Index>(), json()).prop_map(|(author, field, value)| {
            Edit::Set {
                author,
                field,
                value,
            }
        }),
        (any::<bool>(), any::<prop::sample::Index>())
            .prop_map(|(author, field)| Edit::Remove { author, field }),
        (any::<prop::sample::Index>(), hostile_string())
            .prop_map(|(field, text)| Edit::Hostile { field, text }),
        (0usize..80).prop_map(|depth| Edit::Nest { depth }),
    ]
}

fn target(body: &mut Value, author: bool) -> Option<&mut serde_json::Map<String, Value>> {
    if author {
        body.get_mut("author")?.as_object_mut()
    } else {
        body.as_object_mut()
    }
}

fn apply(body: &mut Value, edit: &Edit) {
    let pick = |obj: &serde_json::Map<String, Value>, i: &prop::sample::Index| {
        let keys: Vec<String> = obj.keys().cloned().collect();
        (!keys.is_empty()).then(|| keys[i.index(keys.len())].clone())
    };
    match edit {
        Edit::Set {
            author,
            field,
            value,
        } => {
            if let Some(obj) = target(body, *author)
                && let Some(k) = pick(obj, field)
            {
                obj.insert(k, value.clone());
            }
        }
        Edit::Remove { author, field } => {
            if let Some(obj) = target(body, *author)
                && let Some(k) = pick(obj, field)
            {
                obj.remove(&k);
            }
        }
        Edit::Hostile { field, text } => {
            const READ: [&str; 6] = [
                "content",
                "id",
                "channel_id",
                "guild_id",
                "timestamp",
                "webhook_id",
            ];
            let k = READ[field.index(READ.len())];
            body[k] = Value::from(text.as_str());
        }
        Edit::Nest { depth } => {
            let mut member = body.get("member").cloned().unwrap_or(Value::Null);
            for _ in 0..*depth {
                member = Value::Array(vec![member]);
            }
            body["member"] = member;
        }
    }
}

/// A dispatch frame: its entries in Discord's order (`t` first) or
/// shuffled, sometimes with one key written twice.
#[derive(Debug, Clone)]
struct FrameSpec {
    body: Value,
    seq: Option<Option<u64>>,
    op: u64,
    shuffle: Option<Vec<prop::sample::Index>>,
    duplicate: Option<(prop::sample::Index, Value)>,
}

impl FrameSpec {
    fn discord_order(&self) -> bool {
        self.shuffle.is_none() && self.duplicate.is_none()
    }

    fn render(&self) -> String {
        let mut entries = vec![(r#""t""#, r#""MESSAGE_CREATE""#.to_owned())];
        match self.seq {
            Some(Some(s)) => entries.push((r#""s""#, s.to_string())),
            Some(None) => entries.push((r#""s""#, "null".to_owned())),
            None => {}
        }
        entries.push((r#""op""#, self.op.to_string()));
        entries.push((r#""d""#, self.body.to_string()));
        if let Some(order) = &self.shuffle {
            for (i, j) in order.iter().enumerate() {
                let (i, j) = (i % entries.len(), j.index(entries.len()));
                entries.swap(i, j);
            }
        }
        if let Some((which, value)) = &self.duplicate {
            let key = entries[which.index(entries.len())].0;
            entries.push((key, value.to_string()));
        }
        let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{{{}}}", inner.join(","))
    }
}

fn message_frame() -> impl Strategy<Value = FrameSpec> {
    let bodies = message_bodies();
    (
        prop::sample::select(bodies),
        prop::collection::vec(edit(), 0..4),
        prop_oneof![
            4 => (1u64..1_000_000).prop_map(|s| Some(Some(s))),
            1 => Just(Some(None)),
            1 => Just(None),
            1 => any::<u64>().prop_map(|s| Some(Some(s))),
        ],
        prop_oneof![8 => Just(0u64), 1 => any::<u64>()],
        prop::option::weighted(0.3, prop::collection::vec(any::<prop::sample::Index>(), 4)),
        prop::option::weighted(0.15, (any::<prop::sample::Index>(), json())),
    )
        .prop_map(|(mut body, edits, seq, op, shuffle, duplicate)| {
            for e in &edits {
                apply(&mut body, e);
            }
            FrameSpec {
                body,
                seq,
                op,
                shuffle,
                duplicate,
            }
        })
}

/// Outcomes compared as the machine uses them: the same relay, or both
/// refused (the messages may differ in positions).
fn same(
    a: &Result<Outcome, normalize::NormalizeError>,
    b: &Result<Outcome, normalize::NormalizeError>,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

fn live_machine(raw_dispatch: &[&str]) -> (Machine, Instant) {
    let mut cfg = MachineConfig::new(
        ShardId::new(0, 1),
        Secret::new("t"),
        "wss://gateway.discord.gg".into(),
    );
    cfg.seed = 1;
    cfg.raw_dispatch = raw_dispatch.iter().map(|s| (*s).to_owned()).collect();
    let mut m = Machine::new(cfg);
    let now = Instant::now();
    let mut out = Vec::new();
    m.handle(now, Input::Start, &mut out);
    m.handle(now, Input::Opened, &mut out);
    m.handle(
        now,
        Input::Payload(br#"{"op":10,"d":{"heartbeat_interval":41250}}"#),
        &mut out,
    );
    m.handle(now, Input::IdentifyPermit, &mut out);
    m.handle(
        now,
        Input::Payload(br#"{"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"wss://gateway.discord.gg","user":{"id":"999"}}}"#),
        &mut out,
    );
    assert!(m.is_live());
    (m, now)
}

/// What the publisher and the resume point see of a batch of actions.
fn relayed(out: &[Action]) -> Vec<Action> {
    out.iter()
        .filter(|a| match a {
            Action::Publish(p) => !matches!(p.kind, PublishKind::Raw(_)),
            Action::Skip { .. } => true,
            _ => false,
        })
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes, and any edit of a real frame, through both decoders.
    #[test]
    fn prop_decoders_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        frame in message_frame(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let _ = decode(&bytes);
        let _ = decode_message_dispatch(&bytes);
        let mut text = frame.render().into_bytes();
        for (at, b) in &flips {
            let at = at.index(text.len());
            text[at] = *b;
        }
        text.truncate(cut.index(text.len() + 1));
        let _ = decode(&text);
        let _ = decode_message_dispatch(&text);
    }

    /// Whatever the one-pass decoder accepts, the general path reads the
    /// same way: a dispatch with the same sequence, normalized to the same
    /// agent event (or refused by both). And a valid frame in Discord's key
    /// order does take the one-pass path.
    #[test]
    fn prop_one_pass_agrees_with_the_general_path(
        frame in message_frame(),
        own in any::<bool>(),
    ) {
        let text = frame.render();
        let bytes = text.as_bytes();
        let bot = if own { Some("560661188019488714") } else { Some("1") };
        let general = decode(bytes);
        let one_pass = decode_message_dispatch(bytes);
        if let Some(m) = &one_pass {
            let p = general.as_ref().expect("the general path decodes what the hot path did");
            prop_assert_eq!(p.op, u64::from(op::DISPATCH));
            prop_assert_eq!(p.t.as_deref(), Some("MESSAGE_CREATE"));
            prop_assert_eq!(p.s, m.seq);
            let d = p.d.expect("a body");
            let hot = normalize::message_event(&m.message, bot, m.len);
            let slow = normalize::normalize("MESSAGE_CREATE", d, bot);
            prop_assert!(same(&hot, &slow), "hot {:?} vs general {:?} for {}", hot, slow, text);
        }
        if frame.discord_order() && frame.op == 0 {
            let relays = general.ok().and_then(|p| p.d).map(|d| normalize::normalize("MESSAGE_CREATE", d, bot));
            if let Some(Ok(_)) = relays {
                prop_assert!(one_pass.is_some(), "a valid frame in Discord's order missed the hot path: {}", text);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// The same frames through a machine with the hot path and one without
    /// (the raw firehose of MESSAGE_CREATE turns it off): the same events
    /// published and the same sequences skipped, in the same order.
    #[test]
    fn prop_machines_with_and_without_the_hot_path_agree(
        frames in prop::collection::vec(message_frame(), 1..12),
    ) {
        let (mut hot, now) = live_machine(&[]);
        let (mut general, _) = live_machine(&["MESSAGE_CREATE"]);
        for frame in &frames {
            let text = frame.render();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            hot.handle(now, Input::Payload(text.as_bytes()), &mut a);
            general.handle(now, Input::Payload(text.as_bytes()), &mut b);
            prop_assert_eq!(relayed(&a), relayed(&b), "frame {}", text);
            prop_assert_eq!(hot.is_live(), general.is_live());
        }
        prop_assert_eq!(general.stats().one_pass_messages, 0);
    }
}

/// The hot path is really taken in the comparison above: a corpus frame in
/// Discord's order goes through it.
#[test]
fn a_corpus_message_takes_the_hot_path() {
    let frame =
        std::fs::read(format!("{CORPUS}/frames/discordbm_message_create.json")).expect("frame");
    let v: Value = serde_json::from_slice(&frame).expect("JSON");
    let spec = FrameSpec {
        body: v["d"].clone(),
        seq: Some(Some(2)),
        op: 0,
        shuffle: None,
        duplicate: None,
    };
    let (mut m, now) = live_machine(&[]);
    let mut out = Vec::new();
    m.handle(now, Input::Payload(spec.render().as_bytes()), &mut out);
    assert_eq!(m.stats().one_pass_messages, 1);
    assert!(
        relayed(&out)
            .iter()
            .any(|a| matches!(a, Action::Publish(_)))
    );
}

/// A key written twice is refused by both paths alike (it was relayed by
/// the hot path and skipped by the general one before).
#[test]
fn duplicate_keys_are_refused_by_both_paths() {
    let body = r#"{"id":"1","channel_id":"2","author":{"id":"3","username":"u"},"content":"c","timestamp":"t"}"#;
    for frame in [
        format!(r#"{{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{body},"t":"READY"}}"#),
        format!(r#"{{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{body},"s":3}}"#),
        format!(r#"{{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{body},"d":{body}}}"#),
        format!(r#"{{"t":"MESSAGE_CREATE","s":2,"op":0,"op":0,"d":{body}}}"#),
    ] {
        assert!(decode(frame.as_bytes()).is_err(), "{frame}");
        assert!(
            decode_message_dispatch(frame.as_bytes()).is_none(),
            "{frame}"
        );
    }
}
