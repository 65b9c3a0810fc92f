//! `/metrics`: the Prometheus text exposition (format 0.0.4) of one
//! [`Reading`] of the process.
//!
//! Nothing is counted here. Every number is read at scrape time from the
//! state its owner keeps (the shard reports' atomics, the NATS client, the
//! identify queue), handed to `prometheus-client`'s encoder through a
//! [`Collector`], and rendered. The names are a contract (dashboards and
//! alerts depend on them) and the README's metrics table lists them all.
//!
//! Labels carry only shard ids, fixed words (`kind`, `reason`) and the
//! version: never a token, a session id, a URL or anything a user wrote.
//!
//! Gateway commands (`discord_bridge_commands_total{op,result}`) are read
//! here like the rest, from the counters the command listener owns.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::observe::Reading;
use super::reports::ShardMetrics;
use crate::gateway::machine::EndReason;
use crate::health::{NatsLink, shard_label};

/// The `Content-Type` of the exposition.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The exposition of `reading`.
///
/// # Errors
/// Only if formatting fails, which writing to a `String` does not.
pub(crate) fn render(reading: Reading) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(reading)));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// One scrape's reading, as a collector.
#[derive(Debug)]
struct Scrape(Reading);

type Shard<'a> = &'a ShardMetrics;

/// One sample's value: whole numbers print as such (`7`, not `7.0`).
#[derive(Debug, Clone, Copy)]
enum N {
    Int(u64),
    Float(f64),
}

/// A count as a value.
fn int(n: impl TryInto<u64>) -> N {
    N::Int(n.try_into().unwrap_or(u64::MAX))
}

fn flag(on: bool) -> N {
    N::Int(u64::from(on))
}

/// Writes one sample of a counter or a gauge.
fn write(
    m: &mut prometheus_client::encoding::MetricEncoder<'_>,
    kind: MetricType,
    v: N,
) -> fmt::Result {
    match (kind, v) {
        (MetricType::Counter, N::Int(n)) => m.encode_counter::<NoLabelSet, _, u64>(&n, None),
        (MetricType::Counter, N::Float(x)) => m.encode_counter::<NoLabelSet, _, f64>(&x, None),
        (_, N::Int(n)) => m.encode_gauge(&n),
        (_, N::Float(x)) => m.encode_gauge(&x),
    }
}

/// A family of counters or gauges: its name (counters without `_total`,
/// which the encoder appends), help, type and samples.
fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, N)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        write(&mut m.encode_family(&labels)?, kind, value)?;
    }
    Ok(())
}

/// A family without labels: one sample.
fn single(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    value: N,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    write(&mut m, kind, value)
}

