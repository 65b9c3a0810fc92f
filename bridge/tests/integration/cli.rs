//! The real binary: exit codes, `check-config` output, error reports, help.
//!
//! Every run gets an empty environment (plus PATH) and a fresh temporary
//! working directory, so nothing of the developer's shell or checkout leaks in.

use std::path::Path;
use std::process::Command;

const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.cli-test-bot-token";
const PASSWORD: &str = "cli-test-nats-password";
const NATS_TOKEN: &str = "cli-test-nats-token";
const SEED: &str = "SUALMXSLBSZ42LWBKIEJVYCOUFTQNR4ZJTGTQXW4FENDAJJYTB5PNZMTWU";

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn bridge(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_discord-bridge"));
    cmd.env_clear().current_dir(dir).args(args);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(vars.iter().copied());
    let out = cmd.output().expect("the binary runs");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_no_secret(out: &Output) {
    for secret in [TOKEN, "cli-test-bot-token", PASSWORD, NATS_TOKEN, SEED] {
        assert!(
            !out.all().contains(secret),
            "{secret} leaked:\n{}",
            out.all()
        );
    }
}

#[test]
fn check_config_shows_values_and_sources_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let auth_variants: [&[(&str, &str)]; 3] = [
        &[("NATS_USER", "alice"), ("NATS_PASSWORD", PASSWORD)],
        &[("NATS_TOKEN", NATS_TOKEN)],
        &[("NATS_NKEY_SEED", SEED)],
    ];
    for auth in auth_variants {
        let mut vars = vec![
            ("DISCORD_BOT_TOKEN", TOKEN),
            ("DISCORD_GATEWAY_INTENTS", "GUILDS,GUILD_MESSAGES"),
            ("BRIDGE_CAPSULE_ID", "my-capsule"),
            ("NATS_URL", "nats://127.0.0.1:4222,nats://127.0.0.1:4223"),
        ];
        vars.extend_from_slice(auth);
        let out = bridge(dir.path(), &["check-config"], &vars);
        assert_eq!(out.code, Some(0), "{}", out.all());
        assert_no_secret(&out);
        let s = &out.stdout;
        assert!(s.contains("token = \"<redacted>\""), "{s}");
        assert!(s.contains("# env DISCORD_BOT_TOKEN"), "{s}");
        assert!(s.contains("intents = 513"), "{s}");
        assert!(s.contains("subject_prefix = \"my-capsule\""), "{s}");
        assert!(s.contains("# env BRIDGE_CAPSULE_ID"), "{s}");
        assert!(s.contains("stream = \"ASTRID_DISCORD\""), "{s}");
        assert!(
            s.contains("url = [\"nats://127.0.0.1:4222\", \"nats://127.0.0.1:4223\"]"),
            "{s}"
        );
        assert!(s.contains("# default"), "{s}");
        assert!(s.contains("[DISCORD_GATEWAY_COMPRESSION]"), "{s}");
    }
}

#[test]
fn check_config_reads_the_default_file_of_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("discord-bridge.toml"),
        "[nats]\nstream = \"FROM_FILE\"\npublish = \"core\"\n",
    )
    .unwrap();
    let out = bridge(
        dir.path(),
        &["check-config"],
        &[("BRIDGE_PUBLISH_MODE", "jetstream")],
    );
    assert_eq!(out.code, Some(0), "{}", out.all());
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{}", out.stdout))
            .to_owned()
    };
    assert!(line("stream = ").contains("\"FROM_FILE\""));
    assert!(line("stream = ").contains("# file discord-bridge.toml"));
    assert!(line("publish = ").contains("# env BRIDGE_PUBLISH_MODE"));
}

