//! Loading: which file, which layers, and where each value came from.
//!
//! Three figment layers are merged, later ones winning: the defaults of the
//! key table, the TOML file, and the environment. The environment layer is
//! built from the key table too (each variable sets exactly its key; there is
//! no prefix-based mapping that a stray `NATS_SOMETHING` could leak into), and
//! it is read through an injectable lookup so that tests never touch the
//! process environment.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::build::Builder;
use super::keys::{self, KEYS, Key};
use super::{Config, ConfigError, ConfigErrors};

/// The file read when neither `--config` nor `DISCORD_BRIDGE_CONFIG` names one.
pub const DEFAULT_FILE: &str = "discord-bridge.toml";

/// The environment variable that names the configuration file.
pub const CONFIG_FILE_ENV: &str = "DISCORD_BRIDGE_CONFIG";

/// What to load, and from where; tests pass their own environment lookup.
pub struct LoadOptions<'a> {
    /// The file named by `--config`; when `None`, `DISCORD_BRIDGE_CONFIG`,
    /// then `discord-bridge.toml` in `base_dir` if it exists.
    pub file: Option<PathBuf>,
    /// Reads one environment variable; `None` or an empty value is "unset".
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Directory that relative paths are resolved against (the configuration
    /// file, creds and TLS files) and where `discord-bridge.toml` is looked
    /// for; empty means the working directory, which is what the binary uses.
    pub base_dir: PathBuf,
    /// Whether `discord.token` must be set (the `run` command).
    pub require_token: bool,
}

impl fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("file", &self.file)
            .field("base_dir", &self.base_dir)
            .field("require_token", &self.require_token)
            .finish_non_exhaustive()
    }
}

