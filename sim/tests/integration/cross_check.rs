//! The simulator and the bridge each read Discord's documentation on their
//! own; these tests check that the two readings agree, so that a
//! misunderstanding on either side fails here instead of passing unnoticed
//! in every end-to-end test.

use discord_bridge::codec::{Decoder, Frame};
use discord_gateway_sim::compress::{ZlibEncoder, ZstdEncoder};
use discord_gateway_sim::{Compression, events, intents, shard_for_guild};

#[test]
fn both_shard_formulas_agree_on_many_guilds() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let edges = [0, 1, (1 << 22) - 1, 1 << 22, u64::MAX, u64::MAX >> 22];
    let guilds = edges
        .into_iter()
        .chain(discord_gateway_sim::config::DEFAULT_GUILDS)
        .chain((0..20_000).map(|_| rng.u64(..)))
        .chain((0..1_000).map(|_| events::snowflake()));
    for guild in guilds {
        for total in [0, 1, 2, 3, 7, 16, 100, 1_000, u32::MAX] {
            assert_eq!(
                shard_for_guild(guild, total),
                discord_bridge::gateway::shard::shard_for_guild(guild, total),
                "guild {guild}, {total} shards"
            );
        }
    }
}

#[test]
fn both_intent_tables_agree() {
    use discord_bridge::gateway::intents as bridge;
    assert_eq!(intents::KNOWN_BITS, bridge::KNOWN_BITS);
    assert_eq!(intents::PRIVILEGED, bridge::PRIVILEGED);
    for (name, bit) in intents::INTENTS {
        assert_eq!(
            discord_bridge::gateway::Intents::parse(name),
            Ok(discord_bridge::gateway::Intents(bit)),
            "{name}"
        );
    }
}

#[test]
fn both_spell_the_compress_query_the_same() {
    use discord_bridge::codec::Compression as Bridge;
    for (sim, bridge) in [
        (Compression::None, Bridge::None),
        (Compression::ZlibStream, Bridge::ZlibStream),
        (Compression::ZstdStream, Bridge::ZstdStream),
    ] {
        assert_eq!(sim.query_value(), bridge.query_value());
    }
}

/// Payloads of every size class: tiny, typical, and larger than the bridge's
/// initial buffers.
fn payloads() -> Vec<Vec<u8>> {
    let alice = events::User::new(events::snowflake(), "alice");
    let message = events::message_create(1, Some(2), &alice, "hello 🎉");
    let guild = events::guild_create(197_038_439_483_310_086);
    let big = format!(r#"{{"op":0,"d":"{}"}}"#, "0123456789abcdef".repeat(200_000));
    vec![
        br#"{"op":10,"d":{"heartbeat_interval":41250}}"#.to_vec(),
        message.to_string().into_bytes(),
        guild.to_string().into_bytes(),
        big.into_bytes(),
        br#"{"op":11,"d":null}"#.to_vec(),
        b"{}".to_vec(),
    ]
}

fn decode_all(compression: Compression, messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let codec = match compression {
        Compression::None => discord_bridge::codec::Compression::None,
        Compression::ZlibStream => discord_bridge::codec::Compression::ZlibStream,
        Compression::ZstdStream => discord_bridge::codec::Compression::ZstdStream,
    };
    let mut decoder = Decoder::new(codec, 16 << 20).expect("decoder");
    messages
        .iter()
        .map(|m| match decoder.binary(m) {
            Ok(Some(Frame::Payload(p))) => p.to_vec(),
            other => panic!("{compression}: {other:?}"),
        })
        .collect()
}

#[test]
fn the_bridge_inflates_the_simulators_zlib_stream() {
    let mut enc = ZlibEncoder::new();
    let sent = payloads();
    let wire: Vec<Vec<u8>> = sent.iter().map(|p| enc.encode(p)).collect();
    assert!(
        wire.iter()
            .all(|m| m.ends_with(&discord_bridge::codec::SYNC_FLUSH))
    );
    assert_eq!(decode_all(Compression::ZlibStream, &wire), sent);
}

#[test]
fn the_bridge_decodes_the_simulators_zstd_stream() {
    let mut enc = ZstdEncoder::new().expect("zstd");
    let sent = payloads();
    let wire: Vec<Vec<u8>> = sent
        .iter()
        .map(|p| enc.encode(p).expect("encode"))
        .collect();
    assert_eq!(decode_all(Compression::ZstdStream, &wire), sent);
}
