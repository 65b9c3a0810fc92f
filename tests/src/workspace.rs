//! Paths of the workspace this crate was built in.
//!
//! Tests run with the crate directory as working directory, and binaries of
//! other workspace crates are not exposed through `CARGO_BIN_EXE_*` here, so
//! everything is located from this crate's manifest directory.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of this crate's directory (`tests/`).
#[must_use]
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives one level below the workspace root")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative paths are
/// taken from the workspace root, where `scripts/test` runs cargo), else
/// `<workspace>/target`.
#[must_use]
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// `<workspace>/.tools/bin`, where `scripts/ensure-nats-server` links the
/// `nats-server` it installs.
#[must_use]
pub fn tools_bin() -> PathBuf {
    root().join(".tools").join("bin")
}