#[test]
fn a_bad_configuration_lists_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("DISCORD_BOT_TOKEN", "Bot cli-test-bot-token"),
        ("DISCORD_GATEWAY_INTENTS", "GUILDS,NOPE"),
        ("DISCORD_GATEWAY_COMPRESSION", "brotli"),
        ("DISCORD_GATEWAY_URL", "ws://127.0.0.1:1"),
        ("BRIDGE_PUBLISH_MODE", "kafka"),
        ("NATS_URL", "http://alice:cli-test-nats-password@nats:4222"),
        ("NATS_TOKEN", NATS_TOKEN),
        ("NATS_NKEY_SEED", SEED),
    ];
    for command in ["check-config", "run", "demo"] {
        let out = bridge(dir.path(), &[command], &vars);
        assert_eq!(out.code, Some(2), "{command}: {}", out.all());
        assert_no_secret(&out);
        assert!(out.stdout.is_empty(), "{command}: {}", out.stdout);
        let e = &out.stderr;
        assert!(
            e.starts_with("error: invalid configuration (7 problems):"),
            "{command}: {e}"
        );
        for var in [
            "DISCORD_BOT_TOKEN",
            "DISCORD_GATEWAY_INTENTS",
            "DISCORD_GATEWAY_COMPRESSION",
            "DISCORD_GATEWAY_URL",
            "BRIDGE_PUBLISH_MODE",
            "NATS_URL",
            "NATS_NKEY_SEED",
        ] {
            assert!(
                e.contains(&format!("({var})")),
                "{command}: {var} missing: {e}"
            );
        }
        assert!(e.contains("discord.allow_insecure_gateway"), "{e}");
    }
}

#[test]
fn run_without_a_token_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["run"][..], &[][..]] {
        let out = bridge(dir.path(), args, &[]);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.all());
        assert!(out.stderr.contains("DISCORD_BOT_TOKEN"), "{}", out.stderr);
        assert!(out.stderr.contains("discord.token"), "{}", out.stderr);
    }
}

#[test]
fn a_missing_config_file_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = bridge(
        dir.path(),
        &["--config", "nowhere/bridge.toml", "check-config"],
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.stderr.contains("nowhere/bridge.toml"), "{}", out.stderr);
    let out = bridge(
        dir.path(),
        &["check-config"],
        &[("DISCORD_BRIDGE_CONFIG", "elsewhere.toml")],
    );
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.stderr.contains("elsewhere.toml"), "{}", out.stderr);
    assert!(
        out.stderr.contains("DISCORD_BRIDGE_CONFIG"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unknown_key_in_the_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("conf.toml");
    std::fs::write(&file, "[nats]\nstreem = \"X\"\n").unwrap();
    let out = bridge(dir.path(), &["check-config", "--config", "conf.toml"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.stderr.contains("nats.streem"), "{}", out.stderr);
    assert!(out.stderr.contains("conf.toml"), "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean nats.stream"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_lists_the_three_commands_and_version_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = bridge(dir.path(), &["--help"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.all());
    for command in ["run", "demo", "check-config", "--config"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(command)),
            "{command} missing:\n{}",
            out.stdout
        );
    }
    let out = bridge(dir.path(), &["demo", "--help"], &[]);
    assert!(
        out.stdout.contains("--duration <SECONDS>"),
        "{}",
        out.stdout
    );
    let out = bridge(dir.path(), &["--version"], &[]);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.starts_with("discord-bridge "), "{}", out.stdout);
    let out = bridge(dir.path(), &["frobnicate"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.all());
}

/// Absurd values are configuration errors (exit 2) naming the key, not an
/// allocation failure or a hang: a number past its bound, a huge token (not
/// echoed), a configuration file that never ends.
#[test]
fn absurd_values_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let huge_token = format!("{TOKEN}{}", "x".repeat(10_000));
    let out = bridge(
        dir.path(),
        &["check-config"],
        &[
            ("DISCORD_BOT_TOKEN", &huge_token),
            ("BRIDGE_BUFFER_EVENTS", "18446744073709551615"),
            ("DISCORD_SHARDS", "0-4294967294/4294967295"),
            ("BRIDGE_STALL_TIMEOUT_SECS", "99999999999"),
        ],
    );
    assert_eq!(out.code, Some(2), "{}", out.all());
    for key in [
        "discord.token",
        "nats.buffer_events",
        "discord.shards",
        "nats.stall_timeout_secs",
    ] {
        assert!(out.stderr.contains(key), "{key} not named:\n{}", out.stderr);
    }
    assert_no_secret(&out);
    if Path::new("/dev/zero").exists() {
        let out = bridge(dir.path(), &["check-config", "--config", "/dev/zero"], &[]);
        assert_eq!(out.code, Some(2), "{}", out.all());
        assert!(
            out.stderr.contains("larger than 1024 KiB"),
            "{}",
            out.stderr
        );
    }
}
