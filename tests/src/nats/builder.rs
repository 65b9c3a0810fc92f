//! Options of a test `nats-server` and the configuration file they become.

use std::fmt::Write as _;
use std::path::Path;

use super::NatsServer;
use super::jwt::Operator;
use crate::tls::CertFiles;

/// How clients authenticate to the server.
#[derive(Debug, Clone, Default)]
pub(super) enum Auth {
    #[default]
    None,
    Token(String),
    /// An `authorization { users = [...] }` list: a user with a password,
    /// nkey users, or both.
    Users {
        password: Option<(String, String)>,
        /// The seeds of the nkey users (the server lists their public keys).
        nkeys: Vec<String>,
    },
    /// Operator mode: only users whose JWT an account of the operator signed.
    Operator(std::sync::Arc<Operator>),
}

/// TLS of the client port (and of the WebSocket port, when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// Plain TCP.
    Off,
    /// TLS required, any client.
    On,
    /// TLS required, and a client certificate the test CA signed.
    Mutual,
}

/// Options for [`NatsServer`]; start with [`NatsServer::builder`].
///
/// Options without a command-line flag (`max_payload`) need a configuration
/// file, so every server gets one, generated into its temporary directory.
#[derive(Debug, Clone)]
#[must_use]
pub struct NatsServerBuilder {
    pub(super) jetstream: bool,
    pub(super) max_payload: Option<usize>,
    pub(super) auth: Auth,
    pub(super) cluster: Option<ClusterNode>,
    pub(super) tls: TlsMode,
    pub(super) websocket: bool,
    pub(super) port: Option<u16>,
}

/// This server's place in a cluster (see [`super::NatsCluster`]).
#[derive(Debug, Clone)]
pub(super) struct ClusterNode {
    pub(super) server_name: String,
    pub(super) cluster_name: String,
    pub(super) route_port: u16,
    pub(super) peer_route_ports: Vec<u16>,
}

/// The files and ports a configuration refers to, known only at launch.
pub(super) struct Placement<'a> {
    pub(super) store_dir: &'a Path,
    pub(super) server_cert: Option<&'a CertFiles>,
    pub(super) ca: Option<&'a Path>,
    pub(super) websocket_port: Option<u16>,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            jetstream: true,
            max_payload: None,
            auth: Auth::None,
            cluster: None,
            tls: TlsMode::Off,
            websocket: false,
            port: None,
        }
    }
}

impl NatsServerBuilder {
    /// A plain core-NATS server: JetStream API requests get no responder,
    /// as with a server an operator started without `-js`.
    pub fn without_jetstream(mut self) -> Self {
        self.jetstream = false;
        self
    }

