//! Gateway commands over NATS request/reply (the README's Gateway commands):
//! each command reaches the simulator exactly as sent on the right shard,
//! a refused one sends nothing, a member request's GUILD_MEMBERS_CHUNK comes
//! back on the raw firehose with its nonce, the last presence returns after
//! a new session (not after a RESUME), a burst is cut at the send budget
//! with heartbeats going on, and with two processes each answers for its
//! own shards.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use bytes::Bytes;
use discord_bridge::gateway::ShardSpec;
use discord_bridge_e2e::schema::{assert_command_reply, assert_command_request};
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT, bridge_config, test_sim_config};
use discord_bridge_schemas::{CommandErrorCode as Code, CommandReply, header as h, subject};
use discord_gateway_sim::{ClientPayload, ConnId, Outcome, SimConfig, Violation};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Guilds of the simulator's default set: on shard 0 and shard 1 of 2.
const G0: u64 = 197_038_439_483_310_086;
const G1: u64 = 290_926_798_626_357_999;
const PREFIX: &str = "astrid-discord";
/// Slow enough that heartbeats leave most of the send budget to commands
/// (32 of 120 per minute reserved), fast enough to watch them.
const HEARTBEAT: Duration = Duration::from_secs(2);

fn generic() -> String {
    subject::gateway_command(PREFIX)
}

fn on_shard(shard: u32) -> String {
    subject::gateway_command_shard(PREFIX, shard)
}

fn two_shards() -> SimConfig {
    SimConfig {
        shards: 2,
        max_concurrency: 2,
        heartbeat_interval: HEARTBEAT,
        // The simulator closes (and records) a connection whose heartbeat
        // is late by half an interval's worth of slack beyond Discord's.
        heartbeat_timeout: Some(HEARTBEAT * 3),
        ..test_sim_config()
    }
}

fn presence(status: &str, activity: &str) -> String {
    format!(
        r#"{{"since":null,"activities":[{{"name":"{activity}","type":0}}],"status":"{status}","afk":false}}"#
    )
}

/// One request; the reply is checked against its JSON Schema.
async fn ask(client: &async_nats::Client, subject: String, body: impl Into<Bytes>) -> CommandReply {
    let reply = client
        .request(subject.clone(), body.into())
        .await
        .unwrap_or_else(|e| panic!("a reply on {subject}: {e}"));
    let json: Value = serde_json::from_slice(&reply.payload).expect("a JSON reply");
    assert_command_reply(&json);
    serde_json::from_value(json).expect("a CommandReply")
}

/// A valid request (checked against the request schema), retried while
/// the shard is still between READY in the simulator and READY in the
/// bridge, or its subject not yet subscribed.
async fn ask_ok(client: &async_nats::Client, subject: String, body: &str) -> CommandReply {
    assert_command_request(&serde_json::from_str(body).expect("JSON"));
    discord_bridge_e2e::eventually(WAIT, format!("{subject} to write {body}"), || {
        let (client, subject, body) = (client.clone(), subject.clone(), body.to_owned());
        async move {
            let reply = client.request(subject, body.clone().into()).await.ok()?;
            let json: Value = serde_json::from_slice(&reply.payload).ok()?;
            assert_command_reply(&json);
            let reply: CommandReply = serde_json::from_value(json).ok()?;
            match reply.code {
                None => Some(reply),
                Some(Code::ShardNotConnected) => None,
                Some(other) => panic!("{body} refused: {other}: {:?}", reply.error),
            }
        }
    })
    .await
}

/// What callers sent (heartbeats, IDENTIFY and RESUME left out).
fn commands(stack: &Stack) -> Vec<ClientPayload> {
    stack
        .sim
        .payloads()
        .into_iter()
        .filter(|p| !matches!(p.op, Some(1 | 2 | 6)))
        .collect()
}

