//! Waiting for a condition with a deadline.
//!
//! End-to-end tests observe other processes and tasks, so "after X, Y holds"
//! can only be checked by polling. A fixed sleep is either too short on a
//! loaded CI machine (flaky) or too long everywhere else (slow); polling a
//! condition every [`POLL_INTERVAL`] until a deadline is neither.
//!
//! Deadlines are measured on the wall clock, not tokio's clock, so they mean
//! the same under a runtime with paused time. The per-attempt timeout of
//! [`eventually`] uses tokio's clock, which under paused time may fire as soon
//! as the runtime is idle: use these helpers with real time.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is re-evaluated: short enough not to slow tests
/// down, long enough not to busy-loop a 2-core machine.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` until it returns `Some(value)` and returns that value.
///
/// Each attempt is cut off at the remaining time, so a condition that hangs
/// (a request to a dead server) cannot hold the test past the deadline.
///
/// # Panics
///
/// When `timeout` elapses first, with a message naming `what` was awaited.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: impl Display, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(value)) = tokio::time::timeout(remaining, condition()).await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL.min(remaining)).await;
    }
}

/// The blocking form of [`eventually`], for conditions that need no runtime
/// (a file appears, a process is gone). It blocks the calling thread between
/// attempts, so do not call it from inside an async test.
///
/// # Panics
///
/// When `timeout` elapses first, with a message naming `what` was awaited.
pub fn eventually_sync<T>(
    timeout: Duration,
    what: impl Display,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}