/// Per-shard samples of one number.
fn per_shard<'a>(
    shards: &'a [ShardMetrics],
    value: impl Fn(Shard<'a>) -> Option<N> + 'a,
) -> impl Iterator<Item = ([(&'static str, String); 1], N)> + 'a {
    shards
        .iter()
        .filter_map(move |s| value(s).map(|v| ([("shard", shard_label(s.health.shard))], v)))
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let r = &self.0;
        let shards = &r.shards;
        let e = &mut enc;
        use MetricType::{Counter, Gauge};

        family(
            e,
            "discord_bridge_build_info",
            "The running version (always 1)",
            Gauge,
            [([("version", env!("CARGO_PKG_VERSION"))], N::Int(1))],
        )?;
        family(
            e,
            "discord_bridge_shard_up",
            "1 while this process runs the shard and it is connected to Discord (READY or RESUMED), else 0",
            Gauge,
            per_shard(shards, |s| Some(flag(s.health.is_up()))),
        )?;
        family(
            e,
            "discord_bridge_shard_owned",
            "1 while this process runs the shard (holds its lease, or runs it uncoordinated), else 0",
            Gauge,
            per_shard(shards, |s| Some(flag(s.health.running))),
        )?;
        family(
            e,
            "discord_bridge_events_published",
            "Events published: kind=agent stored in JetStream (acked) or sent on core NATS, kind=raw sent on the raw firehose",
            Counter,
            shards.iter().flat_map(|s| {
                let shard = shard_label(s.health.shard);
                [
                    (
                        [("shard", shard.clone()), ("kind", "agent".to_owned())],
                        int(s.published),
                    ),
                    (
                        [("shard", shard), ("kind", "raw".to_owned())],
                        int(s.raw_published),
                    ),
                ]
            }),
        )?;
        family(
            e,
            "discord_bridge_gateway_reconnects",
            "Gateway connections that ended and were reconnected, by reason",
            Counter,
            shards.iter().flat_map(|s| {
                let shard = shard_label(s.health.shard);
                EndReason::ALL.into_iter().map(move |reason| {
                    (
                        [
                            ("shard", shard.clone()),
                            ("reason", reason.as_str().to_owned()),
                        ],
                        int(s.stats.reconnects.get(reason)),
                    )
                })
            }),
        )?;
        family(
            e,
            "discord_bridge_heartbeat_rtt_seconds",
            "Time from the last heartbeat to its ACK (absent until the first ACK)",
            Gauge,
            per_shard(shards, |s| {
                s.heartbeat_rtt.map(|d| N::Float(d.as_secs_f64()))
            }),
        )?;
        family(
            e,
            "discord_bridge_buffered_events",
            "Events waiting for NATS (sent or not, not yet acknowledged)",
            Gauge,
            per_shard(shards, |s| Some(int(s.buffered))),
        )?;
        family(
            e,
            "discord_bridge_buffered_bytes",
            "Bytes of the events waiting for NATS",
            Gauge,
            per_shard(shards, |s| Some(int(s.buffered_bytes))),
        )?;
        let (limit_events, limit_bytes) = r.buffer_limits;
        single(
            e,
            "discord_bridge_buffer_limit_events",
            "Events a shard buffers at most (nats.buffer_events); a full buffer pauses reading the gateway",
            Gauge,
            int(limit_events),
        )?;
        single(
            e,
            "discord_bridge_buffer_limit_bytes",
            "Bytes a shard buffers at most (nats.buffer_bytes)",
            Gauge,
            int(limit_bytes),
        )?;
        family(
            e,
            "discord_bridge_read_pauses",
            "Times the shard stopped reading the gateway because its buffer was full (back-pressure, no reconnect)",
            Counter,
            per_shard(shards, |s| Some(int(s.stats.read_pauses))),
        )?;
        family(
            e,
            "discord_bridge_publish_errors",
            "Publishes to NATS that failed or timed out (each is retried in order)",
            Counter,
            per_shard(shards, |s| Some(int(s.publish_errors))),
        )?;
        {
            let mut m = e.encode_descriptor(
                "discord_bridge_publish_ack_seconds",
                "Time from a JetStream publish to its acknowledgement",
                None,
                MetricType::Histogram,
            )?;
            for s in shards {
                let h = &s.ack_latency;
                m.encode_family(&[("shard", shard_label(s.health.shard))])?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
            }
        }
        let total = |f: fn(Shard<'_>) -> u64| int(shards.iter().map(f).sum::<u64>());
        family(
            e,
            "discord_bridge_events_dropped",
            "Events or frames not relayed, by reason: malformed, oversized (over discord.max_frame_bytes), \
             unknown_opcode, too_large (over the NATS server's max_payload), bad_header, lost (session \
             invalidated before they were stored), core_queue_full (status and raw firehose messages)",
            Counter,
            [
                ("malformed", total(|s| s.stats.malformed)),
                ("oversized", total(|s| s.stats.oversized)),
                ("unknown_opcode", total(|s| s.stats.unknown_opcodes)),
                ("too_large", total(|s| s.too_large)),
                ("bad_header", total(|s| s.bad_headers)),
                ("lost", total(|s| s.stats.lost)),
                ("core_queue_full", int(r.core_drops)),
            ]
            .map(|(reason, n)| ([("reason", reason)], n)),
        )?;
        family(
            e,
            "discord_bridge_one_pass_messages",
            "MESSAGE_CREATE dispatches decoded by the one-pass path (Discord's key order); the rest took the general path",
            Counter,
            per_shard(shards, |s| Some(int(s.stats.one_pass_messages))),
        )?;
        family(
            e,
            "discord_bridge_resumes",
            "RESUMEs sent",
            Counter,
            per_shard(shards, |s| Some(int(s.stats.resumes))),
        )?;
        single(
            e,
            "discord_bridge_identifies",
            "IDENTIFYs sent by this process (each spends a session start)",
            Counter,
            total(|s| s.stats.identifies),
        )?;
        family(
            e,
            "discord_bridge_commands",
            "Gateway commands answered, by op (3, 4, 8, 31, other) and result (ok or the reply's error code)",
            Counter,
            r.commands
                .iter()
                .map(|(op, result, n)| ([("op", *op), ("result", *result)], int(*n))),
        )?;
        if let Some(n) = r.session_starts_remaining {
            single(
                e,
                "discord_bridge_session_starts_remaining",
                "Session starts left until Discord's limit resets, as last seen (shared by the bot's processes through NATS KV)",
                Gauge,
                int(n),
            )?;
        }
        single(
            e,
            "discord_bridge_nats_connected",
            "1 while the NATS connection is up, else 0",
            Gauge,
            flag(r.nats == NatsLink::Connected),
        )?;
        if let Some(n) = r.nats_connects {
            single(
                e,
                "discord_bridge_nats_connects",
                "NATS connections established (the first one and every reconnect)",
                Counter,
                int(n),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use discord_bridge_schemas::ShardState;

    use super::*;
    use crate::gateway::ShardId;
    use crate::gateway::machine::Stats;
    use crate::health::ShardHealth;
    use crate::io::histogram::Histogram;

    fn shard(id: u32, state: ShardState) -> ShardMetrics {
        let mut stats = Stats {
            malformed: 2,
            identifies: 1,
            ..Stats::default()
        };
        stats.reconnects.add(EndReason::ReconnectRequested);
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        ShardMetrics {
            health: ShardHealth {
                shard: ShardId::new(id, 2),
                running: true,
                state: Some(state),
                last_reason: None,
                last_close: None,
            },
            stats,
            heartbeat_rtt: Some(Duration::from_millis(42)),
            buffered: 3,
            buffered_bytes: 300,
            published: 7,
            raw_published: 0,
            publish_errors: 1,
            too_large: 0,
            bad_headers: 0,
            ack_latency: h.snapshot(),
        }
    }

    fn reading() -> Reading {
        Reading {
            nats: NatsLink::Connected,
            nats_connects: Some(1),
            shards: vec![
                shard(0, ShardState::Connected),
                shard(1, ShardState::Backoff),
            ],
            session_starts_remaining: Some(998),
            core_drops: 0,
            commands: vec![("3", "ok", 5), ("8", "not_owned", 1)],
            buffer_limits: (10_000, 64 << 20),
        }
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn the_contract_series_render_with_their_labels() {
        let text = render(reading()).unwrap();
        for (series, value) in [
            ("discord_bridge_shard_up{shard=\"0\"}", "1"),
            ("discord_bridge_shard_up{shard=\"1\"}", "0"),
            (
                "discord_bridge_events_published_total{shard=\"0\",kind=\"agent\"}",
                "7",
            ),
            (
                "discord_bridge_gateway_reconnects_total{shard=\"1\",reason=\"reconnect_requested\"}",
                "1",
            ),
            (
                "discord_bridge_gateway_reconnects_total{shard=\"1\",reason=\"zombie_connection\"}",
                "0",
            ),
            ("discord_bridge_heartbeat_rtt_seconds{shard=\"0\"}", "0.042"),
            ("discord_bridge_buffered_events{shard=\"0\"}", "3"),
            (
                "discord_bridge_events_dropped_total{reason=\"malformed\"}",
                "4",
            ),
            ("discord_bridge_identifies_total", "2"),
            ("discord_bridge_commands_total{op=\"3\",result=\"ok\"}", "5"),
            (
                "discord_bridge_commands_total{op=\"8\",result=\"not_owned\"}",
                "1",
            ),
            ("discord_bridge_session_starts_remaining", "998"),
            ("discord_bridge_nats_connected", "1"),
            (
                "discord_bridge_publish_ack_seconds_bucket{shard=\"0\",le=\"0.0025\"}",
                "0",
            ),
            (
                "discord_bridge_publish_ack_seconds_bucket{shard=\"0\",le=\"0.005\"}",
                "1",
            ),
            (
                "discord_bridge_publish_ack_seconds_bucket{shard=\"0\",le=\"+Inf\"}",
                "1",
            ),
            ("discord_bridge_publish_ack_seconds_count{shard=\"0\"}", "1"),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE discord_bridge_events_published_total counter"));
        assert!(text.contains("# TYPE discord_bridge_shard_up gauge"));
        assert!(text.contains("# TYPE discord_bridge_publish_ack_seconds histogram"));
    }

    #[test]
    fn unknown_values_are_left_out() {
        let mut r = reading();
        r.session_starts_remaining = None;
        r.nats_connects = None;
        r.nats = NatsLink::Connecting;
        r.shards[0].heartbeat_rtt = None;
        let text = render(r).unwrap();
        assert!(!text.contains("discord_bridge_session_starts_remaining "));
        assert!(!text.contains("discord_bridge_heartbeat_rtt_seconds{shard=\"0\"}"));
        assert!(text.contains("discord_bridge_heartbeat_rtt_seconds{shard=\"1\"}"));
        assert_eq!(sample(&text, "discord_bridge_nats_connected"), Some("0"));
    }
}