    /// The largest message payload the server accepts (`max_payload`), in
    /// bytes; clients learn it from the server's INFO.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Require this token from every client; [`NatsServer::client`] sends it.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Require this user and password (or, with [`nkey_user`](Self::nkey_user)
    /// too, one of the users); [`NatsServer::client`] sends them.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        let entry = Some((user.into(), password.into()));
        match &mut self.auth {
            Auth::Users { password, .. } => *password = entry,
            other => {
                *other = Auth::Users {
                    password: entry,
                    nkeys: Vec::new(),
                };
            }
        }
        self
    }

    /// Accept the nkey user whose seed (`SU...`) this is, besides the other
    /// users of the list; the configuration lists its public key.
    pub fn nkey_user(mut self, seed: impl Into<String>) -> Self {
        let seed = seed.into();
        match &mut self.auth {
            Auth::Users { nkeys, .. } => nkeys.push(seed),
            other => {
                *other = Auth::Users {
                    password: None,
                    nkeys: vec![seed],
                };
            }
        }
        self
    }

    /// Operator mode (decentralized JWT authentication) with a memory
    /// resolver preloaded with the operator's accounts. JetStream runs in
    /// the operator's JetStream account; [`NatsServer::client`] connects as
    /// a user of it.
    pub fn operator(mut self, operator: Operator) -> Self {
        self.auth = Auth::Operator(std::sync::Arc::new(operator));
        self
    }

    /// TLS required on every connection: the server generates a CA and a
    /// certificate for 127.0.0.1 (see [`NatsServer::ca_file`]).
    pub fn tls(mut self) -> Self {
        self.tls = TlsMode::On;
        self
    }

    /// Like [`tls`](Self::tls), and clients must present a certificate the
    /// CA signed (`verify: true`); one is made for them
    /// ([`NatsServer::client_cert`]).
    pub fn mutual_tls(mut self) -> Self {
        self.tls = TlsMode::Mutual;
        self
    }

    /// A WebSocket listener besides the client port ([`NatsServer::ws_url`]):
    /// `ws://` on a plain server, `wss://` with the server's certificate
    /// after [`tls`](Self::tls).
    pub fn websocket(mut self) -> Self {
        self.websocket = true;
        self
    }

    /// Listen on this client port instead of a free one: for tests of a
    /// client that was told the address before the server existed.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the server and waits until it is ready.
    ///
    /// # Panics
    ///
    /// When `nats-server` is not installed or does not come up (with its log).
    pub async fn start(self) -> NatsServer {
        NatsServer::launch_new(self).await
    }

    /// The server configuration file. Host and client port stay on the
    /// command line so a restart never rewrites it.
    pub(super) fn config_file(&self, at: &Placement<'_>) -> String {
        let mut config = String::from("# generated by discord-bridge-e2e for one test\n");
        if let Some(bytes) = self.max_payload {
            let _ = writeln!(config, "max_payload: {bytes}");
        }
        match &self.auth {
            Auth::None => {}
            Auth::Token(token) => {
                let _ = writeln!(config, "authorization {{ token: {} }}", quoted(token));
            }
            Auth::Users { password, nkeys } => {
                let mut users = Vec::new();
                if let Some((user, password)) = password {
                    users.push(format!(
                        "{{ user: {}, password: {} }}",
                        quoted(user),
                        quoted(password)
                    ));
                }
                for seed in nkeys {
                    let public = nkeys::KeyPair::from_seed(seed)
                        .expect("nkey_user() takes a valid user seed")
                        .public_key();
                    users.push(format!("{{ nkey: {} }}", quoted(&public)));
                }
                let _ = writeln!(
                    config,
                    "authorization {{ users = [ {} ] }}",
                    users.join(", ")
                );
            }
            Auth::Operator(operator) => config.push_str(&operator.server_config()),
        }
        let tls_block = at.server_cert.map(|cert| {
            let mut block = format!(
                "cert_file: {}, key_file: {}",
                quoted(&cert.cert.to_string_lossy()),
                quoted(&cert.key.to_string_lossy())
            );
            if self.tls == TlsMode::Mutual
                && let Some(ca) = at.ca
            {
                let _ = write!(
                    block,
                    ", ca_file: {}, verify: true",
                    quoted(&ca.to_string_lossy())
                );
            }
            block
        });
        if let Some(block) = &tls_block {
            let _ = writeln!(config, "tls {{ {block} }}");
        }
        if let Some(port) = at.websocket_port {
            let transport = match &tls_block {
                Some(block) => format!("tls {{ {block} }}"),
                None => "no_tls: true".to_owned(),
            };
            let _ = writeln!(
                config,
                "websocket {{ host: \"127.0.0.1\", port: {port}, {transport} }}"
            );
        }
        if let Some(node) = &self.cluster {
            let routes: Vec<String> = node
                .peer_route_ports
                .iter()
                .map(|p| quoted(&format!("nats-route://127.0.0.1:{p}")))
                .collect();
            let _ = writeln!(config, "server_name: {}", quoted(&node.server_name));
            let _ = writeln!(
                config,
                "cluster {{ name: {}, listen: {}, routes: [{}] }}",
                quoted(&node.cluster_name),
                quoted(&format!("127.0.0.1:{}", node.route_port)),
                routes.join(", ")
            );
        }
        if self.jetstream {
            let store = at.store_dir.to_string_lossy();
            let _ = writeln!(config, "jetstream {{ store_dir: {} }}", quoted(&store));
        }
        config
    }
}

/// A double-quoted configuration string: the NATS config lexer accepts the
/// same escapes as JSON (`\"`, `\\`, `\uXXXX`).
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}
