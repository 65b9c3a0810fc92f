//! The operations endpoint (`http.listen`, the README's Metrics and health
//! probes): `/metrics` parsed as Prometheus text and checked against the
//! traffic, `/readyz` and `discord-bridge healthcheck` against NATS and
//! Discord going away, and the endpoint's start-up errors.

use std::time::Duration;

use discord_bridge::secret::Secret;
use discord_bridge_e2e::scrape::{self, Scrape, free_port};
use discord_bridge_e2e::stack::{Stack, StackOptions, WAIT, test_sim_config};
use discord_bridge_e2e::{ChildProcess, NatsServer, bridge_command, eventually};
use discord_gateway_sim::SimConfig;

const BOT_TOKEN: &str = "MTE0NDA2MDkyNDM0MzY3Mjg5Mw.GQx7Zk.Metrics_b0t-T0ken_8z2x";
const NATS_USER: &str = "bridge-user";
const NATS_PASSWORD: &str = "nats-Pa55word-Metrics-3f9d";

/// Waits until `/readyz` answers `status`; returns its body.
async fn readyz(base: &str, status: u16, what: &str) -> String {
    let url = format!("{base}/readyz");
    eventually(WAIT, format!("/readyz {status} ({what})"), || {
        let url = url.clone();
        async move {
            scrape::get(&url)
                .await
                .filter(|(s, _)| *s == status)
                .map(|(_, body)| body)
        }
    })
    .await
}

/// Waits until a scrape satisfies `ok`; returns it.
async fn scrape_until(base: &str, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually(WAIT, what, || async {
        let s = scrape::metrics(base).await;
        ok(&s).then_some(s)
    })
    .await
}

/// Runs `discord-bridge healthcheck` with the stack's environment and
/// `http.listen`; its exit code and output.
async fn healthcheck(stack: &Stack, listen: &str) -> (Option<i32>, String) {
    let mut check = stack.spawn_binary(&["healthcheck"], &[("BRIDGE_HTTP_LISTEN", listen)]);
    let status = check.wait_exit(Duration::from_secs(10)).await;
    (status.code(), check.output())
}

const UP: &str = "discord_bridge_shard_up";
const PUBLISHED: &str = "discord_bridge_events_published_total";
const RECONNECTS: &str = "discord_bridge_gateway_reconnects_total";

