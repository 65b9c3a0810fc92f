//! Every task of the process, and what happens when one of them dies.
//!
//! A bridge that silently stops publishing while it looks healthy is the worst
//! failure an operator can have: heartbeats keep the Discord session alive,
//! so nothing else notices. So no task is spawned bare. [`Tasks::spawn`] runs
//! each one under one [`TaskTracker`] (the process waits for all of them on
//! the way out) and observes how it ends: a panic, or an error the task could
//! not handle itself, is recorded as the process's [`TaskFailure`] and
//! cancels the whole tree, so the process shuts down and exits 1 with a
//! message that names the task and its shard.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::gateway::ShardId;

/// Which task: a role, and the shard it serves (none for process-wide ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId {
    /// What the task does, e.g. `publisher`.
    pub role: &'static str,
    /// The shard it belongs to.
    pub shard: Option<ShardId>,
}

impl TaskId {
    /// A process-wide task.
    #[must_use]
    pub const fn process(role: &'static str) -> Self {
        Self { role, shard: None }
    }

    /// A task of one shard.
    #[must_use]
    pub const fn shard(role: &'static str, shard: ShardId) -> Self {
        Self {
            role,
            shard: Some(shard),
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shard {
            Some(shard) => write!(f, "the {} task of shard {shard}", self.role),
            None => write!(f, "the {} task", self.role),
        }
    }
}

/// An error a task gives up on: it ends the process.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TaskError(pub String);

/// How a task died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// It panicked, with this message.
    Panic(String),
    /// It returned an error.
    Error(String),
}

/// The first task that died, which ends the process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{task} {}", match .cause {
    Cause::Panic(m) => format!("panicked: {m}"),
    Cause::Error(m) => format!("failed: {m}"),
})]
pub struct TaskFailure {
    /// The task.
    pub task: TaskId,
    /// What happened.
    pub cause: Cause,
}

/// Spawns and watches the tasks of one process. Clones share everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    failure: Arc<OnceLock<TaskFailure>>,
    /// Cancelled when a task fails: the root of the process's token tree
    /// listens to it.
    failed: CancellationToken,
}

impl Tasks {
    /// No tasks yet.
    #[must_use]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Runs `future` as the task `id`, inside the current tracing span.
    ///
    /// The handle yields `Some(output)` when the task returned `Ok`, and
    /// `None` when it panicked or returned an error: that failure has then
    /// been recorded and [`Tasks::failed`] fires.
    pub(crate) fn spawn<T, F>(&self, id: TaskId, future: F) -> JoinHandle<Option<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, TaskError>> + Send + 'static,
    {
        let this = self.clone();
        let task = async move {
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(value)) => Some(value),
                Ok(Err(e)) => {
                    this.fail(id, Cause::Error(e.0));
                    None
                }
                Err(panic) => {
                    this.fail(id, Cause::Panic(panic_message(panic.as_ref())));
                    None
                }
            }
        };
        self.tracker.spawn(task.in_current_span())
    }

    /// Records the first failure (later ones are only logged) and cancels
    /// the process.
    fn fail(&self, task: TaskId, cause: Cause) {
        let failure = TaskFailure { task, cause };
        tracing::error!("{failure}; shutting the process down");
        let _ = self.failure.set(failure);
        self.failed.cancel();
    }

    /// Resolves once a task has failed.
    #[cfg(test)]
    pub(crate) async fn failed(&self) {
        self.failed.cancelled().await;
    }

    /// A token cancelled when a task fails.
    #[must_use]
    pub(crate) fn failed_token(&self) -> CancellationToken {
        self.failed.clone()
    }

    /// The first failure, if any task failed.
    #[must_use]
    pub(crate) fn failure(&self) -> Option<TaskFailure> {
        self.failure.get().cloned()
    }

    /// Tasks still running.
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Waits until every task spawned so far (and any they spawn) has ended.
    pub(crate) async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_recorded_and_cancels() {
        let tasks = Tasks::new();
        let shard = ShardId::new(1, 2);
        let ok = tasks.spawn(TaskId::shard("gateway", shard), async { Ok(7) });
        assert_eq!(ok.await.ok().flatten(), Some(7));
        assert!(tasks.failure().is_none());

        let boom = tasks.spawn::<(), _>(TaskId::shard("publisher", shard), async {
            panic!("no room");
        });
        assert_eq!(boom.await.ok().flatten(), None);
        tasks.failed().await;
        let failure = tasks.failure().expect("recorded");
        assert_eq!(failure.task, TaskId::shard("publisher", shard));
        assert_eq!(failure.cause, Cause::Panic("no room".into()));
        assert_eq!(
            failure.to_string(),
            "the publisher task of shard 1/2 panicked: no room"
        );
    }

    #[tokio::test]
    async fn the_first_failure_wins_and_errors_count() {
        let tasks = Tasks::new();
        let first = tasks.spawn::<(), _>(TaskId::process("status"), async {
            Err(TaskError("endpoint gone".into()))
        });
        first.await.ok();
        let second = tasks.spawn::<(), _>(TaskId::process("sink"), async { panic!("later") });
        second.await.ok();
        assert_eq!(
            tasks.failure().map(|f| f.cause),
            Some(Cause::Error("endpoint gone".into()))
        );
        tasks.wait().await;
        assert!(tasks.is_empty());
    }
}
