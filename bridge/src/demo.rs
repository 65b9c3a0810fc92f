//! `discord-bridge demo`: the simulator, a NATS server and the adapter in one
//! process, printing events as a capsule would receive them. (Stub: the lead
//! fills it in.)

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::RunError;

/// What the `demo` command was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoOptions {
    /// Stop on its own after this long (scripted demos, smoke tests); `None`
    /// runs until Ctrl-C.
    pub duration: Option<Duration>,
}

/// Runs the demo until `shutdown` is cancelled or `options.duration` elapses.
///
/// # Errors
/// Set-up failures of the simulator, NATS or the adapter; see [`RunError`].
pub async fn run(
    config: Config,
    options: DemoOptions,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let _ = config;
    match options.duration {
        Some(duration) => {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(duration) => {}
            }
        }
        None => shutdown.cancelled().await,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stops_after_the_duration_or_on_shutdown() {
        let options = DemoOptions {
            duration: Some(Duration::from_secs(5)),
        };
        let started = tokio::time::Instant::now();
        run(Config::default(), options, CancellationToken::new())
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(5) && elapsed < Duration::from_secs(6));

        let token = CancellationToken::new();
        token.cancel();
        run(Config::default(), DemoOptions::default(), token)
            .await
            .unwrap();
    }
}
