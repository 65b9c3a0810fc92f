//! The demo's NATS: the configured server if one answers, otherwise a
//! `nats-server -js` child process with a throw-away store, in a process
//! group of its own (so Ctrl-C reaches only the demo, which stops the
//! server after everything that uses it), stopped and reaped when the demo
//! ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::DemoError;

/// The NATS server the demo uses.
#[derive(Debug)]
pub struct LocalNats {
    /// Its URL.
    pub url: String,
    /// The child process, when the demo started one.
    child: Option<Child>,
    _store: Option<tempfile::TempDir>,
}

impl LocalNats {
    /// Uses the first configured server if it accepts TCP connections, else
    /// starts one.
    ///
    /// # Errors
    /// No server answers and `nats-server` cannot be started.
    pub async fn ensure(urls: &[String]) -> Result<Self, DemoError> {
        if let Some(url) = urls.first()
            && let Some(addr) = host_port(url)
            && reachable(&addr).await
        {
            return Ok(Self {
                url: url.clone(),
                child: None,
                _store: None,
            });
        }
        Self::spawn(urls.first().map_or("nats://127.0.0.1:4222", String::as_str)).await
    }

    /// Whether this demo started the server.
    #[must_use]
    pub const fn is_ours(&self) -> bool {
        self.child.is_some()
    }

    async fn spawn(wanted: &str) -> Result<Self, DemoError> {
        let bin = std::env::var_os("NATS_SERVER_BIN")
            .map_or_else(|| PathBuf::from("nats-server"), PathBuf::from);
        let store = tempfile::Builder::new()
            .prefix("discord-bridge-demo-")
            .tempdir()
            .map_err(|source| DemoError::Local {
                what: "cannot create a temporary JetStream store",
                source,
            })?;
        let port = free_port()?;
        let log =
            std::fs::File::create(store.path().join("nats-server.log")).map_err(|source| {
                DemoError::Local {
                    what: "cannot create the nats-server log",
                    source,
                }
            })?;
        // A process group of its own: Ctrl-C in a terminal signals the
        // terminal's foreground group, and the server must outlive the
        // bridge and the adapter, which still flush to it and then let go
        // of it; the demo stops it last (`stop`). If the demo itself is
        // killed outright, `kill_on_drop` cannot run and the server is
        // left behind, its store in the temporary directory.
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path().join("jetstream"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DemoError::NoNatsServer {
                url: wanted.to_owned(),
                bin: bin.clone(),
                source,
            })?;
        let mut nats = Self {
            url: format!("nats://127.0.0.1:{port}"),
            child: Some(child),
            _store: Some(store),
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !reachable(&addr.to_string()).await {
            if let Some(child) = &mut nats.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(DemoError::NatsServerFailed(format!(
                    "exited at start ({status})"
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                nats.stop().await;
                return Err(DemoError::NatsServerFailed(
                    "did not start within 15 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(nats)
    }

    /// Stops the server if the demo started it, and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

/// `host:port` of a NATS URL (`nats://h:p`, `h:p`, or `nats://h`).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let rest = rest.split(['/', ',']).next()?;
    if rest.is_empty() {
        return None;
    }
    Some(if rest.contains(':') {
        rest.to_owned()
    } else {
        format!("{rest}:4222")
    })
}

async fn reachable(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

fn free_port() -> Result<u16, DemoError> {
    let local = |source| DemoError::Local {
        what: "cannot find a free port",
        source,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(local)?;
    listener.local_addr().map(|a| a.port()).map_err(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_urls() {
        assert_eq!(
            host_port("nats://127.0.0.1:4222").as_deref(),
            Some("127.0.0.1:4222")
        );
        assert_eq!(host_port("nats://u:p@host:1").as_deref(), Some("host:1"));
        assert_eq!(host_port("localhost").as_deref(), Some("localhost:4222"));
        assert_eq!(host_port("nats://").as_deref(), None);
    }
}
