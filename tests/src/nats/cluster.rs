//! A three-node nats-server cluster with JetStream, for the tests that kill
//! a node: each node is a [`NatsServer`] with its own store, routes to the
//! other two, and is killed and restarted on its own — or all at once, for
//! an outage of the whole NATS system.

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
        cluster.wait_quorum().await;
        cluster
    }

    /// Waits until JetStream answers through any running node (a meta
    /// leader was elected).
    ///
    /// # Panics
    ///
    /// When it does not within 30 s.
    pub async fn wait_quorum(&self) {
        let client = crate::nats::connect_any(&self.urls()).await;
        let js = async_nats::jetstream::new(client);
        let ready = crate::eventually(QUORUM, "a JetStream meta leader", || {
            let js = js.clone();
            async move { js.query_account().await.ok().map(|_| ()) }
        });
        ready.await;
    }

    /// Kills every running node with SIGKILL at once: NATS is gone as a
    /// whole. Ports and stores are kept for [`restart_all`](Self::restart_all).
    pub fn kill9_all(&mut self) {
        for node in &mut self.nodes {
            if node.is_running() {
                node.kill9();
            }
        }
    }

    /// Starts every stopped node again (on its port, with its store), all
    /// at once so that they find their routes, and waits for a quorum.
    ///
    /// # Panics
    ///
    /// When a node does not come up or no quorum forms (with the logs).
    pub async fn restart_all(&mut self) {
        let stopped = self.nodes.iter_mut().filter_map(|n| {
            let running = n.is_running();
            (!running).then(|| n.restart())
        });
        futures_util::future::join_all(stopped).await;
        self.wait_quorum().await;
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
