//! Child processes under test: the `discord-bridge` binary above all.
//!
//! Exit codes and signal handling can only be tested on a real process. A
//! [`ChildProcess`] captures stdout and stderr line by line into a shared
//! buffer while it runs (so a test can wait for "ready" before it sends
//! SIGTERM), and kills its whole process group on drop, so that helpers it
//! started (the demo's `nats-server`) do not outlive the test either.
//!
//! Signals are sent with the `kill` command: the workspace forbids `unsafe`,
//! and a libc binding is not worth a dependency for tests.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::wait::POLL_INTERVAL;
use crate::workspace;

/// A POSIX signal, by the name `kill -s` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: what service managers send to stop a process.
    Term,
    /// SIGINT: Ctrl-C in a terminal.
    Int,
    /// SIGKILL: cannot be handled.
    Kill,
    /// SIGSTOP: freezes the process; its sockets stay open.
    Stop,
    /// SIGCONT: thaws a stopped process.
    Cont,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Kill => "KILL",
            Self::Stop => "STOP",
            Self::Cont => "CONT",
        }
    }
}

/// Sends `signal` to `target` (a pid, or `-pgid` for a process group);
/// returns whether `kill` succeeded (it fails when the target is gone).
pub(crate) fn send_signal(target: &str, signal: Signal) -> bool {
    Command::new("kill")
        .args(["-s", signal.name(), "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|err| panic!("running `kill -s {} {target}`: {err}", signal.name()))
        .success()
}

/// Polls `child` until it exits or `timeout` passes (`None`).
pub(crate) async fn wait_child_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => tokio::time::sleep(POLL_INTERVAL).await,
            Err(err) => panic!("checking pid {}: {err}", child.id()),
        }
    }
}

/// The `discord-bridge` binary in the shared target directory.
///
/// `CARGO_BIN_EXE_*` only covers binaries of the test's own package, so the
/// binary is looked up next to this test executable
/// (`<target>/<profile>/deps/..`), then in `<target>/debug`. `cargo test
/// --workspace` (and so `scripts/test`) builds it first; `cargo test -p
/// discord-bridge-e2e` alone does not, and may run a stale one.
///
/// # Panics
///
/// When it is not there, saying how to build it.
#[must_use]
pub fn bridge_binary() -> PathBuf {
    let name = format!("discord-bridge{}", std::env::consts::EXE_SUFFIX);
    let beside_tests = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(&name)));
    let candidates: Vec<PathBuf> = beside_tests
        .into_iter()
        .chain([workspace::target_dir().join("debug").join(&name)])
        .collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "discord-bridge binary not found at {candidates:?}: build it with cargo build -p discord-bridge"
            )
        })
}

/// A command for the `discord-bridge` binary whose environment holds none of
/// the bridge's settings (`DISCORD_*`, `NATS_*`, `BRIDGE_*`) from the
/// developer's shell, so each test states the configuration it runs with.
/// `NATS_SERVER_BIN` is kept: the demo starts that binary.
#[must_use]
pub fn bridge_command() -> Command {
    let mut command = Command::new(bridge_binary());
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let setting = ["DISCORD_", "NATS_", "BRIDGE_"]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        if setting && key != "NATS_SERVER_BIN" {
            command.env_remove(key);
        }
    }
    command
}

/// Lines captured from a child's output streams.
#[derive(Debug, Default)]
struct Captured {
    stdout: Vec<String>,
    stderr: Vec<String>,
    /// Streams that reached end of file: once both have, every line the
    /// process wrote is here.
    closed: u8,
}

/// Which output stream to look at.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// How long [`ChildProcess::wait_exit`] waits, after the exit, for output
/// pipes that something else keeps open.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// A running child process with captured output; killed (with its process
/// group) and reaped on drop.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    captured: Arc<Mutex<Captured>>,
}

