//! A coordinated shard's checkpoint writer: the session, resume URL and
//! JetStream-acked sequence in NATS KV, so that a successor RESUMEs.
//!
//! A moving resume point is written at most once per [`CHECKPOINT_EVERY`]
//! (the checkpoint is "about a second behind"; replays of what it lags are
//! de-duplicated). A *new session* is written at once: until then the
//! checkpoint names a session Discord ended, and a successor taking over in
//! that window would RESUME it, be refused, and identify a third session —
//! losing what the current one received, with no loss report for it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ownership::{self, Checkpoint, ShardStore};
use super::shard::SessionMark;
use super::supervisor::KV_TIMEOUT;
use super::tasks::TaskError;
use crate::gateway::ShardId;

/// The resume point is written at most this often ("about a second behind").
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What the checkpoint of a coordinated shard needs.
pub(crate) struct Handover {
    pub(crate) store: ShardStore,
    pub(crate) owner: Arc<str>,
    /// Cleared when the lease was lost: the successor's checkpoint is not
    /// ours to overwrite.
    pub(crate) keep: Arc<AtomicBool>,
}

/// Writes the shard's checkpoint as its session and resume point move (see
/// the [module docs](self)), and a last time when stopped — unless the
/// lease was lost.
pub(crate) async fn write_checkpoints(
    handover: Handover,
    shard: ShardId,
    marks: watch::Receiver<Option<SessionMark>>,
    stop: CancellationToken,
) -> Result<(), TaskError> {
    let Handover { store, owner, keep } = handover;
    let write = |checkpoint: Checkpoint| {
        let store = store.clone();
        async move {
            match tokio::time::timeout(KV_TIMEOUT, store.write_checkpoint(shard, &checkpoint)).await
            {
                Ok(Ok(())) => tracing::trace!(seq = checkpoint.seq, "checkpoint written"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the shard's checkpoint"),
                Err(_) => tracing::warn!("writing the shard's checkpoint timed out"),
            }
        }
    };
    run(marks, stop, &keep, &owner, write).await;
    Ok(())
}

/// Whether writing `next` may wait for the throttle: only while it is the
/// session last written, with a moved resume point.
fn throttled(written: Option<&SessionMark>, next: Option<&SessionMark>) -> bool {
    match (written, next) {
        (Some(w), Some(n)) => w.epoch == n.epoch && w.session_id == n.session_id,
        // Nothing to write (the session ended, the next one is not ready).
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// The writer's loop, with the KV write passed in.
async fn run<W, F>(
    mut marks: watch::Receiver<Option<SessionMark>>,
    stop: CancellationToken,
    keep: &AtomicBool,
    owner: &str,
    mut write: W,
) where
    W: FnMut(Checkpoint) -> F,
    F: Future<Output = ()>,
{
    let mut written: Option<SessionMark> = None;
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        let mut stopping = tokio::select! {
            biased;
            () = stop.cancelled() => true,
            changed = marks.changed() => changed.is_err(),
        };
        if let Some(at) = last_write {
            // Wait out the throttle, unless a new session comes meanwhile.
            while !stopping && throttled(written.as_ref(), marks.borrow().as_ref()) {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => stopping = true,
                    () = tokio::time::sleep_until(at + CHECKPOINT_EVERY) => break,
                    changed = marks.changed() => stopping = changed.is_err(),
                }
            }
        }
        if !keep.load(Ordering::Relaxed) {
            return;
        }
        let current = marks.borrow_and_update().clone();
        if let Some(mark) = current
            && written.as_ref() != Some(&mark)
        {
            write(Checkpoint {
                session_id: mark.session_id.to_string(),
                resume_url: mark.resume_url.clone(),
                seq: mark.committed,
                owner: owner.to_owned(),
                at_ms: ownership::unix_ms(),
            })
            .await;
            written = Some(mark);
            last_write = Some(tokio::time::Instant::now());
        }
        if stopping || stop.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    fn mark(epoch: u64, session: &str, committed: u64) -> Option<SessionMark> {
        Some(SessionMark {
            epoch,
            session_id: Arc::from(session),
            resume_url: Some("wss://gateway.discord.gg".to_owned()),
            committed,
        })
    }

    /// The checkpoints written: when, session, seq.
    type Written = Arc<Mutex<Vec<(Instant, String, u64)>>>;

    /// Runs the loop over a mark channel; returns the sender, the stop
    /// token, the checkpoints written and the loop's task.
    fn start() -> (
        watch::Sender<Option<SessionMark>>,
        CancellationToken,
        Written,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, seen) = (stop.clone(), Arc::clone(&seen));
            async move {
                let keep = AtomicBool::new(true);
                run(rx, stop, &keep, "owner", |c: Checkpoint| {
                    seen.lock()
                        .unwrap()
                        .push((Instant::now(), c.session_id, c.seq));
                    async {}
                })
                .await;
            }
        });
        (tx, stop, seen, task)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_moving_resume_point_is_throttled_but_a_new_session_is_written_at_once() {
        let (tx, stop, seen, task) = start();
        let t0 = Instant::now();
        tx.send_replace(mark(1, "old", 5));
        settle().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        tx.send_replace(mark(1, "old", 6));
        settle().await;
        // Discord ends the session; the shard identifies a new one.
        tokio::time::advance(Duration::from_millis(100)).await;
        tx.send_replace(None);
        settle().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        tx.send_replace(mark(2, "new", 0));
        settle().await;
        {
            let seen = seen.lock().unwrap();
            let written: Vec<(u128, &str, u64)> = seen
                .iter()
                .map(|(at, s, seq)| (at.duration_since(t0).as_millis(), s.as_str(), *seq))
                .collect();
            assert_eq!(
                written,
                [(0, "old", 5), (300, "new", 0)],
                "the new session at once, the old one's move to 6 never"
            );
        }
        // The new session's resume point moves: throttled again.
        tokio::time::advance(Duration::from_millis(100)).await;
        tx.send_replace(mark(2, "new", 9));
        settle().await;
        assert_eq!(seen.lock().unwrap().len(), 2);
        tokio::time::advance(Duration::from_millis(899)).await;
        settle().await;
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "not before the throttle ends"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            (last.0.duration_since(t0), last.2),
            (Duration::from_millis(1300), 9)
        );
        // Stopping writes nothing new when nothing moved.
        stop.cancel();
        task.await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn only_the_same_session_waits_for_the_throttle() {
        assert!(throttled(
            mark(1, "a", 1).as_ref(),
            mark(1, "a", 2).as_ref()
        ));
        assert!(!throttled(
            mark(1, "a", 1).as_ref(),
            mark(2, "b", 0).as_ref()
        ));
        assert!(!throttled(
            mark(1, "a", 1).as_ref(),
            mark(2, "a", 0).as_ref()
        ));
        assert!(!throttled(None, mark(1, "a", 0).as_ref()));
        assert!(throttled(mark(1, "a", 1).as_ref(), None));
    }
}
