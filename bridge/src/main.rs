//! The `discord-bridge` binary: parse the command line, load configuration,
//! run, and map the outcome to an exit code (0 clean, 1 runtime, 2 config).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use discord_bridge::cli::{Cli, Command};
use discord_bridge::config::load_from_process;
#[cfg(feature = "demo")]
use discord_bridge::demo;
use discord_bridge::{RunError, healthcheck, logging, tls};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit code after a second SIGINT/SIGTERM: the conventional 128 + SIGINT.
const FORCED_EXIT: i32 = 130;

/// How long tasks that ignore cancellation may delay the exit.
const RUNTIME_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[allow(
    clippy::print_stderr,
    reason = "main reports the error that ends the process on stderr"
)]
fn fail(error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(code)
}

/// What the process does after loading its configuration.
enum Job {
    Run,
    Shards {
        json: bool,
    },

    #[cfg(feature = "demo")]
    Demo(demo::DemoOptions),
}

fn main() -> ExitCode {
    tls::install_crypto_provider();
    let cli = Cli::parse();
    let command = cli.selected_command();
    let loaded = match load_from_process(cli.config, command == Command::Run) {
        Ok(loaded) => loaded,
        Err(errors) => {
            let error = RunError::from(errors);
            return fail(&error, error.exit_code());
        }
    };
    let job = match command {
        Command::CheckConfig => {
            #[allow(
                clippy::print_stdout,
                reason = "printing the configuration is the command"
            )]
            {
                print!("{}", loaded.render());
            }
            return ExitCode::SUCCESS;
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => Job::Demo(args.options()),
        Command::Run => Job::Run,
        Command::Shards(args) => Job::Shards { json: args.json },
        Command::Healthcheck(args) => {
            return run_healthcheck(loaded.config.http.listen, args.url.as_deref());
        }
    };
    // The demo prints events on stdout; keep the bridge's own logs to
    // warnings unless RUST_LOG asks for more.
    let filter = std::env::var(logging::FILTER_ENV)
        .ok()
        .or_else(|| (!matches!(job, Job::Run)).then(|| "warn".to_owned()));
    if let Err(e) = logging::init_with(filter.as_deref(), loaded.config.log.format) {
        return fail(&e, 2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 1),
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        watch_signals(shutdown.clone())?;
        match job {
            #[cfg(feature = "demo")]
            Job::Demo(options) => demo::run(loaded.config, options, shutdown).await,
            Job::Run => discord_bridge::run(loaded.config, shutdown).await,
            Job::Shards { json } => {
                let view = discord_bridge::shard_view(&loaded.config).await?;
                print_shards(&view, json);
                Ok(())
            }
        }
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, e.exit_code()),
    }
}

/// `healthcheck`: one request, no logging, no signal handling (a probe
/// that is killed is a failed probe).
#[allow(clippy::print_stdout, reason = "printing the answer is the command")]
fn run_healthcheck(listen: Option<std::net::SocketAddr>, url: Option<&str>) -> ExitCode {
    let url = match healthcheck::readiness_url(listen, url) {
        Ok(url) => url,
        Err(e) => return fail(&e, e.exit_code()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 1),
    };
    match runtime.block_on(healthcheck::check(&url)) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, e.exit_code()),
    }
}

#[allow(clippy::print_stdout, reason = "printing the view is the command")]
fn print_shards(view: &[discord_bridge::ShardView], json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(view).unwrap_or_default());
        return;
    }
    if view.is_empty() {
        println!("no shard of this bot has a lease or a checkpoint in NATS KV");
        return;
    }
    println!(
        "{:<8} {:<40} {:>10}  {:<34} {:>10}",
        "SHARD", "OWNER", "LEASE AGE", "SESSION", "ACKED SEQ"
    );
    for v in view {
        let shard = format!("{}/{}", v.shard[0], v.shard[1]);
        let owner = v.owner.as_ref().map_or_else(
            || "(none: lease free)".to_owned(),
            |o| format!("{} (pid {} on {})", o.id, o.pid, o.host),
        );
        let age = v.lease_age_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{:.1}s", ms as f64 / 1000.0),
        );
        let (session, seq) = v.checkpoint.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |c| (c.session_id.clone(), c.seq.to_string()),
        );
        println!("{shard:<8} {owner:<40} {age:>10}  {session:<34} {seq:>10}");
    }
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM; exits at once on a
/// second one, for when a clean shutdown hangs.
fn watch_signals(shutdown: CancellationToken) -> Result<(), RunError> {
    let listen = |kind| signal(kind).map_err(RunError::Signals);
    let mut interrupt = listen(SignalKind::interrupt())?;
    let mut terminate = listen(SignalKind::terminate())?;
    tokio::spawn(async move {
        let mut received = 0_u32;
        loop {
            let name = tokio::select! {
                Some(()) = interrupt.recv() => "SIGINT",
                Some(()) = terminate.recv() => "SIGTERM",
                else => return,
            };
            received += 1;
            if received == 1 {
                tracing::info!(
                    signal = name,
                    "shutting down; send it again to exit at once"
                );
                shutdown.cancel();
            } else {
                tracing::warn!(
                    signal = name,
                    "second signal, exiting without a clean shutdown"
                );
                std::process::exit(FORCED_EXIT);
            }
        }
    });
    Ok(())
}
