//! Which shards this process runs, and how to hand each a command.
//!
//! Each shard's unit registers its command queue while its gateway task
//! runs ([`Routes::register`]) and the registration ends with the unit
//! ([`RouteGuard`]), whether it stopped, lost its lease or was refused by
//! Discord. The command listener watches the set to subscribe and
//! unsubscribe the per-shard subjects, so only the process that runs a
//! shard answers on its subject.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

/// Commands waiting for one shard task; more than the rate limit lets out
/// in a minute would only wait to be refused.
pub(crate) const SHARD_QUEUE: usize = 128;

/// Why a shard did not send a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No live session (the machine's state), or the shard is gone.
    NotConnected(&'static str),
    /// The send budget is spent for this long.
    RateLimited(Duration),
}

/// Completed once the frame is written to the socket (`Ok`) or refused;
/// dropped unanswered when the connection closed before the write.
pub(crate) type Done = oneshot::Sender<Result<(), Refused>>;

/// One command for one shard task.
#[derive(Debug)]
pub(crate) struct ShardCommand {
    /// The frame.
    pub text: String,
    /// An op 3, which the shard remembers.
    pub presence: bool,
    /// The answer.
    pub done: Done,
}

type Table = BTreeMap<u32, (u64, mpsc::Sender<ShardCommand>)>;

/// The running shards' command queues. Clones share them.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    table: watch::Sender<Table>,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            table: watch::Sender::new(Table::new()),
        }
    }
}

/// Ends a registration when dropped.
#[derive(Debug)]
pub(crate) struct RouteGuard {
    routes: Routes,
    shard: u32,
    generation: u64,
}

impl Routes {
    /// Registers `shard`'s queue until the guard is dropped. A newer
    /// registration of the same shard replaces it (the older guard then
    /// removes nothing).
    pub(crate) fn register(&self, shard: u32) -> (RouteGuard, mpsc::Receiver<ShardCommand>) {
        let (tx, rx) = mpsc::channel(SHARD_QUEUE);
        let generation = fastrand::u64(..);
        self.table.send_modify(|t| {
            t.insert(shard, (generation, tx));
        });
        let guard = RouteGuard {
            routes: self.clone(),
            shard,
            generation,
        };
        (guard, rx)
    }

    /// The queue of `shard`, if it runs here.
    pub(crate) fn get(&self, shard: u32) -> Option<mpsc::Sender<ShardCommand>> {
        self.table.borrow().get(&shard).map(|(_, tx)| tx.clone())
    }

    /// The shards running here now.
    pub(crate) fn running(&self) -> BTreeSet<u32> {
        self.table.borrow().keys().copied().collect()
    }

    /// Changes of the set of running shards.
    pub(crate) fn watch(&self) -> watch::Receiver<Table> {
        self.table.subscribe()
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes.table.send_if_modified(|t| {
            if t.get(&self.shard)
                .is_some_and(|(g, _)| *g == self.generation)
            {
                t.remove(&self.shard);
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_lasts_as_long_as_its_guard() {
        let routes = Routes::default();
        let mut changes = routes.watch();
        let (guard, _rx) = routes.register(3);
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert_eq!(routes.running(), BTreeSet::from([3]));
        assert!(routes.get(3).is_some());
        // A successor registers before the predecessor's guard is gone.
        let (newer, _rx2) = routes.register(3);
        drop(guard);
        assert!(routes.get(3).is_some(), "the older guard removes nothing");
        drop(newer);
        assert!(routes.get(3).is_none());
        assert!(changes.has_changed().unwrap());
        assert!(routes.running().is_empty());
    }
}