impl ChildProcess {
    /// Spawns `command` in a process group of its own, with stdin closed and
    /// stdout/stderr captured.
    ///
    /// # Panics
    ///
    /// When the process cannot be started.
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {command:?}: {err}"));
        let captured = Arc::new(Mutex::new(Captured::default()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        capture(stdout, Arc::clone(&captured), Stream::Stdout);
        capture(stderr, Arc::clone(&captured), Stream::Stderr);
        Self { child, captured }
    }

    /// Spawns `discord-bridge` with `args` and `env` on top of
    /// [`bridge_command`]'s cleaned environment.
    ///
    /// # Panics
    ///
    /// When the binary is missing or cannot be started.
    pub fn bridge<I, K, V>(args: &[&str], env: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        Self::spawn(bridge_command().args(args).envs(env))
    }

    /// The process id (also its process group id).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process alone, as `kill -TERM <pid>` would.
    ///
    /// # Panics
    ///
    /// When the process is gone.
    pub fn signal(&self, signal: Signal) {
        assert!(
            send_signal(&self.pid().to_string(), signal),
            "sending SIG{} to pid {} failed: it is no longer running",
            signal.name(),
            self.pid()
        );
    }

    /// Sends `signal` to the process and everything it started, as Ctrl-C in
    /// a terminal does.
    ///
    /// # Panics
    ///
    /// When the process group is gone.
    pub fn signal_group(&self, signal: Signal) {
        assert!(
            send_signal(&format!("-{}", self.pid()), signal),
            "sending SIG{} to process group {} failed: it is no longer running",
            signal.name(),
            self.pid()
        );
    }

    /// The stdout lines so far.
    #[must_use]
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lock().stdout.clone()
    }

    /// The stderr lines so far.
    #[must_use]
    pub fn stderr_lines(&self) -> Vec<String> {
        self.lock().stderr.clone()
    }

    /// Both streams so far, labelled, for failure messages.
    #[must_use]
    pub fn output(&self) -> String {
        let captured = self.lock();
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            captured.stdout.join("\n"),
            captured.stderr.join("\n")
        )
    }

    /// Waits for a stdout line containing `needle` and returns that line.
    ///
    /// # Panics
    ///
    /// When none appears within `timeout`, showing all output.
    pub async fn wait_for_stdout(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(Stream::Stdout, needle, timeout).await
    }

    /// Waits for a stderr line (where logs go) containing `needle` and
    /// returns that line.
    ///
    /// # Panics
    ///
    /// When none appears within `timeout`, showing all output.
    pub async fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(Stream::Stderr, needle, timeout).await
    }

    /// The exit status if the process has exited.
    ///
    /// # Panics
    ///
    /// When the status cannot be queried.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|err| panic!("checking pid {}: {err}", self.child.id()))
    }

    /// Waits for the process to exit and returns its status, with all its
    /// output captured: the capture threads may lag behind the exit, so this
    /// also waits for both pipes to close. A process the child started that
    /// still holds them open (sharing its stdout) delays this by at most
    /// [`OUTPUT_GRACE`].
    ///
    /// # Panics
    ///
    /// When it is still running after `timeout`, showing all output.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let Some(status) = wait_child_exit(&mut self.child, timeout).await else {
            panic!(
                "pid {} still running after {timeout:?}; its output:\n{}",
                self.pid(),
                self.output()
            );
        };
        let deadline = Instant::now() + OUTPUT_GRACE;
        while self.lock().closed < 2 && Instant::now() < deadline {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        status
    }

    async fn wait_for_line(&self, stream: Stream, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found = {
                let captured = self.lock();
                let lines = match stream {
                    Stream::Stdout => &captured.stdout,
                    Stream::Stderr => &captured.stderr,
                };
                lines.iter().find(|line| line.contains(needle)).cloned()
            };
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {stream:?} line containing {needle:?} from pid {} within {timeout:?}; its output:\n{}",
                self.pid(),
                self.output()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A reader thread cannot panic while holding the lock, but a test
        // thread might; the lines are still worth showing.
        self.captured.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // The group first: it holds what the child started. The kernel does
        // not hand the id out again while the child is unreaped or any group
        // member lives; once all are gone, `kill` finds no group (barring
        // pid wrap-around).
        let _ = send_signal(&format!("-{}", self.child.id()), Signal::Kill);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies `reader` into `captured` line by line on a thread of its own (the
/// pipes are blocking; no runtime needed). Invalid UTF-8 is kept lossily
/// rather than ending the capture.
fn capture(reader: impl Read + Send + 'static, captured: Arc<Mutex<Captured>>, stream: Stream) {
    let spawned = std::thread::Builder::new()
        .name(format!("capture-{stream:?}"))
        .spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => {
                        captured
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .closed += 1;
                        break;
                    }
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']).to_owned();
                        let mut captured = captured.lock().unwrap_or_else(PoisonError::into_inner);
                        match stream {
                            Stream::Stdout => captured.stdout.push(text),
                            Stream::Stderr => captured.stderr.push(text),
                        }
                    }
                }
            }
        });
    spawned.expect("spawning an output capture thread");
}
