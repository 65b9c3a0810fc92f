//! Loader tests: layers, every environment variable, validation, redaction.
//! The environment is always injected; the process environment is never read
//! or changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::KEYS;
use super::render::{Shown, shown};
use super::*;
use crate::gateway::Intents;

const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.token-value-for-tests";

/// A self-signed CA certificate (its key was thrown away): CA file settings
/// are checked to hold a usable certificate, and this one is only parsed.
const TEST_CA_PEM: &str = include_str!("test-ca.pem");

fn try_load(
    vars: &[(&str, &str)],
    file: Option<PathBuf>,
    base: &Path,
    require_token: bool,
) -> Result<Loaded, ConfigErrors> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let env = move |name: &str| vars.get(name).cloned();
    load(&LoadOptions {
        file,
        env: &env,
        base_dir: base.to_owned(),
        require_token,
    })
}

/// A directory with no `discord-bridge.toml`, so the default file is absent.
fn empty_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn env_only(vars: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    let dir = empty_dir();
    try_load(vars, None, dir.path(), false)
}

fn errors_of(result: Result<Loaded, ConfigErrors>) -> Vec<ConfigError> {
    match result {
        Ok(loaded) => panic!("expected errors, loaded {:?}", loaded.config),
        Err(ConfigErrors(errors)) => errors,
    }
}

fn keys_of(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

mod layers;
mod limits;
mod prop_tests;
mod validation;
