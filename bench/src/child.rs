//! The systems under test, each run in a child process of its own so that
//! its CPU time and peak memory are its own: the bridge, the twilight peer
//! and the raw NATS ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{HeaderMap, HeaderValue, Subject};
use discord_bridge::EventHeaders;
use discord_bridge::config::{Config, PublishMode};
use discord_bridge::gateway::machine::{Publish, PublishKind};
use discord_bridge::gateway::normalize::{self, Outcome};
use discord_bridge::gateway::{Intents, ShardId};
use discord_bridge::secret::Secret;
use discord_bridge_schemas::{AgentEventKind, header, subject};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::{ChildArgs, Mode, Target};

/// JetStream acks in flight at once, for the peer and the ceiling: the
/// bridge's default `nats.max_inflight`.
pub(crate) const WINDOW: usize = 1024;

/// Runs one system under test until killed (the ceiling: until done, then
/// prints `cpu_s elapsed_s` on stdout).
pub(crate) async fn run(args: ChildArgs) -> Result<(), String> {
    match args.target {
        Target::Bridge => bridge(args).await,
        Target::Peer => peer(args).await,
        Target::Ceiling => ceiling(args).await,
    }
}

async fn bridge(args: ChildArgs) -> Result<(), String> {
    let mut c = Config::default();
    c.discord.token = Some(Secret::new("sim-token"));
    c.discord.api_base = args.api_base.clone();
    c.discord.allow_insecure_gateway = true;
    c.discord.compression = args.compression.bridge();
    c.nats.urls = vec![args.nats.clone()];
    c.nats.publish = match args.mode {
        Mode::Core => PublishMode::Core,
        Mode::JetStream => PublishMode::JetStream,
    };
    if let Some(n) = args.max_inflight {
        c.nats.max_inflight = n;
    }
    discord_bridge::run(c, CancellationToken::new())
        .await
        .map_err(|e| e.to_string())
}

/// A plain twilight-gateway + async-nats pipeline: every MESSAGE_CREATE and
/// INTERACTION_CREATE normalized into the same agent event JSON and
/// published with the same headers; JetStream acks pipelined.
async fn peer(args: ChildArgs) -> Result<(), String> {
    let client = async_nats::connect(&args.nats)
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client.clone());
    let subject = Subject::from(subject::agent_events(subject::DEFAULT_PREFIX));
    let intents = Intents::default().bits();
    let config = twilight_gateway::ConfigBuilder::new(
        "sim-token".to_owned(),
        twilight_gateway::Intents::from_bits_truncate(intents),
    )
    .proxy_url(args.gateway.clone())
    .build();
    let mut shard = twilight_gateway::Shard::with_config(twilight_gateway::ShardId::ONE, config);
    let mut inflight: FuturesOrdered<Ack> = FuturesOrdered::new();
    let mut session: Arc<str> = Arc::from("");
    loop {
        tokio::select! {
            biased;
            Some(ack) = inflight.next(), if !inflight.is_empty() => {
                let ack: Result<_, jetstream::context::PublishError> = ack;
                if let Err(e) = ack {
                    tracing::warn!(error = %e, "peer: publish not acknowledged");
                }
            }
            item = shard.next(), if inflight.len() < WINDOW => {
                let Some(item) = item else { return Ok(()) };
                let text = match item {
                    Ok(twilight_gateway::Message::Text(text)) => text,
                    Ok(twilight_gateway::Message::Close(_)) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "peer: gateway error");
                        continue;
                    }
                };
                let Some((seq, kind, guild, body)) = peer_event(&text, &mut session)? else {
                    continue;
                };
                let headers = peer_headers(&session, seq, kind, guild.as_deref());
                match args.mode {
                    Mode::Core => {
                        client
                            .publish_with_headers(subject.clone(), headers, body.into())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Mode::JetStream => {
                        let msg = PublishMessage::build().payload(body.into()).headers(headers);
                        let ack = js
                            .send_publish(subject.clone(), msg)
                            .await
                            .map_err(|e| e.to_string())?;
                        inflight.push_back(ack.boxed());
                    }
                }
            }
        }
    }
}

/// The envelope of a gateway payload, `d` left raw.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    t: Option<&'a str>,
    s: Option<u64>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
}

type PeerEvent = (u64, AgentEventKind, Option<String>, Vec<u8>);

