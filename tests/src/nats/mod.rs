//! A real `nats-server` per test.
//!
//! Each [`NatsServer`] owns a child process listening on 127.0.0.1 at a free
//! port, with a temporary directory holding its JetStream store, generated
//! configuration and log. Dropping it kills and reaps the process (also when
//! the test panics) and deletes the directory, so no server outlives its test
//! and parallel tests never share state.
//!
//! The server can be killed ([`NatsServer::kill9`]) or stopped
//! ([`NatsServer::stop`]) and started again on the same port and store
//! ([`NatsServer::restart`]): that is how tests exercise a NATS outage.

mod binary;
mod builder;
mod cluster;
pub mod jwt;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::ConnectOptions;
use tempfile::TempDir;

pub use binary::nats_server_bin;
pub use builder::NatsServerBuilder;
use builder::{Auth, Placement, TlsMode};
pub use cluster::NatsCluster;
use jwt::Creds;

use crate::process::{Signal, send_signal, wait_child_exit};
use crate::tls::{CertFiles, TestCa};
use crate::wait::POLL_INTERVAL;

/// How long a server may take to log "Server is ready": generous, because a
/// restart recovers the JetStream store and CI machines are shared.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful shutdown (SIGTERM) may take before it is a failure.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Fresh ports to try when another process takes the one picked (the port is
/// free when chosen but released before the server binds it).
const PORT_ATTEMPTS: usize = 5;

const READY_LINE: &str = "Server is ready";
const PORT_IN_USE: &str = "address already in use";

/// A `nats-server` child process for one test; see the [module docs](self).
#[derive(Debug)]
#[must_use = "dropping a NatsServer kills the server"]
pub struct NatsServer {
    bin: PathBuf,
    /// Holds `store/`, `nats-server.conf` and `nats-server.log`; deleted on
    /// drop, after the process is gone.
    dir: TempDir,
    port: u16,
    jetstream: bool,
    auth: Auth,
    tls: Option<ServerTls>,
    websocket_port: Option<u16>,
    /// For operator mode: a user of the JetStream account, its `.creds`
    /// written to `user.creds` in the temporary directory.
    creds: Option<Creds>,
    child: Option<Child>,
}

/// The certificates of a TLS server, made at launch in its directory.
#[derive(Debug)]
struct ServerTls {
    ca: TestCa,
    server: CertFiles,
    /// For mutual TLS: a certificate the CA signed for clients.
    client: Option<CertFiles>,
}

/// Why a launch did not produce a ready server, when the caller can retry.
struct PortInUse;

