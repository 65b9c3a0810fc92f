//! A three-node nats-server cluster with JetStream, for the tests that kill
//! a node: each node is a [`NatsServer`] with its own store, routes to the
//! other two, and is killed and restarted on its own.

use std::time::Duration;

use super::builder::ClusterNode;
use super::{NatsServer, free_port};

/// How long the cluster may take to elect its JetStream meta leader.
const QUORUM: Duration = Duration::from_secs(30);

/// Three routed servers; see the [module docs](self).
#[derive(Debug)]
#[must_use = "dropping a NatsCluster kills its servers"]
pub struct NatsCluster {
    /// The nodes, `n1`…`n3`.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three nodes and waits until JetStream answers (a meta leader
    /// was elected).
    ///
    /// # Panics
    ///
    /// When a node does not start or no quorum forms (with the logs).
    pub async fn start() -> Self {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut starting = Vec::new();
        for (i, &route_port) in routes.iter().enumerate() {
            let mut builder = NatsServer::builder();
            builder.cluster = Some(ClusterNode {
                server_name: format!("n{}", i + 1),
                cluster_name: "discord-bridge-e2e".to_owned(),
                route_port,
                peer_route_ports: routes
                    .iter()
                    .copied()
                    .filter(|p| *p != route_port)
                    .collect(),
            });
            starting.push(tokio::spawn(builder.start()));
        }
        let mut nodes = Vec::new();
        for node in starting {
            nodes.push(node.await.expect("a cluster node starts"));
        }
        let cluster = Self { nodes };
        let js = cluster.nodes[0].jetstream().await;
        let ready = crate::eventually(QUORUM, "a JetStream meta leader", || {
            let js = js.clone();
            async move { js.query_account().await.ok().map(|_| ()) }
        });
        ready.await;
        cluster
    }

    /// Every node's client URL, comma-separated order kept.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The node whose server name is `name`.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        let index = name
            .strip_prefix('n')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < self.nodes.len())
            .unwrap_or_else(|| panic!("no cluster node named {name}"));
        &mut self.nodes[index]
    }
}