/// What a plain pipeline does with one payload: a MESSAGE_CREATE through
/// twilight's typed model, then into the agent event JSON; an
/// INTERACTION_CREATE relayed as sent (a JSON value), like the bridge.
fn peer_event(text: &str, session: &mut Arc<str>) -> Result<Option<PeerEvent>, String> {
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let (Some(t), Some(seq), Some(d)) = (env.t, env.s, env.d) else {
        return Ok(None);
    };
    let json = |e: serde_json::Error| e.to_string();
    match t {
        "READY" => {
            let ready: serde_json::Value = serde_json::from_str(d.get()).map_err(json)?;
            *session = Arc::from(ready["session_id"].as_str().unwrap_or_default());
            Ok(None)
        }
        "MESSAGE_CREATE" => {
            let m: twilight_model::channel::Message =
                serde_json::from_str(d.get()).map_err(json)?;
            let payload = serde_json::json!({
                "id": m.id.to_string(),
                "channel_id": m.channel_id.to_string(),
                "guild_id": m.guild_id.map(|g| g.to_string()),
                "author": {"id": m.author.id.to_string(), "username": m.author.name},
                "content": m.content,
                "timestamp": m.timestamp.iso_8601().to_string(),
                "member": m.member,
                "mentions": m.mentions,
                "attachments": m.attachments,
                "message_reference": m.reference,
            });
            let body = serde_json::to_vec(&serde_json::json!({
                "type": "message", "source": "gateway", "payload": payload,
            }))
            .map_err(json)?;
            let guild = m.guild_id.map(|g| g.to_string());
            Ok(Some((seq, AgentEventKind::Message, guild, body)))
        }
        "INTERACTION_CREATE" => {
            let i: serde_json::Value = serde_json::from_str(d.get()).map_err(json)?;
            let guild = i["guild_id"].as_str().map(str::to_owned);
            let body = serde_json::to_vec(&serde_json::json!({
                "type": "interaction", "source": "gateway", "payload": i,
            }))
            .map_err(json)?;
            Ok(Some((seq, AgentEventKind::Interaction, guild, body)))
        }
        _ => Ok(None),
    }
}

/// The peer's headers, built the plain way (a map and strings per event).
fn peer_headers(session: &str, seq: u64, kind: AgentEventKind, guild: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::MSG_ID, subject::msg_id(session, seq).as_str());
    h.insert(header::SHARD, "0/1");
    h.insert(header::SEQ, HeaderValue::from(seq));
    let event = match kind {
        AgentEventKind::Message => "MESSAGE_CREATE",
        AgentEventKind::Interaction => "INTERACTION_CREATE",
    };
    h.insert(header::EVENT, event);
    h.insert(header::SESSION, session);
    if let Some(g) = guild {
        h.insert(header::GUILD, g);
    }
    h
}

/// Raw async-nats publishing of the payloads the bridge would publish for
/// the same flood: no gateway, no decoding. Core: publish all, then flush;
/// JetStream: per-message acks with the same window as the bridge.
async fn ceiling(args: ChildArgs) -> Result<(), String> {
    let client = async_nats::connect(&args.nats)
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client.clone());
    let subject = Subject::from(subject::agent_events(subject::DEFAULT_PREFIX));
    let sim = discord_gateway_sim::SimConfig::default();
    let events = discord_gateway_sim::flood::busy_bot_mix(&sim, 0, 1, crate::TEMPLATES);
    let bot = sim.bot_user_id.to_string();
    let session: Arc<str> = Arc::from("0123456789abcdef0123456789abcdef");
    let mut prepared = Vec::new();
    for e in events.iter() {
        let d: &RawValue = serde_json::from_str(&e.d).map_err(|x| x.to_string())?;
        if let Ok(Outcome::Relay(n)) = normalize::normalize(&e.t, d, Some(&bot)) {
            prepared.push((n.kind, n.guild_id, bytes::Bytes::from(n.body)));
        } else {
            prepared.push((AgentEventKind::Message, None, bytes::Bytes::new()));
        }
    }
    let mut headers = EventHeaders::new(ShardId::new(0, 1));
    let mut inflight: FuturesOrdered<Ack> = FuturesOrdered::new();
    let cpu0 = crate::procfs::cpu("self");
    let t0 = Instant::now();
    let mut published = 0_u64;
    for n in 0..args.events {
        let i = usize::try_from(n).unwrap_or_default() % prepared.len();
        let (kind, guild, body) = &prepared[i];
        if body.is_empty() {
            continue;
        }
        let meta = Publish {
            epoch: 1,
            session_id: Arc::clone(&session),
            seq: n + 1,
            kind: PublishKind::Agent(*kind),
            guild_id: guild.clone(),
            body: Vec::new(),
        };
        let h = headers.build(&meta).map_err(|e| e.to_string())?;
        published += 1;
        match args.mode {
            Mode::Core => client
                .publish_with_headers(subject.clone(), h, body.clone())
                .await
                .map_err(|e| e.to_string())?,
            Mode::JetStream => {
                if inflight.len() >= WINDOW
                    && let Some(ack) = inflight.next().await
                {
                    let _: jetstream::publish::PublishAck =
                        ack.map_err(|e: jetstream::context::PublishError| e.to_string())?;
                }
                let msg = PublishMessage::build().payload(body.clone()).headers(h);
                let ack = js
                    .send_publish(subject.clone(), msg)
                    .await
                    .map_err(|e| e.to_string())?;
                inflight.push_back(ack.boxed());
            }
        }
    }
    while let Some(ack) = inflight.next().await {
        ack.map_err(|e| e.to_string())?;
    }
    client.flush().await.map_err(|e| e.to_string())?;
    let elapsed = t0.elapsed();
    let cpu = crate::procfs::cpu("self").saturating_sub(cpu0);
    let line = format!(
        "{} {} {published}\n",
        cpu.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    {
        use std::io::Write as _;
        let mut out = std::io::stdout();
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    // Stay until killed, like the others, so the parent reads our memory.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

type Ack = futures_util::future::BoxFuture<
    'static,
    Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
>;

/// The ack of a JetStream publish as one type for the window.
trait Boxed {
    fn boxed(self) -> Ack;
}

impl Boxed for jetstream::context::PublishAckFuture {
    fn boxed(self) -> Ack {
        Box::pin(std::future::IntoFuture::into_future(self))
    }
}
