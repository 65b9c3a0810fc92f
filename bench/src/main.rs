//! The benchmark binary (see BENCHMARKS.md): in one run, side by side,
//!
//! * `flood`: the simulator floods one shard over loopback WebSocket as fast
//!   as the client reads, through a local nats-server, core and JetStream,
//!   for the bridge (each transport compression), the twilight-gateway
//!   peer, and the raw async-nats ceiling (the same payloads, no gateway);
//! * `latency`: frame written by the simulator → message received by a NATS
//!   subscriber, at a fixed offered rate;
//! * `idle`: resident memory per idle shard with 1, 100 and 1000 shards.
//!
//! Each system under test runs in a child process of this binary (`child`),
//! so its CPU time and peak memory are its own; the simulator, the
//! subscriber and the orchestration run here.
//!
//! Network traffic goes to 127.0.0.1 only: the simulator and a nats-server
//! this binary starts (`NATS_SERVER_BIN`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod child;
mod procfs;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use clap::{Parser, Subcommand, ValueEnum};
use discord_bridge_schemas::{BridgeStatus, subject};
use discord_gateway_sim::flood::busy_bot_mix;
use discord_gateway_sim::{Flood, SimConfig, Simulator};
use tokio::time::Instant;

/// Distinct event bodies a flood cycles through: more than a zstd window
/// holds, so that compression sees traffic, not one repeated page.
pub(crate) const TEMPLATES: usize = 5000;
/// The stream the bridge would create, recreated before each JetStream run.
const STREAM: &str = "ASTRID_DISCORD";

#[derive(Parser)]
#[command(about = "discord-bridge benchmarks: floods, latency, idle memory")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything, in one run (the figures of BENCHMARKS.md).
    All {
        /// Dispatches per flood.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Offered rate of the latency runs, dispatches per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        /// Duration of each latency run, seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Shard counts of the idle-memory runs.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        shards: Vec<u32>,
    },
    /// One flood through one system.
    Flood {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long, value_enum, default_value_t = Mode::Core)]
        mode: Mode,
        #[arg(long, value_enum, default_value_t = Comp::Zstd)]
        compression: Comp,
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// The bridge's `nats.max_inflight`.
        #[arg(long)]
        max_inflight: Option<usize>,
    },
    /// Latency at a fixed offered rate through the bridge.
    Latency {
        #[arg(long, value_enum, default_value_t = Mode::Core)]
        mode: Mode,
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Resident memory of idle shards.
    Idle {
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        shards: Vec<u32>,
    },
    /// A system under test (run by the others).
    #[command(hide = true)]
    Child(ChildArgs),
}

/// What a child process runs.
#[derive(clap::Args, Clone)]
pub(crate) struct ChildArgs {
    #[arg(long, value_enum)]
    target: Target,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, value_enum)]
    compression: Comp,
    #[arg(long)]
    nats: String,
    /// The simulator's REST base (the bridge discovers the gateway there).
    #[arg(long)]
    api_base: String,
    /// The simulator's gateway URL (the peer's `proxy_url`).
    #[arg(long)]
    gateway: String,
    /// Dispatches of the flood (the ceiling publishes their payloads).
    #[arg(long, default_value_t = 0)]
    events: u64,
    #[arg(long)]
    max_inflight: Option<usize>,
}

/// The system under test.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Debug)]
pub(crate) enum Target {
    /// discord-bridge.
    Bridge,
    /// twilight-gateway + async-nats.
    Peer,
    /// async-nats alone, the normalized payloads prepared in advance.
    Ceiling,
}

/// Core NATS or JetStream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Debug)]
pub(crate) enum Mode {
    /// Core NATS publish.
    Core,
    /// JetStream publish, acknowledged.
    #[value(name = "jetstream")]
    JetStream,
}

/// Transport compression.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Debug)]
pub(crate) enum Comp {
    /// Plain text frames.
    None,
    /// `zlib-stream`.
    Zlib,
    /// `zstd-stream`.
    Zstd,
}

