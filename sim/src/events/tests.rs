//! The builders keep the corpus shapes and fill in fresh values.

use super::*;

fn alice() -> User {
    User::new(1_100_000_000_000_000_001, "alice")
}

#[test]
fn corpus_templates_parse() {
    for (name, text) in [
        ("message", MESSAGE),
        ("guild", GUILD),
        ("interaction", INTERACTION),
        ("typing", TYPING),
        ("presence", PRESENCE),
        ("members", MEMBERS),
    ] {
        let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(value.is_object(), "{name}");
    }
}

#[test]
fn snowflakes_are_fresh_unique_and_increasing() {
    let a = snowflake();
    let b = snowflake();
    assert!(b > a);
    let age = now_ms().abs_diff(snowflake_time_ms(a));
    assert!(age < 60_000, "snowflake time is now: {age} ms off");
    assert_eq!(
        timestamp(1_499_793_627_299),
        "2017-07-11T17:20:27.299000+00:00"
    );
}

#[test]
fn guild_and_direct_messages() {
    let guild = message_create(10, Some(20), &alice(), "hi");
    assert_eq!(guild["guild_id"], "20");
    assert_eq!(guild["channel_id"], "10");
    assert_eq!(guild["content"], "hi");
    assert_eq!(guild["author"]["id"], "1100000000000000001");
    assert!(guild["member"].is_object());
    assert!(guild.get("reactions").is_none());
    let id: u64 = guild["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(guild["timestamp"], timestamp(snowflake_time_ms(id)));

    let dm = message_create(11, None, &alice(), "psst");
    assert!(dm.get("guild_id").is_none());
    assert!(dm.get("member").is_none());
    assert_ne!(dm["id"], guild["id"]);
}

#[test]
fn interactions_in_guilds_and_dms() {
    let options = json!([{"type": 3, "name": "q", "value": "v"}]);
    let g = interaction_create(5, 10, Some(20), &alice(), "ask", options.clone());
    assert_eq!(g["type"], 2);
    assert_eq!(g["application_id"], "5");
    assert_eq!(g["data"]["name"], "ask");
    assert_eq!(g["data"]["options"], options);
    assert_eq!(g["member"]["user"]["username"], "alice");
    assert_eq!(g["guild_id"], "20");
    let again = interaction_create(5, 10, Some(20), &alice(), "ask", json!([]));
    assert_eq!(
        again["data"]["id"], g["data"]["id"],
        "command ids are stable"
    );
    assert_ne!(again["token"], g["token"]);

    let dm = interaction_create(5, 11, None, &alice(), "ask", json!([]));
    assert!(dm.get("guild_id").is_none() && dm.get("member").is_none());
    assert_eq!(dm["user"]["id"], "1100000000000000001");
}

#[test]
fn noise_events() {
    let t = typing_start(10, Some(20), &alice());
    assert_eq!(
        (t["channel_id"].as_str(), t["guild_id"].as_str()),
        (Some("10"), Some("20"))
    );
    assert!(t["timestamp"].is_u64());
    let t = typing_start(10, None, &alice());
    assert!(t.get("guild_id").is_none() && t.get("member").is_none());
    let p = presence_update(20, &alice(), "idle");
    assert_eq!(p["status"], "idle");
    assert!(p.get("game").is_none());
    let g = guild_create(197_038_439_483_310_086);
    assert_eq!(g["id"], "197038439483310086");
    assert_eq!(
        g["channels"][0]["id"],
        general_channel(197_038_439_483_310_086).to_string()
    );
    assert_eq!(g["unavailable"], false);
}

#[test]
fn the_bots_own_user() {
    let bot = User {
        id: 7,
        username: "sim-bot".into(),
        bot: true,
    };
    assert_eq!(bot.to_json()["bot"], true);
    assert!(alice().to_json().get("bot").is_none());
}

#[test]
fn member_chunks_echo_the_nonce_and_filter_user_ids() {
    let chunk = guild_members_chunk(
        7,
        &serde_json::json!({"guild_id": "7", "query": "", "limit": 0, "nonce": "n-1"}),
    );
    assert_eq!(chunk["guild_id"], "7");
    assert_eq!(chunk["nonce"], "n-1");
    assert_eq!(chunk["chunk_count"], 1);
    let members = chunk["members"].as_array().expect("members");
    assert!(!members.is_empty());
    let first = members[0]["user"]["id"].as_str().expect("an id").to_owned();
    let asked =
        serde_json::json!({"guild_id": "7", "user_ids": [first, "1"], "nonce": "x".repeat(33)});
    let chunk = guild_members_chunk(7, &asked);
    assert_eq!(chunk["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(chunk["not_found"], serde_json::json!(["1"]));
    assert!(
        chunk.get("nonce").is_none(),
        "Discord drops a nonce over 32 bytes"
    );
}