/// One bridge through a whole life: ready, traffic, a forced reconnect,
/// NATS away and back, Discord away.
#[tokio::test]
async fn metrics_and_readiness_follow_the_traffic_nats_and_discord() {
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let addr = listen.parse().expect("an address");
    let mut stack = Stack::start_with(StackOptions {
        sim: SimConfig {
            token: BOT_TOKEN.to_owned(),
            ..test_sim_config()
        },
        nats: NatsServer::builder().user_password(NATS_USER, NATS_PASSWORD),
        tweak: Box::new(move |c| {
            c.http.listen = Some(addr);
            c.nats.user = Some(NATS_USER.to_owned());
            c.nats.password = Some(Secret::new(NATS_PASSWORD));
        }),
    })
    .await;
    let session = stack.wait_session(0).await;

    let body = readyz(&base, 200, "connected").await;
    assert_eq!(body, "ready: 1 shard connected; nats connected\n");
    let (code, output) = healthcheck(&stack, &listen).await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("ready: 1 shard connected"), "{output}");
    let (status, body) = scrape::get(&format!("{base}/healthz"))
        .await
        .expect("an answer");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let s = scrape::metrics(&base).await;
    assert_eq!(s.types.get(UP).map(String::as_str), Some("gauge"));
    assert_eq!(s.types.get(PUBLISHED).map(String::as_str), Some("counter"));
    assert_eq!(s.expect(UP, &[("shard", "0")]), 1.0);
    assert_eq!(
        s.expect("discord_bridge_shard_owned", &[("shard", "0")]),
        1.0
    );
    assert_eq!(s.expect("discord_bridge_nats_connected", &[]), 1.0);
    assert_eq!(s.expect("discord_bridge_identifies_total", &[]), 1.0);
    assert!(s.expect("discord_bridge_session_starts_remaining", &[]) > 0.0);
    let agent = [("shard", "0"), ("kind", "agent")];
    let before = s.expect(PUBLISHED, &agent);

    // N dispatches: +N published, each acknowledged by JetStream.
    for i in 0..3 {
        stack.guild_message(&format!("m{i}"));
    }
    stack.wait_stored(3).await;
    let s = scrape_until(&base, "3 more published", |s| {
        s.value(PUBLISHED, &agent) == Some(before + 3.0)
    })
    .await;
    let acks = s.expect(
        "discord_bridge_publish_ack_seconds_count",
        &[("shard", "0")],
    );
    assert!(acks >= 3.0, "{}", s.text);
    assert_eq!(
        s.expect(
            "discord_bridge_publish_ack_seconds_bucket",
            &[("shard", "0"), ("le", "+Inf")]
        ),
        acks
    );
    assert_eq!(s.expect(PUBLISHED, &[("shard", "0"), ("kind", "raw")]), 0.0);
    assert_eq!(
        s.expect("discord_bridge_buffered_events", &[("shard", "0")]),
        0.0
    );

    // A forced reconnect is counted under its reason; the shard is up again.
    let requested = [("shard", "0"), ("reason", "reconnect_requested")];
    let reconnects = s.expect(RECONNECTS, &requested);
    assert!(stack.sim.reconnect(0));
    let s = scrape_until(&base, "a reconnect_requested reconnect, resumed", |s| {
        s.value(RECONNECTS, &requested) == Some(reconnects + 1.0)
            && s.value(UP, &[("shard", "0")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        s.expect("discord_bridge_resumes_total", &[("shard", "0")]),
        1.0
    );
    assert_eq!(s.expect("discord_bridge_identifies_total", &[]), 1.0);
    readyz(&base, 200, "resumed").await;

    // Nothing secret, and no session id, in any series.
    for secret in [BOT_TOKEN, NATS_PASSWORD, session.as_str()] {
        assert!(
            !s.text.contains(secret),
            "{secret:?} in /metrics:\n{}",
            s.text
        );
    }

    // NATS away: not ready, and the healthcheck says why.
    stack.nats.stop().await;
    let body = readyz(&base, 503, "NATS stopped").await;
    assert_eq!(body, "nats: disconnected\n");
    let (code, output) = healthcheck(&stack, &listen).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("nats: disconnected"), "{output}");
    let s = scrape::metrics(&base).await;
    assert_eq!(s.expect("discord_bridge_nats_connected", &[]), 0.0);
    stack.nats.restart().await;
    readyz(&base, 200, "NATS back").await;
    scrape_until(&base, "a second NATS connection", |s| {
        s.value("discord_bridge_nats_connects_total", &[]) == Some(2.0)
    })
    .await;

    // Discord away: the shard cannot connect; it is down and named.
    stack.sim.shutdown().await;
    let body = readyz(&base, 503, "the simulator stopped").await;
    assert!(body.starts_with("shard 0: "), "{body}");
    let s = scrape_until(&base, "shard 0 down", |s| {
        s.value(UP, &[("shard", "0")]) == Some(0.0)
    })
    .await;
    assert_eq!(
        s.expect("discord_bridge_shard_owned", &[("shard", "0")]),
        1.0
    );
    let (code, output) = healthcheck(&stack, &listen).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("shard 0: "), "{output}");

    stack.stop_bridge().await.expect("a clean stop");
    assert!(
        scrape::get(&format!("{base}/healthz")).await.is_none(),
        "the endpoint stops with the bridge"
    );
}

/// The endpoint's settings fail clearly: a value that is not an address is
/// a configuration error (2) naming the key; an address in use is a runtime
/// error (1) naming the address, before NATS is even tried; `healthcheck`
/// with nothing to ask is 2.
#[tokio::test]
async fn http_listen_errors_name_the_key_or_the_address() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = bridge_command();
        command
            .current_dir(dir.path())
            .args(args)
            .envs(env.iter().copied());
        ChildProcess::spawn(&mut command)
    };
    let token = ("DISCORD_BOT_TOKEN", BOT_TOKEN);
    let nowhere = format!("nats://127.0.0.1:{}", free_port());

    let mut bad = run(&[], &[token, ("BRIDGE_HTTP_LISTEN", "localhost:9090")]);
    let status = bad.wait_exit(Duration::from_secs(10)).await;
    let output = bad.output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("http.listen (BRIDGE_HTTP_LISTEN)"),
        "{output}"
    );
    assert!(output.contains("127.0.0.1:9090"), "a suggestion: {output}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut busy = run(
        &[],
        &[token, ("NATS_URL", &nowhere), ("BRIDGE_HTTP_LISTEN", &addr)],
    );
    let status = busy.wait_exit(Duration::from_secs(10)).await;
    let output = busy.output();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("cannot listen on {addr}")),
        "{output}"
    );
    assert!(!output.contains(BOT_TOKEN), "{output}");
    drop(taken);

    let mut nothing = run(&["healthcheck"], &[]);
    let status = nothing.wait_exit(Duration::from_secs(10)).await;
    let output = nothing.output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("--url"), "{output}");
    let free = format!("http://127.0.0.1:{}/readyz", free_port());
    let mut refused = run(&["healthcheck", "--url", &free], &[]);
    let status = refused.wait_exit(Duration::from_secs(10)).await;
    let output = refused.output();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("no answer from"), "{output}");
}
