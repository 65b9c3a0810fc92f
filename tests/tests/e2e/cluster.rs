//! A NATS cluster, not one server: with `nats.stream_replicas = 3` the
//! stream and the KV buckets live on three nodes, and killing the node that
//! leads the stream mid-traffic loses and doubles nothing while the bridge
//! keeps running.

use std::time::Duration;

use discord_bridge_e2e::NatsCluster;
use discord_bridge_e2e::jetstream::{read_stream, wait_for_messages};
use discord_bridge_e2e::stack::{
    CHANNEL_ID, alice, assert_exactly_once, bridge_config, contents, test_sim_config,
};
use discord_gateway_sim::{Simulator, events};
use tokio_util::sync::CancellationToken;

/// A leader election after a node loss takes a few seconds; the rest of the
/// traffic is stored once it is done.
const AFTER_NODE_LOSS: Duration = Duration::from_secs(60);

fn send(sim: &Simulator, text: &str) {
    let guild = sim.config().guilds[0];
    let d = events::message_create(CHANNEL_ID, Some(guild), &alice(), text);
    sim.dispatch_to_guild(Some(guild), "MESSAGE_CREATE", d)
        .unwrap_or_else(|| panic!("no session to dispatch {text:?} on"));
}

async fn connect(urls: &[String]) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().expect("a server address"))
        .collect();
    async_nats::connect(addrs)
        .await
        .expect("a client of the cluster")
}

#[tokio::test]
async fn killing_the_stream_leader_of_an_r3_cluster_loses_and_doubles_nothing() {
    let mut cluster = NatsCluster::start().await;
    let sim = Simulator::start(test_sim_config())
        .await
        .expect("the simulator starts");
    let mut config = bridge_config(&sim, &cluster.urls()[0]);
    config.nats.urls = cluster.urls();
    config.nats.stream_replicas = 3;
    let stream = config.nats.stream.clone();
    let shutdown = CancellationToken::new();
    let bridge = tokio::spawn(discord_bridge::run(config, shutdown.clone()));
    sim.wait_for(Duration::from_secs(30), |s| {
        s.session_of(0).and_then(|sess| sess.attached).map(|_| ())
    })
    .await
    .expect("a gateway session");

    let mut expected = Vec::new();
    for i in 0..50 {
        let m = format!("before the node loss {i}");
        send(&sim, &m);
        expected.push(m);
    }
    let client = connect(&cluster.urls()).await;
    let js = async_nats::jetstream::new(client);
    wait_for_messages(&js, &stream, 50, Duration::from_secs(30)).await;
    let info = js
        .get_stream(&stream)
        .await
        .expect("the stream")
        .info()
        .await
        .expect("its info")
        .clone();
    assert_eq!(
        info.config.num_replicas, 3,
        "the bridge created an R3 stream"
    );
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("the stream has a leader");

    cluster.node(&leader).kill9();
    for i in 0..50 {
        let m = format!("after the node loss {i}");
        send(&sim, &m);
        expected.push(m);
    }
    let survivors: Vec<String> = cluster
        .nodes
        .iter_mut()
        .filter_map(|n| n.is_running().then(|| n.url()))
        .collect();
    let reader = connect(&survivors).await;
    let js = async_nats::jetstream::new(reader);
    // Requests time out while the survivors elect a new stream leader.
    discord_bridge_e2e::eventually(AFTER_NODE_LOSS, "100 messages after the node loss", || {
        let (js, stream) = (js.clone(), stream.clone());
        async move {
            let info = js.get_stream(&stream).await.ok()?.get_info().await.ok()?;
            (info.state.messages >= 100).then_some(())
        }
    })
    .await;
    let stored = read_stream(&js, &stream).await;
    assert_eq!(contents(&stored), expected, "every event once, in order");
    assert_exactly_once(&stored);
    assert!(!bridge.is_finished(), "the bridge keeps running");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), bridge)
        .await
        .expect("the bridge stops")
        .expect("no panic")
        .expect("a clean stop");
}
