//! Fault injection for the tests of the supervisor: named points in the
//! shell where a test can make a task panic or fail, to prove that the
//! process then ends with exit code 1 and a message instead of stalling.
//!
//! Compiled in only with the `failpoints` feature, which the end-to-end test
//! crate enables; release builds (the Docker image) have none and
//! [`hit`] is an empty inline function there.
//!
//! `DISCORD_BRIDGE_FAILPOINTS=name=action[,name=action…]`, with `action`
//! `panic` or `error`, read once per process.

use crate::io::tasks::TaskError;

/// The environment variable that arms failpoints.
#[cfg(feature = "failpoints")]
const ENV: &str = "DISCORD_BRIDGE_FAILPOINTS";

/// Passes through failpoint `name`.
///
/// # Errors
/// When the point is armed with `error`.
///
/// # Panics
/// When the point is armed with `panic`: that is its purpose.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) -> Result<(), TaskError> {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var(ENV)
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(n, a)| (n.trim().to_owned(), a.trim().to_owned()))
            .collect()
    });
    match armed
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| a.as_str())
    {
        Some("panic") => panic!("failpoint {name}"),
        Some("error") => Err(TaskError(format!("failpoint {name}"))),
        _ => Ok(()),
    }
}

/// Passes through failpoint `name` (failpoints are compiled out).
///
/// # Errors
/// Never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) const fn hit(_name: &str) -> Result<(), TaskError> {
    Ok(())
}