impl Comp {
    const fn bridge(self) -> discord_bridge::codec::Compression {
        use discord_bridge::codec::Compression as C;
        match self {
            Self::None => C::None,
            Self::Zlib => C::ZlibStream,
            Self::Zstd => C::ZstdStream,
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Some(Cmd::Child(args)) => {
                tracing_subscriber::fmt()
                    .with_env_filter("warn")
                    .with_writer(std::io::stderr)
                    .init();
                child::run(args).await
            }
            Some(Cmd::Flood {
                target,
                mode,
                compression,
                events,
                max_inflight,
            }) => {
                let nats = Nats::start()?;
                let r = flood(&nats, target, mode, compression, events, max_inflight).await?;
                println!("{}", FloodResult::HEADER);
                println!("{}", r.row(None, None));
                Ok(())
            }
            Some(Cmd::Latency {
                mode,
                rate,
                seconds,
            }) => {
                let nats = Nats::start()?;
                let r = latency(&nats, mode, rate, seconds).await?;
                println!("{}", r.row());
                Ok(())
            }
            Some(Cmd::Idle { shards }) => {
                let nats = Nats::start()?;
                for n in shards {
                    println!("{}", idle(&nats, n).await?.row());
                }
                Ok(())
            }
            None => all(100_000, 10_000, 10, vec![1, 100, 1000]).await,
            Some(Cmd::All {
                events,
                rate,
                seconds,
                shards,
            }) => all(events, rate, seconds, shards).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn all(events: u64, rate: u32, seconds: u64, shards: Vec<u32>) -> Result<(), String> {
    let nats = Nats::start()?;
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", procfs::cpu_model());
    let _ = writeln!(out, "nats-server: {}", nats.version());
    let _ = writeln!(out, "\n## Floods ({events} dispatches, 90 % relayed)\n");
    let _ = writeln!(out, "{}", FloodResult::HEADER);
    let mut results: HashMap<(Target, Mode, Comp), FloodResult> = HashMap::new();
    let runs = [
        (Target::Ceiling, Mode::Core, Comp::None),
        (Target::Ceiling, Mode::JetStream, Comp::None),
        (Target::Peer, Mode::Core, Comp::Zstd),
        (Target::Peer, Mode::JetStream, Comp::Zstd),
        (Target::Bridge, Mode::Core, Comp::None),
        (Target::Bridge, Mode::Core, Comp::Zlib),
        (Target::Bridge, Mode::Core, Comp::Zstd),
        (Target::Bridge, Mode::JetStream, Comp::None),
        (Target::Bridge, Mode::JetStream, Comp::Zlib),
        (Target::Bridge, Mode::JetStream, Comp::Zstd),
    ];
    for (target, mode, comp) in runs {
        eprintln!("flood: {target:?} {mode:?} {comp:?}");
        let r = flood(&nats, target, mode, comp, events, None).await?;
        let peer = results.get(&(Target::Peer, mode, Comp::Zstd)).cloned();
        let ceiling = results.get(&(Target::Ceiling, mode, Comp::None)).cloned();
        let row = if target == Target::Bridge {
            r.row(
                (comp == Comp::Zstd).then_some(peer).flatten().as_ref(),
                ceiling.as_ref(),
            )
        } else {
            r.row(None, None)
        };
        let _ = writeln!(out, "{row}");
        eprintln!("{row}");
        results.insert((target, mode, comp), r);
    }
    let _ = writeln!(
        out,
        "\n## Latency (frame written by the simulator → message at a NATS subscriber)\n"
    );
    let _ = writeln!(out, "{}", LatencyResult::HEADER);
    for mode in [Mode::Core, Mode::JetStream] {
        eprintln!("latency: {mode:?}");
        let r = latency(&nats, mode, rate, seconds).await?;
        let _ = writeln!(out, "{}", r.row());
        eprintln!("{}", r.row());
    }
    let _ = writeln!(out, "\n## Idle memory\n");
    let _ = writeln!(out, "{}", IdleResult::HEADER);
    let mut base: Option<IdleResult> = None;
    for n in shards {
        eprintln!("idle: {n} shards");
        let mut r = idle(&nats, n).await?;
        if let Some(b) = &base
            && n > b.shards
        {
            r.marginal_kib =
                Some((r.rss_kib.saturating_sub(b.rss_kib)) as f64 / f64::from(n - b.shards));
        }
        let _ = writeln!(out, "{}", r.row());
        eprintln!("{}", r.row());
        if base.is_none() {
            base = Some(r);
        }
    }
    println!("{out}");
    Ok(())
}

/// A nats-server with JetStream on a free loopback port, stopped on drop.
struct Nats {
    child: Child,
    url: String,
    bin: PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Nats {
    fn start() -> Result<Self, String> {
        let bin = std::env::var_os("NATS_SERVER_BIN")
            .map(PathBuf::from)
            .ok_or("set NATS_SERVER_BIN (scripts/bench does: scripts/ensure-nats-server)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("discord-bridge-bench-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err("nats-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child,
            url,
            bin,
            _dir: tempdir::Dir(dir),
        })
    }

    fn version(&self) -> String {
        Command::new(&self.bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process running a system under test, killed on drop.
struct Sut {
    child: Child,
    pid: String,
}

impl Sut {
    fn spawn(args: &ChildArgs) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("child")
            .args(["--target", name(args.target)])
            .args([
                "--mode",
                if args.mode == Mode::Core {
                    "core"
                } else {
                    "jetstream"
                },
            ])
            .args(["--compression", comp_name(args.compression)])
            .args(["--nats", &args.nats])
            .args(["--api-base", &args.api_base])
            .args(["--gateway", &args.gateway])
            .args(["--events", &args.events.to_string()]);
        if let Some(n) = args.max_inflight {
            cmd.args(["--max-inflight", &n.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id().to_string();
        Ok(Self { child, pid })
    }

    /// The ceiling's own report: CPU s, elapsed s, events published.
    fn read_line(&mut self) -> Result<(f64, f64, u64), String> {
        use std::io::BufRead as _;
        let out = self.child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [cpu, elapsed, n] => Ok((
                cpu.parse().map_err(|_| "cpu")?,
                elapsed.parse().map_err(|_| "elapsed")?,
                n.parse().map_err(|_| "count")?,
            )),
            _ => Err(format!("unexpected ceiling output {line:?}")),
        }
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const fn name(t: Target) -> &'static str {
    match t {
        Target::Bridge => "bridge",
        Target::Peer => "peer",
        Target::Ceiling => "ceiling",
    }
}

const fn comp_name(c: Comp) -> &'static str {
    match c {
        Comp::None => "none",
        Comp::Zlib => "zlib",
        Comp::Zstd => "zstd",
    }
}

/// A fresh agent stream, as the bridge would create it.
async fn fresh_stream(client: &async_nats::Client) -> Result<(), String> {
    let js = jetstream::new(client.clone());
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec![subject::agent_events(subject::DEFAULT_PREFIX)],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

async fn stored(client: &async_nats::Client) -> u64 {
    let js = jetstream::new(client.clone());
    match js.get_stream(STREAM).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Arrivals at a core subscriber of the agent subject: count, the time of
/// the latest, and (for latency) the time of each `Discord-Seq`.
#[derive(Default)]
struct Arrivals {
    count: u64,
    last: Option<Instant>,
    at: HashMap<u64, Instant>,
}

/// A core subscriber of the agent subject that speaks the NATS protocol
/// itself and only frames messages (and reads `Discord-Seq` when asked):
/// the measurement should cost little next to what it measures, and
/// async-nats builds a header map per message.
async fn subscribe(nats_url: &str, keep_times: bool) -> Result<Arc<Mutex<Arrivals>>, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = nats_url.trim_start_matches("nats://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let subject = subject::agent_events(subject::DEFAULT_PREFIX);
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"name\":\"bench-subscriber\"}}\r\nSUB {subject} 1\r\nPING\r\n"
    );
    tcp.write_all(hello.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let a = Arc::clone(&arrivals);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut chunk = vec![0_u8; 256 << 10];
        loop {
            let Ok(n) = tcp.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let now = Instant::now();
            let mut pos = 0;
            let (mut got, mut seqs) = (0_u64, Vec::new());
            while let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                let line = &buf[pos..pos + eol];
                if line.starts_with(b"HMSG ") || line.starts_with(b"MSG ") {
                    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
                    let num = |f: &[u8]| {
                        std::str::from_utf8(f)
                            .ok()
                            .and_then(|t| t.parse::<usize>().ok())
                    };
                    let (Some(total), hdr) = (
                        fields.last().and_then(|f| num(f)),
                        fields
                            .len()
                            .checked_sub(2)
                            .and_then(|i| fields.get(i))
                            .and_then(|f| num(f)),
                    ) else {
                        return;
                    };
                    let body = pos + eol + 2;
                    if buf.len() < body + total + 2 {
                        break;
                    }
                    if keep_times && line.starts_with(b"HMSG ") {
                        let headers = &buf[body..body + hdr.unwrap_or(0)];
                        let key = b"Discord-Seq: ";
                        if let Some(at) = headers.windows(key.len()).position(|w| w == key) {
                            let v = &headers[at + key.len()..];
                            let end = v.iter().position(|b| *b == b'\r').unwrap_or(v.len());
                            if let Some(seq) = std::str::from_utf8(&v[..end])
                                .ok()
                                .and_then(|t| t.parse::<u64>().ok())
                            {
                                seqs.push(seq);
                            }
                        }
                    }
                    got += 1;
                    pos = body + total + 2;
                } else {
                    if line == b"PING" {
                        let _ = tcp.write_all(b"PONG\r\n").await;
                    } else if line == b"PONG"
                        && let Some(tx) = ready.take()
                    {
                        let _ = tx.send(());
                    }
                    pos += eol + 2;
                }
            }
            buf.drain(..pos);
            if got > 0 {
                let mut a = a.lock().unwrap_or_else(PoisonError::into_inner);
                a.count += got;
                a.last = Some(now);
                for seq in seqs {
                    a.at.insert(seq, now);
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .map_err(|_| "the subscriber got no PONG")?
        .map_err(|_| "the subscriber ended")?;
    Ok(arrivals)
}

fn count(a: &Mutex<Arrivals>) -> u64 {
    a.lock().unwrap_or_else(PoisonError::into_inner).count
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// What one flood measured.
#[derive(Clone)]
struct FloodResult {
    target: Target,
    mode: Mode,
    comp: Comp,
    dispatches: u64,
    published: u64,
    secs: f64,
    json_bytes: u64,
    wire_bytes: u64,
    cpu_secs: f64,
    peak_rss_kib: u64,
    reconnects: usize,
    stored: Option<u64>,
    relayed: u64,
    pauses: Option<u64>,
    /// nats-server's CPU during the flood.
    nats_cpu_secs: Option<f64>,
    /// This process's (simulator and subscriber) CPU during the flood.
    sim_cpu_secs: Option<f64>,
}

impl FloodResult {
    const HEADER: &str = "| system | mode | compression | events/s (published) | dispatches/s | JSON MB/s | wire MB/s | CPU µs/event | peak RSS MiB | reconnects | stored (JetStream) / received (core) of relayed | read pauses | nats-server µs/event | simulator + subscriber µs/event | vs peer | vs ceiling |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

    fn rate(&self) -> f64 {
        self.published as f64 / self.secs
    }

    fn row(&self, peer: Option<&Self>, ceiling: Option<&Self>) -> String {
        let ratio = |o: Option<&Self>| {
            o.map_or("—".to_owned(), |o| {
                format!("{:.2}×", self.rate() / o.rate())
            })
        };
        let na = |v: String, show: bool| if show { v } else { "—".to_owned() };
        let per_event = |c: Option<f64>| {
            c.map_or("—".to_owned(), |c| {
                format!("{:.2}", c * 1e6 / self.published.max(1) as f64)
            })
        };
        format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            name(self.target),
            if self.mode == Mode::Core {
                "core"
            } else {
                "jetstream"
            },
            if self.target == Target::Ceiling {
                "—"
            } else {
                comp_name(self.comp)
            },
            self.rate(),
            na(
                format!("{:.0}", self.dispatches as f64 / self.secs),
                self.target != Target::Ceiling
            ),
            na(
                format!("{:.1}", self.json_bytes as f64 / self.secs / 1e6),
                self.target != Target::Ceiling
            ),
            na(
                format!("{:.1}", self.wire_bytes as f64 / self.secs / 1e6),
                self.target != Target::Ceiling
            ),
            self.cpu_secs * 1e6 / self.published.max(1) as f64,
            self.peak_rss_kib as f64 / 1024.0,
            na(self.reconnects.to_string(), self.target != Target::Ceiling),
            self.stored
                .map_or("—".to_owned(), |s| format!("{s}/{}", self.relayed)),
            self.pauses.map_or("—".to_owned(), |s| s.to_string()),
            per_event(self.nats_cpu_secs),
            per_event(self.sim_cpu_secs),
            ratio(peer),
            ratio(ceiling),
        )
    }
}

fn sim_config() -> SimConfig {
    SimConfig::default()
}

/// The JSON bytes of a flood: its payloads as written, before compression.
fn json_bytes(flood: &Flood, first_seq: u64) -> u64 {
    (0..flood.count)
        .map(|n| {
            let e = &flood.events[usize::try_from(n).unwrap_or_default() % flood.events.len()];
            (e.t.len() + e.d.len() + 30 + (first_seq + n).to_string().len()) as u64
        })
        .sum()
}

async fn flood(
    nats: &Nats,
    target: Target,
    mode: Mode,
    comp: Comp,
    events: u64,
    max_inflight: Option<usize>,
) -> Result<FloodResult, String> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(&nats.url)
        .await
        .map_err(|e| e.to_string())?;
    fresh_stream(&client).await?;
    let sim = Simulator::start(sim_config())
        .await
        .map_err(|e| e.to_string())?;
    let args = ChildArgs {
        target,
        mode,
        compression: comp,
        nats: nats.url.clone(),
        api_base: sim.api_base(),
        gateway: sim.gateway_url(),
        events,
        max_inflight,
    };
    let mix = busy_bot_mix(sim.config(), 0, 1, TEMPLATES);
    let relayed = (0..events)
        .filter(|n| mix[usize::try_from(*n).unwrap_or_default() % mix.len()].t != "PRESENCE_UPDATE")
        .count() as u64;
    let arrivals = subscribe(&nats.url, false).await?;
    let mut sut = Sut::spawn(&args)?;
    if target == Target::Ceiling {
        let (cpu, secs, published) = sut.read_line()?;
        wait_until("the ceiling's messages", Duration::from_secs(60), || {
            count(&arrivals) >= published
        })
        .await?;
        let stored = if mode == Mode::JetStream {
            Some(stored(&client).await)
        } else {
            None
        };
        return Ok(FloodResult {
            target,
            mode,
            comp,
            dispatches: events,
            published,
            secs,
            json_bytes: 0,
            wire_bytes: 0,
            cpu_secs: cpu,
            peak_rss_kib: procfs::peak_rss_kib(&sut.pid),
            reconnects: 0,
            stored,
            relayed: published,
            pauses: None,
            nats_cpu_secs: None,
            sim_cpu_secs: None,
        });
    }
    sim.wait_for(Duration::from_secs(60), |s| {
        s.session_of(0).and_then(|x| x.attached).map(|_| ())
    })
    .await
    .map_err(|e| format!("{target:?} never got a session: {e}"))?;
    // Let the start-up (READY, GUILD_CREATEs, first publishes) settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = count(&arrivals);
    let cpu0 = procfs::cpu(&sut.pid);
    let nats_pid = nats.child.id().to_string();
    let others0 = (procfs::cpu(&nats_pid), procfs::cpu("self"));
    let flood = Flood {
        events: mix,
        count: events,
        rate: None,
        record_times: false,
    };
    let handle = sim
        .flood(0, flood.clone())
        .ok_or("no connection to flood")?;
    let report = handle
        .finished(Duration::from_secs(300))
        .await
        .map_err(|e| e.to_string())?;
    if report.aborted {
        return Err(format!("{target:?}: the connection ended during the flood"));
    }
    let expect = before + relayed;
    // Core NATS is at most once: a subscriber that falls behind loses
    // messages (counted, not waited for). Done when all arrived, or when
    // nothing arrived for two seconds.
    let mut seen = (count(&arrivals), Instant::now());
    wait_until(
        "every event at the subscriber",
        Duration::from_secs(180),
        || {
            let n = count(&arrivals);
            if n != seen.0 {
                seen = (n, Instant::now());
            }
            n >= expect || (mode == Mode::Core && seen.1.elapsed() > Duration::from_secs(2))
        },
    )
    .await?;
    let delivered = count(&arrivals) - before;
    let last = arrivals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .last
        .ok_or("no arrival")?;
    let cpu = procfs::cpu(&sut.pid).saturating_sub(cpu0);
    let nats_cpu = procfs::cpu(&nats_pid).saturating_sub(others0.0);
    let here_cpu = procfs::cpu("self").saturating_sub(others0.1);
    let started = report.started.ok_or("flood never started")?;
    let secs = last.duration_since(started).as_secs_f64();
    let first = report.seqs.map_or(0, |s| s.0);
    let pauses = if target == Target::Bridge {
        status(&client)
            .await
            .map(|s| s.shards.iter().map(|r| r.read_pauses).sum())
    } else {
        None
    };
    let stored = Some(if mode == Mode::JetStream {
        stored(&client).await
    } else {
        delivered
    });
    let r = FloodResult {
        target,
        mode,
        comp,
        dispatches: events,
        published: delivered,
        secs,
        json_bytes: json_bytes(&flood, first),
        wire_bytes: report.wire_bytes,
        cpu_secs: cpu.as_secs_f64(),
        peak_rss_kib: procfs::peak_rss_kib(&sut.pid),
        reconnects: sim.connections().len().saturating_sub(1),
        stored,
        relayed,
        pauses,
        nats_cpu_secs: Some(nats_cpu.as_secs_f64()),
        sim_cpu_secs: Some(here_cpu.as_secs_f64()),
    };
    drop(sut);
    sim.shutdown().await;
    Ok(r)
}

async fn status(client: &async_nats::Client) -> Option<BridgeStatus> {
    let subject = format!("{}.bridge.status", subject::DEFAULT_PREFIX);
    let reply = tokio::time::timeout(Duration::from_secs(5), client.request(subject, "".into()))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

struct LatencyResult {
    mode: Mode,
    rate: u32,
    n: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    over_5ms: usize,
}

impl LatencyResult {
    const HEADER: &str = "| mode | offered rate | events | p50 | p99 | p99.9 | max | > 5 ms |\n|---|---|---|---|---|---|---|---|";

    fn row(&self) -> String {
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        format!(
            "| {} | {}/s | {} | {} | {} | {} | {} | {} |",
            if self.mode == Mode::Core {
                "core"
            } else {
                "jetstream"
            },
            self.rate,
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
            self.over_5ms
        )
    }
}

async fn latency(
    nats: &Nats,
    mode: Mode,
    rate: u32,
    seconds: u64,
) -> Result<LatencyResult, String> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(&nats.url)
        .await
        .map_err(|e| e.to_string())?;
    fresh_stream(&client).await?;
    let sim = Simulator::start(sim_config())
        .await
        .map_err(|e| e.to_string())?;
    let args = ChildArgs {
        target: Target::Bridge,
        mode,
        compression: Comp::Zstd,
        nats: nats.url.clone(),
        api_base: sim.api_base(),
        gateway: sim.gateway_url(),
        events: 0,
        max_inflight: None,
    };
    let arrivals = subscribe(&nats.url, true).await?;
    let sut = Sut::spawn(&args)?;
    sim.wait_for(Duration::from_secs(60), |s| {
        s.session_of(0).and_then(|x| x.attached).map(|_| ())
    })
    .await
    .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mix = busy_bot_mix(sim.config(), 0, 1, TEMPLATES);
    let flood = Flood {
        events: Arc::clone(&mix),
        count: u64::from(rate) * seconds,
        rate: Some(rate),
        record_times: true,
    };
    let handle = sim.flood(0, flood.clone()).ok_or("no connection")?;
    let report = handle
        .finished(Duration::from_secs(seconds * 3 + 30))
        .await
        .map_err(|e| e.to_string())?;
    let (first, _) = report.seqs.ok_or("nothing written")?;
    let expected: Vec<u64> = (0..flood.count)
        .filter(|n| mix[usize::try_from(*n).unwrap_or_default() % mix.len()].t != "PRESENCE_UPDATE")
        .map(|n| first + n)
        .collect();
    let want = expected.len();
    wait_until("every event", Duration::from_secs(60), || {
        let a = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        expected.iter().filter(|s| a.at.contains_key(s)).count() >= want
    })
    .await?;
    let mut lat: Vec<Duration> = {
        let a = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        expected
            .iter()
            .filter_map(|seq| {
                let written = report.written_at.get(usize::try_from(seq - first).ok()?)?;
                Some(a.at.get(seq)?.saturating_duration_since(*written))
            })
            .collect()
    };
    lat.sort_unstable();
    let pick = |q: f64| {
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat.get(i).copied().unwrap_or_default()
    };
    let r = LatencyResult {
        mode,
        rate,
        n: lat.len(),
        p50: pick(0.5),
        p99: pick(0.99),
        p999: pick(0.999),
        max: lat.last().copied().unwrap_or_default(),
        over_5ms: lat
            .iter()
            .filter(|d| **d > Duration::from_millis(5))
            .count(),
    };
    drop(sut);
    sim.shutdown().await;
    Ok(r)
}

struct IdleResult {
    shards: u32,
    rss_kib: u64,
    marginal_kib: Option<f64>,
}

impl IdleResult {
    const HEADER: &str =
        "| shards | RSS MiB | RSS per shard KiB | per added shard KiB |\n|---|---|---|---|";

    fn row(&self) -> String {
        format!(
            "| {} | {:.1} | {:.0} | {} |",
            self.shards,
            self.rss_kib as f64 / 1024.0,
            self.rss_kib as f64 / f64::from(self.shards),
            self.marginal_kib
                .map_or("—".to_owned(), |m| format!("{m:.0}")),
        )
    }
}

async fn idle(nats: &Nats, shards: u32) -> Result<IdleResult, String> {
    let sim = Simulator::start(SimConfig {
        shards,
        max_concurrency: shards,
        session_start_total: shards * 2 + 10,
        session_start_remaining: shards * 2 + 10,
        ..sim_config()
    })
    .await
    .map_err(|e| e.to_string())?;
    let args = ChildArgs {
        target: Target::Bridge,
        mode: Mode::JetStream,
        compression: Comp::Zlib,
        nats: nats.url.clone(),
        api_base: sim.api_base(),
        gateway: sim.gateway_url(),
        events: 0,
        max_inflight: None,
    };
    let sut = Sut::spawn(&args)?;
    let n = usize::try_from(shards).unwrap_or(usize::MAX);
    sim.wait_for(Duration::from_secs(300), |s| {
        (s.shard_sessions
            .keys()
            .filter(|k| s.session_of(**k).is_some_and(|x| x.attached.is_some()))
            .count()
            >= n)
            .then_some(())
    })
    .await
    .map_err(|e| format!("{shards} shards never all connected: {e}"))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = IdleResult {
        shards,
        rss_kib: procfs::rss_kib(&sut.pid),
        marginal_kib: None,
    };
    drop(sut);
    sim.shutdown().await;
    Ok(r)
}