fn of(payloads: &[ClientPayload], op: u64, shard: u32) -> Vec<Value> {
    payloads
        .iter()
        .filter(|p| p.op == Some(op) && p.shard == Some(shard))
        .map(|p| serde_json::from_str(&p.raw).expect("the simulator got JSON"))
        .collect()
}

fn core_header<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers.as_ref()?.get(name).map(|v| v.as_str())
}

/// Waits until the simulator got `raw` exactly; returns its record.
async fn arrives(stack: &Stack, raw: &str) -> ClientPayload {
    stack
        .wait_sim(|s| s.payloads.iter().find(|p| p.raw == raw).cloned())
        .await
}

#[tokio::test]
async fn commands_reach_their_shards_and_refused_ones_send_nothing() {
    let mut stack = Stack::start_with(StackOptions {
        sim: two_shards(),
        ..StackOptions::with(|c| c.nats.raw_dispatch = vec!["GUILD_MEMBERS_CHUNK".into()])
    })
    .await;
    let client = &stack.client;
    stack.wait_session(0).await;
    stack.wait_session(1).await;
    let mut chunks = client
        .subscribe(subject::gateway_dispatch(PREFIX, "GUILD_MEMBERS_CHUNK"))
        .await
        .expect("subscribe to the firehose");
    client.flush().await.expect("flush");

    // Voice state updates, told apart by their channel id.
    let voice_in = |guild: u64, channel: &str, extra: &str| {
        format!(
            r#"{{"op":4,"d":{{"guild_id":"{guild}","channel_id":{channel},"self_mute":false,"self_deaf":false}}{extra}}}"#
        )
    };
    let voice_on = |guild: u64, extra: &str| voice_in(guild, "null", extra);
    // Both shards take commands (the bridge may see READY a moment after
    // the simulator sent it).
    for guild in [G0, G1] {
        ask_ok(client, generic(), &voice_on(guild, "")).await;
    }

    // op 3 without a shard: every shard, byte for byte.
    let p1 = presence("dnd", "relaying");
    let body = format!(r#"{{"op": 3, "d": {p1}}}"#);
    let frame1 = format!(r#"{{"op":3,"d":{p1}}}"#);
    let reply = ask(client, generic(), body).await;
    assert_eq!(reply.shards, [0, 1], "{reply:?}");
    for shard in [0, 1] {
        stack
            .wait_sim(|s| {
                s.payloads
                    .iter()
                    .any(|p| p.shard == Some(shard) && p.raw == frame1)
                    .then_some(())
            })
            .await;
    }

    // ops 4 and 31 go to their guilds' shards; 31 is split per shard.
    let voice = format!(
        r#"{{"op":4,"d":{{"guild_id":"{G1}","channel_id":"127121515262115840","self_mute":true,"self_deaf":false}}}}"#
    );
    assert_eq!(ask_ok(client, generic(), &voice).await.shards, [1]);
    assert_eq!(arrives(&stack, &voice).await.shard, Some(1));
    let sounds = format!(r#"{{"op":31,"d":{{"guild_ids":["{G0}","{G1}"]}}}}"#);
    assert_eq!(ask_ok(client, generic(), &sounds).await.shards, [0, 1]);
    let seen = stack
        .wait_sim(|s| {
            let sent: Vec<ClientPayload> = s
                .payloads
                .iter()
                .filter(|p| p.op == Some(31))
                .cloned()
                .collect();
            (sent.len() == 2).then_some(sent)
        })
        .await;
    assert_eq!(
        of(&seen, 31, 0),
        [json!({"op": 31, "d": {"guild_ids": [G0.to_string()]}})]
    );
    assert_eq!(
        of(&seen, 31, 1),
        [json!({"op": 31, "d": {"guild_ids": [G1.to_string()]}})]
    );

    // op 8: the simulator answers with a GUILD_MEMBERS_CHUNK, which the
    // bridge publishes on the raw firehose with the request's nonce.
    let members = format!(
        r#"{{"op":8,"d":{{"guild_id":"{G0}","query":"","limit":0,"nonce":"e2e-nonce-1"}}}}"#
    );
    assert_eq!(ask_ok(client, generic(), &members).await.shards, [0]);
    assert_eq!(arrives(&stack, &members).await.shard, Some(0));
    let chunk = tokio::time::timeout(WAIT, chunks.next())
        .await
        .expect("a chunk in time")
        .expect("the firehose is open");
    let d: Value = serde_json::from_slice(&chunk.payload).expect("the chunk's d");
    assert_eq!(d["nonce"], "e2e-nonce-1");
    assert_eq!(d["guild_id"], G0.to_string());
    assert!(
        d["members"].as_array().is_some_and(|m| !m.is_empty()),
        "{d}"
    );
    assert_eq!(core_header(&chunk, h::SHARD), Some("0/2"));
    assert_eq!(core_header(&chunk, h::EVENT), Some("GUILD_MEMBERS_CHUNK"));

    // A shard's own subject: that shard only.
    let p2 = presence("idle", "shard one");
    let frame2 = format!(r#"{{"op":3,"d":{p2}}}"#);
    assert_eq!(ask_ok(client, on_shard(1), &frame2).await.shards, [1]);
    assert_eq!(arrives(&stack, &frame2).await.shard, Some(1));

    // Refused: each with its code, and nothing reaches Discord.
    let before = commands(&stack).len();
    let refused: Vec<(String, String, Code)> = vec![
        (generic(), "{not json".into(), Code::BadRequest),
        (generic(), "[3]".into(), Code::BadRequest),
        (generic(), r#"{"op":1,"d":null}"#.into(), Code::RefusedOp),
        (generic(), r#"{"op":2,"d":{"token":"x"}}"#.into(), Code::RefusedOp),
        (generic(), r#"{"op":6,"d":{}}"#.into(), Code::RefusedOp),
        (generic(), r#"{"op":99,"d":{}}"#.into(), Code::RefusedOp),
        (generic(), r#"{"op":3,"d":[]}"#.into(), Code::BadRequest),
        (generic(), format!(r#"{{"op":3,"d":{p1},"shards":1}}"#), Code::BadRequest),
        (generic(), format!(r#"{{"op":3,"d":{p1},"shard":2}}"#), Code::BadRequest),
        (generic(), r#"{"op":4,"d":{"channel_id":null,"self_mute":false,"self_deaf":false}}"#.into(), Code::BadRequest),
        (generic(), r#"{"op":4,"d":{"guild_id":"abc","channel_id":null,"self_mute":false,"self_deaf":false}}"#.into(), Code::BadRequest),
        (generic(), voice_on(G1, r#","shard":0"#), Code::BadRequest),
        (on_shard(0), voice_on(G1, ""), Code::BadRequest),
        (generic(), format!(r#"{{"op":3,"d":{{"x":"{}"}}}}"#, "a".repeat(5000)), Code::TooLarge),
    ];
    for (subject, body, code) in &refused {
        let reply = ask(client, subject.clone(), body.clone()).await;
        assert!(!reply.ok, "{body}");
        assert_eq!(reply.code, Some(*code), "{body}: {:?}", reply.error);
        assert!(reply.error.as_deref().is_some_and(|e| !e.is_empty()));
    }
    // A last valid command: once it arrives, anything refused before it
    // would have arrived too.
    let marker = voice_in(G0, r#""1001""#, "");
    ask_ok(client, generic(), &marker).await;
    arrives(&stack, &marker).await;
    let after = commands(&stack);
    assert_eq!(
        after.len(),
        before + 1,
        "only the marker: {:#?}",
        &after[before..]
    );

    // A new session gets the last presence again, after its READY.
    let old = stack.sim.session(0).expect("shard 0's session").id;
    assert!(stack.sim.expire_session(0));
    let new = stack
        .wait_sim(|s| {
            s.session_of(0)
                .filter(|n| n.id != old && n.attached.is_some())
                .map(|n| n.id.clone())
        })
        .await;
    let again = stack
        .wait_sim(|s| {
            let conn = s
                .connections
                .values()
                .find(|c| c.session_id.as_deref() == Some(new.as_str()))?;
            s.payloads
                .iter()
                .find(|p| p.conn == conn.id && p.op == Some(3))
                .cloned()
        })
        .await;
    assert_eq!(again.raw, frame1, "the last presence of shard 0, unchanged");

    // A RESUMEd session keeps its presence: nothing is sent again.
    assert!(stack.sim.reconnect(1));
    let resumed: ConnId = stack
        .wait_sim(|s| {
            s.resumes
                .iter()
                .rev()
                .find(|r| matches!(r.outcome, Outcome::Resumed { .. }))
                .map(|r| r.conn)
        })
        .await;
    let after_resume = voice_in(G1, r#""1002""#, "");
    ask_ok(client, on_shard(1), &after_resume).await;
    let marker = arrives(&stack, &after_resume).await;
    assert_eq!(marker.conn, resumed);
    let on_resumed: Vec<Option<u64>> = stack
        .sim
        .payloads()
        .iter()
        .filter(|p| p.conn == resumed && p.op != Some(1))
        .map(|p| p.op)
        .collect();
    assert_eq!(
        on_resumed,
        [Some(6), Some(4)],
        "RESUME, then the marker; no presence"
    );

    burst_is_cut_at_the_budget(&stack, resumed).await;
    stack.stop_bridge().await.expect("clean shutdown");
}

/// 150 presence updates in a tight loop on one connection: the budget
/// outside the heartbeat reserve goes out, the rest is refused with
/// `retry_after_ms`, the simulator never sees more than 120 payloads a
/// minute (it would close 4008), and heartbeats keep their interval.
async fn burst_is_cut_at_the_budget(stack: &Stack, conn: ConnId) {
    let client = &stack.client;
    let p3 = presence("online", "burst");
    let frame3 = format!(r#"{{"op":3,"d":{p3}}}"#);
    let started = tokio::time::Instant::now();
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..150 {
        let reply = ask(client, on_shard(1), frame3.clone()).await;
        match reply.code {
            None => ok += 1,
            Some(Code::RateLimited) => {
                limited += 1;
                let wait = reply
                    .retry_after_ms
                    .expect("rate_limited carries retry_after_ms");
                assert!((1..=60_000).contains(&wait), "{wait}");
                assert!(reply.shards.is_empty());
            }
            other => panic!("burst reply {other:?}: {:?}", reply.error),
        }
    }
    let ended = tokio::time::Instant::now();
    assert_eq!(ok + limited, 150);
    assert!(limited > 0 && ok > 0, "{ok} written, {limited} refused");
    // Every written one reached the connection, and no refused one did.
    let sent = stack
        .wait_sim(|s| {
            let n = s
                .payloads
                .iter()
                .filter(|p| p.conn == conn && p.raw == frame3)
                .count();
            (n == ok).then_some(n)
        })
        .await;
    assert_eq!(sent, ok);
    // Two more heartbeats after the burst, then look at the gaps.
    let beats = stack
        .wait_sim(|s| {
            let beats: Vec<_> = s
                .heartbeats
                .iter()
                .filter(|b| b.conn == conn)
                .map(|b| b.at)
                .collect();
            (beats.iter().filter(|at| **at > ended).count() >= 2).then_some(beats)
        })
        .await;
    let around: Vec<_> = beats
        .iter()
        .filter(|at| **at + HEARTBEAT * 2 >= started)
        .collect();
    for pair in around.windows(2) {
        let gap = pair[1].duration_since(*pair[0]);
        // A heartbeat held back by the rate limit would wait for the
        // window to slide: tens of seconds, not a scheduling hiccup.
        assert!(
            gap < HEARTBEAT * 3,
            "a heartbeat came {gap:?} after the previous one"
        );
    }
    assert!(
        stack.sim.violations().is_empty(),
        "{:#?}",
        stack.sim.violations()
    );
    let record = stack
        .sim
        .connections()
        .into_iter()
        .find(|c| c.id == conn)
        .expect("the connection");
    assert!(
        record.closed.is_none(),
        "the connection stays open: {:?}",
        record.closed
    );
    assert!(
        !stack
            .sim
            .violations()
            .iter()
            .any(|v| matches!(v.violation, Violation::SendRateExceeded { .. })),
    );
}

#[tokio::test]
async fn each_process_answers_for_its_own_shards() {
    let mut stack = Stack::start_with(StackOptions {
        sim: two_shards(),
        ..StackOptions::with(|c| c.discord.shards = ShardSpec::parse("0/2").expect("a shard spec"))
    })
    .await;
    let mut other = bridge_config(&stack.sim, &stack.nats.url());
    other.discord.shards = ShardSpec::parse("1/2").expect("a shard spec");
    let other = stack.spawn_bridge(other);
    stack.wait_session(0).await;
    stack.wait_session(1).await;
    let client = &stack.client;

    // A shard's subject reaches the process that runs it.
    for shard in [0, 1] {
        let frame = format!(
            r#"{{"op":3,"d":{}}}"#,
            presence("dnd", &format!("shard {shard}"))
        );
        assert_eq!(
            ask_ok(client, on_shard(shard), &frame).await.shards,
            [shard]
        );
        assert_eq!(arrives(&stack, &frame).await.shard, Some(shard));
    }
    // On the shared subject, the owner of the guild's shard answers.
    let voice = format!(
        r#"{{"op":4,"d":{{"guild_id":"{G1}","channel_id":null,"self_mute":false,"self_deaf":true}}}}"#
    );
    assert_eq!(ask_ok(client, generic(), &voice).await.shards, [1]);
    assert_eq!(arrives(&stack, &voice).await.shard, Some(1));

    // A presence for every shard: each process updates its own and answers.
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .expect("subscribe the inbox");
    let everywhere = format!(r#"{{"op":3,"d":{}}}"#, presence("online", "everywhere"));
    client
        .publish_with_reply(generic(), inbox, everywhere.clone().into())
        .await
        .expect("publish");
    let mut shards = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(WAIT, replies.next())
            .await
            .expect("a reply from each process")
            .expect("the inbox is open");
        let reply: CommandReply = serde_json::from_slice(&msg.payload).expect("a reply");
        assert!(reply.ok, "{reply:?}");
        shards.extend(reply.shards);
    }
    shards.sort_unstable();
    assert_eq!(shards, [0, 1], "one reply per process, each for its shard");

    // The other process stops: nobody runs shard 1 any more.
    other.stop().await.expect("clean shutdown");
    let explicit = format!(r#"{{"op":3,"d":{},"shard":1}}"#, presence("idle", "nobody"));
    let reply = discord_bridge_e2e::eventually(WAIT, "not_owned for shard 1", || {
        let (client, explicit) = (client.clone(), explicit.clone());
        async move {
            let reply = client.request(generic(), explicit.into()).await.ok()?;
            let reply: CommandReply = serde_json::from_slice(&reply.payload).ok()?;
            (reply.code == Some(Code::NotOwned)).then_some(reply)
        }
    })
    .await;
    assert!(
        reply
            .error
            .as_deref()
            .is_some_and(|e| e.contains("shard 1")),
        "{reply:?}"
    );
    let err = client
        .request(on_shard(1), explicit.into())
        .await
        .expect_err("nobody subscribes shard 1's subject");
    assert_eq!(err.kind(), RequestErrorKind::NoResponders, "{err}");
    assert!(
        stack
            .sim
            .payloads()
            .iter()
            .all(|p| !p.raw.contains("nobody")),
        "nothing was sent for the unowned shard"
    );
    stack.stop_bridge().await.expect("clean shutdown");
}