impl NatsServer {
    /// A server with JetStream, on a free port with a fresh store.
    ///
    /// # Panics
    ///
    /// When `nats-server` is not installed or does not come up (with its log).
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Options for a server other than the default (JetStream on, no auth).
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// `nats://127.0.0.1:{port}`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port; the same across restarts.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory; the same across restarts. Exists but
    /// stays unused for a server built `without_jetstream`.
    #[must_use]
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The file the server's stdout and stderr go to, across restarts.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The server's log so far, for diagnostics.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_else(|err| format!("<cannot read {}: {err}>", self.log_path().display()))
    }

    /// The process id while a process is attached (started and not yet
    /// stopped or killed through this handle).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `tls://127.0.0.1:{port}`: TLS from the first byte of the client's
    /// side (async-nats also upgrades a `nats://` URL when the server's INFO
    /// asks for TLS).
    #[must_use]
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:{port}` (`wss://` on a TLS server), for a server built
    /// with `websocket`.
    ///
    /// # Panics
    /// When the server has no WebSocket listener.
    #[must_use]
    pub fn ws_url(&self) -> String {
        let port = self
            .websocket_port
            .expect("ws_url() needs a server built with websocket()");
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// The CA that signed the server's certificate (PEM file), for a server
    /// built with `tls` or `mutual_tls`.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.cert.as_path())
    }

    /// A client certificate and key the server accepts, for a server built
    /// with `mutual_tls`.
    #[must_use]
    pub fn client_cert(&self) -> Option<&CertFiles> {
        self.tls.as_ref().and_then(|t| t.client.as_ref())
    }

    /// The `.creds` file of a user the server accepts, for a server built
    /// with `operator`.
    #[must_use]
    pub fn creds_file(&self) -> Option<PathBuf> {
        self.creds
            .as_ref()
            .map(|_| self.dir.path().join("user.creds"))
    }

    /// The credentials in [`creds_file`](Self::creds_file).
    #[must_use]
    pub fn creds(&self) -> Option<&Creds> {
        self.creds.as_ref()
    }

    /// The seed of the first nkey user, for a server built with `nkey_user`.
    #[must_use]
    pub fn nkey_seed(&self) -> Option<&str> {
        match &self.auth {
            Auth::Users { nkeys, .. } => nkeys.first().map(String::as_str),
            _ => None,
        }
    }

    /// The temporary directory the server's files live in; tests may put
    /// their own files (other CAs, broken credentials) there.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The token clients must send, for a server built with `token`.
    #[must_use]
    pub fn token(&self) -> Option<&str> {
        match &self.auth {
            Auth::Token(token) => Some(token),
            _ => None,
        }
    }

    /// The user and password clients must send, for a server built with
    /// `user_password`.
    #[must_use]
    pub fn user_password(&self) -> Option<(&str, &str)> {
        match &self.auth {
            Auth::Users {
                password: Some((user, password)),
                ..
            } => Some((user, password)),
            _ => None,
        }
    }

    /// Connect options carrying this server's credentials (and its CA and
    /// client certificate under TLS), for tests that tune the client
    /// further.
    ///
    /// # Panics
    /// When the generated credentials do not parse (a harness bug).
    pub fn connect_options(&self) -> ConnectOptions {
        let mut options = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Token(token) => ConnectOptions::with_token(token.clone()),
            Auth::Users {
                password: Some((user, password)),
                ..
            } => ConnectOptions::with_user_and_password(user.clone(), password.clone()),
            Auth::Users { nkeys, .. } => {
                ConnectOptions::with_nkey(nkeys.first().cloned().unwrap_or_default())
            }
            Auth::Operator(_) => {
                let creds = self.creds.as_ref().expect("operator mode has user creds");
                ConnectOptions::with_credentials(&creds.text).expect("the generated creds parse")
            }
        };
        if let Some(tls) = &self.tls {
            options = options.add_root_certificates(tls.ca.cert.clone());
            if let Some(client) = &tls.client {
                options = options.add_client_certificate(client.cert.clone(), client.key.clone());
            }
        }
        options
    }

    /// A connected client with this server's credentials.
    ///
    /// # Panics
    ///
    /// When the connection fails (e.g. the server is stopped).
    pub async fn client(&self) -> async_nats::Client {
        self.connect_options()
            .connect(self.url())
            .await
            .unwrap_or_else(|err| panic!("connecting to nats-server at {}: {err}", self.url()))
    }

    /// A JetStream context over a new [`client`](Self::client).
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }

    /// Whether the process is alive. A server that exited by itself is
    /// reaped here and counts as stopped.
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) => {
                self.child = None;
                false
            }
            Err(err) => panic!("checking nats-server pid {}: {err}", child.id()),
        }
    }

    /// Kills the server with SIGKILL (a crash: no flush, no goodbye to
    /// clients) and reaps it. Port and store are kept for [`restart`](Self::restart).
    ///
    /// # Panics
    ///
    /// When no process is attached.
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("kill9() needs a running nats-server");
        // `Child::kill` is SIGKILL on Unix.
        child
            .kill()
            .unwrap_or_else(|err| panic!("SIGKILL to nats-server pid {}: {err}", child.id()));
        child
            .wait()
            .unwrap_or_else(|err| panic!("reaping nats-server pid {}: {err}", child.id()));
    }

    /// Freezes the server (SIGSTOP): its connections stay open but nothing
    /// is answered or acknowledged, a NATS that makes no progress.
    ///
    /// # Panics
    ///
    /// When no process is attached.
    pub fn pause(&mut self) {
        let child = self.child.as_ref().expect("pause() needs a nats-server");
        assert!(
            send_signal(&child.id().to_string(), Signal::Stop),
            "SIGSTOP"
        );
    }

    /// Thaws a server frozen with [`pause`](Self::pause) (SIGCONT).
    ///
    /// # Panics
    ///
    /// When no process is attached.
    pub fn resume(&mut self) {
        let child = self.child.as_ref().expect("resume() needs a nats-server");
        assert!(
            send_signal(&child.id().to_string(), Signal::Cont),
            "SIGCONT"
        );
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    ///
    /// # Panics
    ///
    /// When no process is attached, or it has not exited within 15 s (it is
    /// then killed, and the panic shows its log).
    pub async fn stop(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("stop() needs a running nats-server");
        send_signal(&child.id().to_string(), Signal::Term);
        if wait_child_exit(&mut child, STOP_TIMEOUT).await.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nats-server did not exit within {STOP_TIMEOUT:?} of SIGTERM; its log:\n{}",
                self.log()
            );
        }
    }

    /// Starts the server again on the same port, configuration and store
    /// (JetStream data survives) after [`kill9`](Self::kill9) or
    /// [`stop`](Self::stop).
    ///
    /// # Panics
    ///
    /// When the server is still running, or does not come up within the
    /// start deadline (with its log).
    pub async fn restart(&mut self) {
        assert!(
            !self.is_running(),
            "restart() needs a stopped nats-server: call stop() or kill9() first"
        );
        let deadline = Instant::now() + START_TIMEOUT;
        // The port cannot change now: if another process holds it briefly
        // (an outgoing connection's ephemeral port), wait for it to go.
        while self.launch().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server cannot restart: port {} stayed in use by another process for {START_TIMEOUT:?}; its log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn launch_new(options: NatsServerBuilder) -> Self {
        let bin = nats_server_bin();
        let dir = tempfile::Builder::new()
            .prefix("nats-server-e2e-")
            .tempdir()
            .expect("creating a temporary directory for nats-server");
        let tls = (options.tls != TlsMode::Off).then(|| {
            let ca = TestCa::new(dir.path(), "nats");
            let server = ca.server_cert("nats-server");
            let client = (options.tls == TlsMode::Mutual).then(|| ca.client_cert("nats-client"));
            ServerTls { ca, server, client }
        });
        let creds = match &options.auth {
            Auth::Operator(operator) => {
                let creds = operator.user("e2e-harness", None);
                std::fs::write(dir.path().join("user.creds"), &creds.text)
                    .expect("writing the user credentials");
                Some(creds)
            }
            _ => None,
        };
        let mut server = Self {
            bin,
            dir,
            port: 0,
            jetstream: options.jetstream,
            auth: options.auth.clone(),
            tls,
            websocket_port: None,
            creds,
            child: None,
        };
        std::fs::create_dir(server.store_dir()).expect("creating the JetStream store directory");
        for _ in 0..PORT_ATTEMPTS {
            server.port = options.port.unwrap_or_else(free_port);
            // The WebSocket port is in the file: a retry on new ports
            // rewrites it (a restart does not, and keeps both ports).
            server.websocket_port = options.websocket.then(free_port);
            let store_dir = server.store_dir();
            let placement = Placement {
                store_dir: &store_dir,
                server_cert: server.tls.as_ref().map(|t| &t.server),
                ca: server.tls.as_ref().map(|t| t.ca.cert.as_path()),
                websocket_port: server.websocket_port,
            };
            std::fs::write(server.config_path(), options.config_file(&placement))
                .expect("writing the nats-server configuration file");
            if server.launch().await.is_ok() {
                return server;
            }
        }
        panic!(
            "nats-server found its port taken {PORT_ATTEMPTS} times in a row; its log:\n{}",
            server.log()
        );
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.conf")
    }

    /// Spawns the process and waits for its ready line. Only a lost race for
    /// the port is returned as an error; every other failure panics with the
    /// log, since retrying would not help.
    async fn launch(&mut self) -> Result<(), PortInUse> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("opening the nats-server log file");
        // Restarts append to the same log: only what this launch wrote counts.
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log.try_clone().expect("duplicating the log file handle");
        let mut command = Command::new(&self.bin);
        command.arg("-c").arg(self.config_path()).args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
        ]);
        if self.jetstream {
            command.arg("-js");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", self.bin.display()));
        let child = self.child.insert(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let output = read_from(&log_path, offset);
            if output.contains(READY_LINE) {
                return Ok(());
            }
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    self.child = None;
                    let output = read_from(&log_path, offset);
                    if output.contains(PORT_IN_USE) {
                        return Err(PortInUse);
                    }
                    panic!(
                        "nats-server exited ({status}) before it was ready on port {}; its log:\n{output}",
                        self.port
                    );
                }
                Err(err) => panic!("checking nats-server pid {}: {err}", child.id()),
            }
            if Instant::now() >= deadline {
                // Drop kills the process; the log says why it hung.
                panic!(
                    "nats-server was not ready within {START_TIMEOUT:?} on port {}; its log:\n{output}",
                    self.port
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client of whichever of `urls` answers; it keeps trying while none
/// does (requests wait meanwhile) and reconnects to any of them, or the
/// cluster peers their servers announce, for as long as it lives.
///
/// # Panics
///
/// When an address does not parse.
pub async fn connect_any(urls: &[String]) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| {
            u.parse()
                .unwrap_or_else(|e| panic!("NATS address {u}: {e}"))
        })
        .collect();
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .unwrap_or_else(|e| panic!("connecting to one of {urls:?}: {e}"))
}

/// A port nothing listens on right now. Racy by nature (it is released
/// before the server binds it); [`NatsServer`] retries on a lost race.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0 to find a free port")
        .port()
}

/// What the log holds past `offset`, lossily decoded.
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}
