//! The envelope decoder, the one-pass MESSAGE_CREATE path and the
//! normalizer, through a live session machine: any frame, no panic.
#![no_main]

use std::time::Instant;

use discord_bridge::gateway::machine::{Input, Machine, MachineConfig};
use discord_bridge::gateway::{ShardId, payload};
use discord_bridge::secret::Secret;
use libfuzzer_sys::fuzz_target;

fn live(now: Instant) -> Machine {
    let mut cfg = MachineConfig::new(
        ShardId::new(0, 1),
        Secret::new("t"),
        "wss://gateway.discord.gg".into(),
    );
    cfg.seed = 1;
    cfg.raw_dispatch = vec!["GUILD_CREATE".into()];
    let mut m = Machine::new(cfg);
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
        Input::Payload(br#"{"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"wss://gateway.discord.gg","user":{"id":"1"}}}"#),
        &mut out,
    );
    m
}

fuzz_target!(|data: &[u8]| {
    let _ = payload::decode(data);
    let now = Instant::now();
    let mut m = live(now);
    let mut out = Vec::new();
    m.handle(now, Input::Payload(data), &mut out);
});
