//! Loading: which file, which layers, and where each value came from.
//!
//! Three layers are merged key by key, later ones winning: the defaults of
//! the key table, the TOML file (parsed once into a [`toml::Table`]), and the
//! environment. The result is one raw value and one [`Source`] per key of the
//! table, which [`super::build`] converts. The environment is read through an
//! injectable lookup so that tests never touch the process environment.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::build::Builder;
use super::keys::{self, KEYS, Key};
use super::{Config, ConfigError, ConfigErrors};

/// The file read when neither `--config` nor `DISCORD_BRIDGE_CONFIG` names one.
pub const DEFAULT_FILE: &str = "discord-bridge.toml";

/// The environment variable that names the configuration file.
pub const CONFIG_FILE_ENV: &str = "DISCORD_BRIDGE_CONFIG";

/// The largest configuration file read: 1 MiB. Every key at its longest
/// fits in a fraction of that; more is not a configuration (`--config
/// /dev/zero` would otherwise be read until memory runs out).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

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

    let chosen = choose_file(opts, &env);
    let table = chosen.as_ref().and_then(|c| read_file(c, &mut errors));
    let file_path = chosen.map(|c| c.path);
    let file = match (&file_path, &table) {
        (Some(path), Some(table)) => {
            check_unknown_keys(path, table, &mut errors);
            Some(FileLayer { path, table })
        }
        _ => None,
    };

    let settings = resolve(&env, file.as_ref());
    let config = Builder::new(&settings, &opts.base_dir, &mut errors).build(opts.require_token);
    match config {
        Some(config) if errors.is_empty() => Ok(Loaded {
            config,
            file: file_path,
            sources: settings.into_iter().map(|s| (s.key, s.source)).collect(),
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The configuration with nothing set: the key table's defaults converted
/// and checked by the same code as any other value. This is what
/// [`Config::default`] returns, so the two cannot disagree.
///
/// # Errors
/// Only if a default of the key table is itself invalid, which the tests
/// rule out.
pub(super) fn defaults() -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let settings = resolve(&|_| None, None);
    let config = Builder::new(&settings, Path::new(""), &mut errors).build(false);
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors(errors)),
    }
}

/// One key's effective raw value, before conversion, and where it came from.
///
/// Deliberately not `Debug`: the raw value of a secret key is the secret.
pub(super) struct Setting {
    pub(super) key: &'static Key,
    /// `None` when the key is unset everywhere and has no default.
    pub(super) value: Option<Value>,
    pub(super) source: Source,
}

/// The parsed configuration file and its path.
struct FileLayer<'a> {
    path: &'a Path,
    table: &'a Table,
}

/// The merge, key by key: the environment variable if set, else the file's
/// entry, else the table's default. Each variable sets exactly its key; there
/// is no prefix-based mapping that a stray `NATS_SOMETHING` could leak into.
fn resolve(env: &dyn Fn(&str) -> Option<String>, file: Option<&FileLayer<'_>>) -> Vec<Setting> {
    KEYS.iter()
        .map(|key| {
            let (table, name) = key.split();
            let from_file = file.and_then(|f| {
                let value = f.table.get(table)?.as_table()?.get(name)?;
                Some((value.clone(), Source::File(f.path.to_owned())))
            });
            let (value, source) = match env(key.env) {
                Some(v) => (Some(Value::String(v)), Source::Env(key.env)),
                None => match from_file {
                    Some((v, source)) => (Some(v), source),
                    None => (key.default.map(Value::from), Source::Default),
                },
            };
            Setting { key, value, source }
        })
        .collect()
}

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
fn read_file(chosen: &Chosen, errors: &mut Vec<ConfigError>) -> Option<Table> {
    let path = &chosen.path;
    let text = match read_capped(path) {
        Ok(Some(text)) => text,
        Ok(None) => {
            errors.push(file_error(
                path,
                format!(
                    "is larger than {} KiB; a configuration file is a few KiB of TOML",
                    MAX_FILE_BYTES / 1024
                ),
            ));
            return None;
        }
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
    match toml::from_str(&text) {
        Ok(table) => Some(table),
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
            None
        }
    }
}

/// The file's text, or `None` when it is larger than [`MAX_FILE_BYTES`]
/// (read no further than one byte past the cap, whatever the file is).
fn read_capped(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Ok(None);
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// A key of the file as it is written in TOML: bare when it can be, quoted
/// (with escapes) otherwise, so that an empty key or one holding a line
/// break still reads as one name; cut after 64 characters.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let shown = if bare {
        key.to_owned()
    } else {
        // Rust's escapes match TOML's basic strings for what matters here
        // (quotes, backslashes, control characters); toml's own writer
        // would pick a multi-line string with the raw line break.
        format!("{key:?}")
    };
    match shown.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &shown[..at]),
        None => shown,
    }
}

/// Reports every key of the file that is not in the table: a typo must not
/// silently leave a default in force.
fn check_unknown_keys(path: &Path, table: &Table, errors: &mut Vec<ConfigError>) {
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
    for (name, value) in table {
        let known_table = KEYS.iter().any(|k| k.split().0 == name);
        match value {
            Value::Table(entries) if known_table => {
                for entry in entries.keys() {
                    let dotted = format!("{}.{}", key_text(name), key_text(entry));
                    if keys::by_key(&dotted).is_none() {
                        errors.push(unknown(dotted, "unknown key"));
                    }
                }
            }
            _ if known_table => errors.push(unknown(
                key_text(name),
                &format!("`{name}` must be a table (`[{name}]`)"),
            )),
            _ => errors.push(unknown(key_text(name), "unknown key")),
        }
    }
}