/// Reads a variable of the real process environment; non-UTF-8 bytes become
/// U+FFFD, which then fails validation instead of being silently ignored.
#[must_use]
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Where one effective value came from, for `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default (or unset).
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "env {var}"),
        }
    }
}

/// A validated configuration and the origin of each of its values.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration the bridge runs with.
    pub config: Config,
    /// The TOML file that was read, if any.
    pub file: Option<PathBuf>,
    pub(super) sources: Vec<(&'static Key, Source)>,
}

impl Loaded {
    /// Where the value of `key` (dotted) came from; `None` for an unknown key.
    #[must_use]
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.sources
            .iter()
            .find(|(k, _)| k.key == key)
            .map(|(_, s)| s)
    }
}

/// Loads and validates the configuration from the real environment and the
/// working directory.
///
/// # Errors
/// Every problem found, each naming its key and environment variable.
pub fn load_from_process(
    file: Option<PathBuf>,
    require_token: bool,
) -> Result<Loaded, ConfigErrors> {
    load(&LoadOptions {
        file,
        env: &process_env,
        base_dir: PathBuf::new(),
        require_token,
    })
}

/// Loads and validates the configuration: defaults < TOML file < environment.
///
/// # Errors
/// Every problem found — unreadable or unknown file content, values that do
/// not parse, settings that contradict each other — collected together.
pub fn load(opts: &LoadOptions<'_>) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let env = |name: &str| (opts.env)(name).filter(|v| !v.trim().is_empty());

    let file = choose_file(opts, &env);
    let file_dict = match &file {
        Some(chosen) => read_file(chosen, &mut errors),
        None => None,
    };
    let file_path = file.map(|c| c.path);

    let mut figment = Figment::new().merge(Layer::new(Metadata::named(DEFAULTS), defaults()));
    if let (Some(path), Some(dict)) = (&file_path, file_dict) {
        check_unknown_keys(path, &dict, &mut errors);
        figment = figment.merge(Layer::new(Metadata::from(FILE, path.as_path()), dict));
    }
    let mut env_dict = Dict::new();
    for key in KEYS {
        if let Some(value) = env(key.env) {
            insert(&mut env_dict, key, Value::from(value));
        }
    }
    figment = figment.merge(Layer::new(Metadata::named(ENV), env_dict));

    let sources: Vec<(&'static Key, Source)> = KEYS
        .iter()
        .map(|key| (key, source_of(&figment, key)))
        .collect();
    let mut builder = Builder::new(&figment, &sources, &opts.base_dir, &mut errors);
    let config = builder.build(opts.require_token);

    if errors.is_empty() {
        Ok(Loaded {
            config,
            file: file_path,
            sources,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

const DEFAULTS: &str = "default";
const FILE: &str = "file";
const ENV: &str = "environment";

/// The chosen file, and whether its absence is an error.
struct Chosen {
    path: PathBuf,
    /// `--config` or `DISCORD_BRIDGE_CONFIG`, which must name a file.
    named_by: Option<&'static str>,
}

fn choose_file(opts: &LoadOptions<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<Chosen> {
    if let Some(path) = &opts.file {
        return Some(Chosen {
            path: opts.base_dir.join(path),
            named_by: Some("--config"),
        });
    }
    if let Some(path) = env(CONFIG_FILE_ENV) {
        return Some(Chosen {
            path: opts.base_dir.join(path.trim()),
            named_by: Some(CONFIG_FILE_ENV),
        });
    }
    let default = opts.base_dir.join(DEFAULT_FILE);
    default.is_file().then_some(Chosen {
        path: default,
        named_by: None,
    })
}

fn file_error(path: &Path, message: String) -> ConfigError {
    ConfigError {
        key: "--config".to_owned(),
        env: CONFIG_FILE_ENV.to_owned(),
        message: format!("{}: {message}", path.display()),
    }
}

/// Reads and parses the file; TOML errors are reduced to their position and
/// description, because the parser's own report quotes the offending line,
/// which may hold a token.
fn read_file(chosen: &Chosen, errors: &mut Vec<ConfigError>) -> Option<Dict> {
    let path = &chosen.path;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let by = chosen.named_by.unwrap_or("the working directory");
            errors.push(file_error(
                path,
                format!(
                    "configuration file not found (named by {by}); fix the path or create the file"
                ),
            ));
            return None;
        }
        Err(e) => {
            errors.push(file_error(
                path,
                format!("cannot read the configuration file: {e}"),
            ));
            return None;
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        Err(e) => {
            let at = e.span().map_or_else(String::new, |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            });
            errors.push(file_error(
                path,
                format!("not valid TOML{at}: {}", e.message().trim()),
            ));
            return None;
        }
    };
    match Value::serialize(table) {
        Ok(Value::Dict(_, dict)) => Some(dict),
        Ok(_) | Err(_) => {
            errors.push(file_error(
                path,
                "could not be read as a TOML table".to_owned(),
            ));
            None
        }
    }
}

/// Reports every key of the file that is not in the table: a typo must not
/// silently leave a default in force.
fn check_unknown_keys(path: &Path, dict: &Dict, errors: &mut Vec<ConfigError>) {
    let unknown = |key: String, what: &str| {
        let hint =
            keys::suggest(&key).map_or_else(String::new, |k| format!("; did you mean {}?", k.key));
        ConfigError {
            key,
            env: String::new(),
            message: format!(
                "{what} in {}{hint} (run `discord-bridge check-config` to list every key)",
                path.display()
            ),
        }
    };
    for (table, value) in dict {
        let known_table = KEYS.iter().any(|k| k.split().0 == table);
        match value {
            Value::Dict(_, entries) if known_table => {
                for name in entries.keys() {
                    let dotted = format!("{table}.{name}");
                    if keys::by_key(&dotted).is_none() {
                        errors.push(unknown(dotted, "unknown key"));
                    }
                }
            }
            _ if known_table => errors.push(unknown(
                table.clone(),
                &format!("`{table}` must be a table (`[{table}]`)"),
            )),
            _ => errors.push(unknown(table.clone(), "unknown key")),
        }
    }
}

/// The defaults of the key table, as strings parsed like environment values.
fn defaults() -> Dict {
    let mut dict = Dict::new();
    for key in KEYS {
        if let Some(default) = key.default {
            insert(&mut dict, key, Value::from(default));
        }
    }
    dict
}

fn insert(dict: &mut Dict, key: &Key, value: Value) {
    let (table, name) = key.split();
    let entry = dict
        .entry(table.to_owned())
        .or_insert_with(|| Value::from(Dict::new()));
    if let Value::Dict(_, inner) = entry {
        inner.insert(name.to_owned(), value);
    }
}

fn source_of(figment: &Figment, key: &'static Key) -> Source {
    match figment.find_metadata(key.key) {
        Some(meta) if meta.name == ENV => Source::Env(key.env),
        Some(meta) if meta.name == FILE => meta
            .source
            .as_ref()
            .and_then(figment::Source::file_path)
            .map_or(Source::Default, |p| Source::File(p.to_owned())),
        _ => Source::Default,
    }
}

/// One figment layer: a dictionary and the metadata that names its origin.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Layer {
    const fn new(metadata: Metadata, dict: Dict) -> Self {
        Self { metadata, dict }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}
