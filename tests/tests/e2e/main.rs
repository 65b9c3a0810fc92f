//! The end-to-end tests, in one binary (linking one binary per file
//! dominated the test time): a real `nats-server` per test, the gateway
//! simulator, the bridge in process or as the real binary. One module per
//! behaviour, so test names read `happy_path::…`, `signals::…`.

mod chaos;
mod close_codes;
mod cluster;
mod commands;
mod continuity;
mod demo;
mod discord_tls;
mod discovery;
mod docs;
mod durability;
mod fatal_codes;
mod flood;
mod happy_path;
mod harness;
mod invalid_session;
mod layout;
mod logs;
mod malformed;
mod metrics;
mod nats_auth;
mod nats_url;
mod oversized;
mod publish_mode;
mod reconnect;
mod resume_fallback;
mod secrets;
mod sharding;
mod signals;
mod status_service;
mod supervision;
mod untrusted;
mod zombie;
