//! The async shell: sockets, timers, NATS, tasks.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::RunError;

/// Runs the bridge until `shutdown` is cancelled (then returns `Ok`) or no
/// shard can continue (then returns the error that stopped the last one).
///
/// # Errors
/// Configuration problems found at start-up, fatal Discord close codes, and
/// NATS set-up failures; see [`RunError`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let _ = config;
    shutdown.cancelled().await;
    Ok(())
}
