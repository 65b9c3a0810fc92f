//! The bridge processes of the soak: the real binary, configured alike for
//! the same shards, so that one runs them and the other stands by. The
//! soak kills and stops them on purpose; any other exit is a failure that
//! shows the process's last log lines.

use std::time::Duration;

use tempfile::TempDir;

use crate::process::{ChildProcess, Signal, bridge_command};

/// How long a process may take to stop after SIGTERM, or to take part in
/// shard coordination after it started.
const PROCESS_WAIT: Duration = Duration::from_secs(30);
/// Log lines shown of a process that failed.
const TAIL_LINES: usize = 60;

/// One bridge process.
#[derive(Debug)]
pub struct Member {
    /// `p1`, `p2`, … in order of start.
    pub name: String,
    /// Its gateway compression (`zlib-stream` or `zstd-stream`).
    pub compression: &'static str,
    /// The process.
    pub process: ChildProcess,
}

/// The running bridge processes; see the [module docs](self).
pub struct Fleet {
    env: Vec<(String, String)>,
    /// The working directory of every process: empty, so no
    /// `discord-bridge.toml` applies.
    dir: TempDir,
    members: Vec<Member>,
    /// The log lines of processes that ended, by name.
    retired: Vec<(String, Vec<String>)>,
    started: u32,
}

impl Fleet {
    /// A fleet whose processes run with `env` (plus their compression).
    ///
    /// # Panics
    ///
    /// When no temporary directory can be made.
    #[must_use]
    pub fn new(env: Vec<(String, String)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("discord-bridge-chaos-")
            .tempdir()
            .expect("a working directory for the bridge processes");
        Self {
            env,
            dir,
            members: Vec::new(),
            retired: Vec::new(),
            started: 0,
        }
    }

    /// Starts one more process with `compression`; returns its name.
    pub fn spawn(&mut self, compression: &'static str) -> String {
        self.started += 1;
        let name = format!("p{}", self.started);
        let mut command = bridge_command();
        command
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DISCORD_GATEWAY_COMPRESSION", compression);
        let process = ChildProcess::spawn(&mut command);
        self.members.push(Member {
            name: name.clone(),
            compression,
            process,
        });
        name
    }

    /// The running processes.
    #[must_use]
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Panics when a process exited on its own, with its exit status and
    /// the tail of its log.
    pub fn check(&mut self) {
        for m in &mut self.members {
            if let Some(status) = m.process.try_exit() {
                panic!(
                    "bridge process {} (pid {}) exited unexpectedly ({status}); its last lines:\n{}",
                    m.name,
                    m.process.pid(),
                    tail(&m.process)
                );
            }
        }
    }

    /// Waits until process `name` coordinates shard ownership in NATS KV.
    pub async fn wait_coordinated(&mut self, name: &str) {
        let m = self.member(name);
        m.process
            .wait_for_stderr("shard ownership coordinated in NATS KV", PROCESS_WAIT)
            .await;
    }

    /// Stops every process with SIGTERM and checks each exits 0.
    ///
    /// # Panics
    ///
    /// When one does not, with its log.
    pub async fn stop_all(&mut self) {
        for m in &self.members {
            m.process.signal(Signal::Term);
        }
        for mut m in std::mem::take(&mut self.members) {
            let status = m.process.wait_exit(PROCESS_WAIT).await;
            assert_eq!(
                status.code(),
                Some(0),
                "bridge process {} did not stop cleanly after SIGTERM ({status}); its last lines:\n{}",
                m.name,
                tail(&m.process)
            );
            self.retired.push((m.name, m.process.stderr_lines()));
        }
    }

    /// Kills the process with this pid with SIGKILL and reaps it; returns
    /// its name.
    ///
    /// # Panics
    ///
    /// When no member has that pid.
    pub async fn kill9(&mut self, pid: u32) -> String {
        let index = self
            .members
            .iter()
            .position(|m| m.process.pid() == pid)
            .unwrap_or_else(|| panic!("no bridge process with pid {pid}"));
        let mut m = self.members.remove(index);
        m.process.signal(Signal::Kill);
        m.process.wait_exit(PROCESS_WAIT).await;
        self.retired
            .push((m.name.clone(), m.process.stderr_lines()));
        m.name
    }

    /// Writes every process's log (ended or running) to `dir/{name}.log`.
    ///
    /// # Panics
    ///
    /// When a file cannot be written.
    pub fn write_logs(&self, dir: &std::path::Path) {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let running = self
            .members
            .iter()
            .map(|m| (m.name.clone(), m.process.stderr_lines()));
        for (name, lines) in self.retired.iter().cloned().chain(running) {
            let path = dir.join(format!("{name}.log"));
            std::fs::write(&path, lines.join("\n"))
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }

    /// Every process's last log lines, for a failure message.
    #[must_use]
    pub fn tails(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} (pid {}, {}) ---\n{}",
                    m.name,
                    m.process.pid(),
                    m.compression,
                    tail(&m.process)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no bridge process named {name}"))
    }
}

/// The last lines a process logged (stderr) and printed (stdout).
fn tail(process: &ChildProcess) -> String {
    let lines = process.stderr_lines();
    let from = lines.len().saturating_sub(TAIL_LINES);
    let mut out = lines[from..].join("\n");
    let stdout = process.stdout_lines();
    if !stdout.is_empty() {
        out.push_str("\n--- stdout ---\n");
        out.push_str(&stdout[stdout.len().saturating_sub(10)..].join("\n"));
    }
    out
}
