//! The command line: `discord-bridge [--config PATH] [COMMAND]`.
//!
//! Only the choice of command and file lives here; every setting comes from
//! the configuration (file and environment, see `check-config`), so that a
//! container, a systemd unit and a developer shell configure the bridge the
//! same way.

use std::path::PathBuf;
#[cfg(feature = "demo")]
use std::time::Duration;

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
use crate::demo::DemoOptions;

/// Holds Discord Gateway sessions and publishes their events to NATS/JetStream.
///
/// Settings come from built-in defaults, then a TOML file, then environment
/// variables (each wins over the previous). Run `discord-bridge check-config`
/// to list every setting with its environment variable, its effective value
/// and where that value came from. Exit codes: 0 clean shutdown, 1 runtime
/// error (e.g. Discord refused the token), 2 configuration error.
#[derive(Debug, Parser)]
#[command(name = "discord-bridge", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file [default: $DISCORD_BRIDGE_CONFIG, else
    /// ./discord-bridge.toml if present].
    ///
    /// Environment variables override the file's values; an unknown key in
    /// the file is an error.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Bridge a real bot to NATS (the default command).
    ///
    /// Connects to Discord with DISCORD_BOT_TOKEN and publishes the bot's
    /// events to NATS. Stops cleanly on SIGINT or SIGTERM; a second signal
    /// exits at once.
    Run,
    /// Try the bridge offline: simulated Discord, local NATS, printed events.
    ///
    /// Starts a simulated gateway, a NATS server (a local `nats-server -js`
    /// child if none answers at NATS_URL), the bridge and the adapter in one
    /// process, and prints each event as a capsule receives it. No token
    /// needed; Ctrl-C stops it.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Print the effective configuration, or every configuration error.
    ///
    /// Each key is listed with its environment variable, its value (secrets
    /// shown as <redacted>) and where the value came from: default, file or
    /// environment. Exits 0 when the configuration is valid, 2 otherwise.
    CheckConfig,
    /// Print which process owns each shard, from NATS KV.
    ///
    /// For every shard of this bot with a lease or a checkpoint: its owner
    /// (process id and host), the lease's age, and the checkpointed session
    /// and acked seq. Needs NATS (with JetStream) and DISCORD_BOT_TOKEN (the
    /// keys are named after a hash of it). Exits 1 when NATS cannot be read.
    Shards(ShardsArgs),
    /// Ask a running bridge whether it is ready (its /readyz), for probes.
    ///
    /// Asks http://<http.listen>/readyz of the same configuration (a
    /// wildcard address is asked on loopback), or --url. Prints the
    /// bridge's one-line answer. Exits 0 when ready, 1 when not ready or
    /// no answer within 3 s, 2 when http.listen is unset and no --url is
    /// given. Needs no token.
    Healthcheck(HealthcheckArgs),
}

/// Options of `healthcheck`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to ask instead of the one http.listen gives, e.g.
    /// http://10.0.0.5:9090/readyz (/readyz is added to a URL without a
    /// path).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Options of `shards`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ShardsArgs {
    /// One JSON document instead of a table, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Options of `demo`.
#[cfg(feature = "demo")]
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,
}

#[cfg(feature = "demo")]
impl DemoArgs {
    /// The options the demo runs with.
    #[must_use]
    pub fn options(&self) -> DemoOptions {
        DemoOptions {
            duration: self.duration.map(Duration::from_secs),
        }
    }
}

impl Cli {
    /// The command to run: `run` when none was given.
    #[must_use]
    pub fn selected_command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    #[cfg(feature = "demo")]
    use std::time::Duration;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_and_config_goes_anywhere() {
        let cli = Cli::try_parse_from(["discord-bridge"]).unwrap();
        assert_eq!(cli.selected_command(), Command::Run);
        assert_eq!(cli.config, None);
        let cli =
            Cli::try_parse_from(["discord-bridge", "check-config", "--config", "x.toml"]).unwrap();
        assert_eq!(cli.selected_command(), Command::CheckConfig);
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        let cli = Cli::try_parse_from(["discord-bridge", "--config", "y.toml", "run"]).unwrap();
        assert_eq!(cli.selected_command(), Command::Run);
        assert_eq!(cli.config, Some(PathBuf::from("y.toml")));
    }

    #[test]
    fn healthcheck_takes_an_optional_url() {
        let cli = Cli::try_parse_from(["discord-bridge", "healthcheck"]).unwrap();
        assert_eq!(
            cli.selected_command(),
            Command::Healthcheck(HealthcheckArgs { url: None })
        );
        let cli =
            Cli::try_parse_from(["discord-bridge", "healthcheck", "--url", "http://h:1"]).unwrap();
        assert_eq!(
            cli.selected_command(),
            Command::Healthcheck(HealthcheckArgs {
                url: Some("http://h:1".into())
            })
        );
    }

    #[cfg(feature = "demo")]
    #[test]
    fn demo_duration_is_whole_positive_seconds() {
        let cli = Cli::try_parse_from(["discord-bridge", "demo", "--duration", "3"]).unwrap();
        let Command::Demo(args) = cli.selected_command() else {
            panic!("not demo");
        };
        assert_eq!(args.options().duration, Some(Duration::from_secs(3)));
        assert!(Cli::try_parse_from(["discord-bridge", "demo", "--duration", "0"]).is_err());
        assert!(Cli::try_parse_from(["discord-bridge", "demo", "--duration", "x"]).is_err());
        let cli = Cli::try_parse_from(["discord-bridge", "demo"]).unwrap();
        assert_eq!(
            cli.selected_command(),
            Command::Demo(DemoArgs { duration: None })
        );
    }
}
