//! Gateway commands over NATS request/reply: the listener that takes a
//! request, has [`crate::gateway::command`] check and route it, hands each
//! frame to its shard's task, and replies once the frames were written.
//!
//! Subjects, and who answers (there is no queue group: every process must
//! see what is addressed to its shards):
//!
//! * `{prefix}.gateway.command.{shard}` is subscribed by the process that
//!   runs the shard, for as long as it runs it ([`Routes`]). A caller who
//!   knows the shard reaches its process, or gets NATS' "no responders" at
//!   once when none runs it.
//! * `{prefix}.gateway.command` is subscribed by every process. A request
//!   that can be judged without knowing the shards (malformed, refused op,
//!   too large) is answered by every process alike; the caller keeps the
//!   first answer. An op 3 without `shard` is applied by every process to
//!   all the shards it runs, and each such process answers. Anything else
//!   is answered only by the process that runs its shard: the others stay
//!   silent, except that one that finds the shard's lease in NATS KV free
//!   (nobody runs it) answers `not_owned` instead of leaving the caller to
//!   time out.
//!
//! A reply is sent only after the shard's writer wrote the frame to the
//! socket (or the command was refused, or the connection closed first).

mod counters;
mod routes;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Message;
use discord_bridge_schemas::{CommandErrorCode as Code, CommandReply, subject};
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesUnordered, SelectAll};
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub(crate) use counters::CommandCounters;
pub(crate) use routes::{Done, Refused, Routes, ShardCommand};

use super::ownership::ShardStore;
use super::tasks::TaskError;
use crate::gateway::ShardId;
use crate::gateway::command::{self, Command, Context, Op, Plan, Refusal, Via};

/// A frame not written within this long counts as lost with its
/// connection (the writer gives a write 10 s).
const WRITE_WAIT: Duration = Duration::from_secs(15);
/// A KV lookup of the designated answer that takes longer is given up.
const KV_TIMEOUT: Duration = Duration::from_secs(2);
/// How long replies still in flight may delay the end of the listener.
const DRAIN: Duration = Duration::from_secs(2);

/// What the listener needs.
pub(crate) struct CommandService {
    /// The NATS client.
    pub client: async_nats::Client,
    /// `nats.subject_prefix`.
    pub prefix: String,
    /// The bot's shard count.
    pub total: u32,
    /// The shards running here.
    pub routes: Routes,
    /// Shard leases, to tell "run elsewhere" from "run nowhere".
    pub leases: Option<ShardStore>,
    /// Answers per op and result.
    pub counters: Arc<CommandCounters>,
}

type Inbox = SelectAll<BoxStream<'static, (Via, Message)>>;

/// Serves commands until `cancel`. A NATS connection that refuses the
/// subscription leaves the bridge without commands (warned), not stopped.
///
/// # Errors
/// None: the type is the supervisor's contract.
pub(crate) async fn serve(svc: CommandService, cancel: CancellationToken) -> Result<(), TaskError> {
    let svc = Arc::new(svc);
    let generic = subject::gateway_command(&svc.prefix);
    let mut inbox: Inbox = SelectAll::new();
    match svc.client.subscribe(generic.clone()).await {
        Ok(sub) => inbox.push(sub.map(|m| (Via::Any, m)).boxed()),
        Err(e) => {
            tracing::warn!(error = %e, subject = generic, "cannot subscribe to gateway commands; commands unavailable");
            return Ok(());
        }
    }
    tracing::info!(subject = generic, "gateway commands ready");
    let mut subscribed: HashMap<u32, CancellationToken> = HashMap::new();
    let mut changes = svc.routes.watch();
    changes.mark_changed();
    let mut pending: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Ok(()) = changes.changed() => {
                let running: BTreeSet<u32> = changes.borrow_and_update().keys().copied().collect();
                resubscribe(&svc, &running, &mut subscribed, &mut inbox).await;
            }
            Some(()) = pending.next(), if !pending.is_empty() => {}
            Some((via, msg)) = inbox.next() => pending.push(handle(&svc, via, msg)),
        }
    }
    for token in subscribed.values() {
        token.cancel();
    }
    let _ = tokio::time::timeout(DRAIN, async { while pending.next().await.is_some() {} }).await;
    let counts = svc.counters.snapshot();
    if !counts.is_empty() {
        tracing::info!(?counts, "gateway commands answered (op, result, count)");
    }
    Ok(())
}

/// Subscribes the subjects of shards that started here and drops those of
/// shards that stopped.
async fn resubscribe(
    svc: &CommandService,
    running: &BTreeSet<u32>,
    subscribed: &mut HashMap<u32, CancellationToken>,
    inbox: &mut Inbox,
) {
    subscribed.retain(|shard, token| {
        let keep = running.contains(shard);
        if !keep {
            tracing::debug!(shard, "gateway command subject dropped");
            token.cancel();
        }
        keep
    });
    for &shard in running {
        if subscribed.contains_key(&shard) {
            continue;
        }
        let subject = subject::gateway_command_shard(&svc.prefix, shard);
        match svc.client.subscribe(subject.clone()).await {
            Ok(sub) => {
                let token = CancellationToken::new();
                let stream = sub
                    .take_until(token.clone().cancelled_owned())
                    .map(move |m| (Via::Shard(shard), m));
                inbox.push(stream.boxed());
                subscribed.insert(shard, token);
                tracing::debug!(subject, "gateway command subject subscribed");
            }
            Err(e) => {
                tracing::warn!(error = %e, subject, "cannot subscribe to a shard's gateway commands")
            }
        }
    }
}

/// Answers one request; the future sends the reply, if any.
fn handle(svc: &Arc<CommandService>, via: Via, msg: Message) -> BoxFuture<'static, ()> {
    let ctx = Context {
        prefix: &svc.prefix,
        total: svc.total,
    };
    let reply_to = msg.reply.clone().map(|r| r.to_string());
    let cmd = match command::parse(&msg.payload, via, ctx) {
        Ok(cmd) => cmd,
        Err(refusal) => return reply_refused(svc, reply_to, refusal).boxed(),
    };
    match cmd.plan(&svc.routes.running()) {
        Plan::Send(frames) => send(Arc::clone(svc), &cmd, frames, reply_to).boxed(),
        Plan::NotHere { missing, partial } if partial || matches!(via, Via::Shard(_)) => {
            let refusal = command::not_owned(Some(cmd.op()), &svc.prefix, &missing, partial);
            reply_refused(svc, reply_to, refusal).boxed()
        }
        Plan::NotHere { missing, .. } => {
            nobody_runs(Arc::clone(svc), cmd.op(), missing, reply_to).boxed()
        }
        Plan::Idle => {
            tracing::debug!("presence update for every shard: none runs here, not answering");
            futures_util::future::ready(()).boxed()
        }
    }
}

fn reply_refused(
    svc: &CommandService,
    reply_to: Option<String>,
    refusal: Refusal,
) -> impl Future<Output = ()> + Send + 'static {
    svc.counters.count(refusal.op, Err(refusal.code));
    tracing::debug!(op = refusal.op.map(Op::code), code = %refusal.code, "gateway command refused");
    respond(
        svc.client.clone(),
        reply_to,
        CommandReply::refused(refusal.code, refusal.message),
    )
}

/// The designated answer on the shared subject: `not_owned` only when no
/// process holds the lease of any of `missing`; otherwise the owner
/// answers and this process stays silent. Without shard leases (core NATS,
/// or a server without per-key TTLs) it cannot tell, and stays silent.
async fn nobody_runs(
    svc: Arc<CommandService>,
    op: Op,
    missing: Vec<u32>,
    reply_to: Option<String>,
) {
    let Some(leases) = &svc.leases else {
        return;
    };
    for &shard in &missing {
        let holder = tokio::time::timeout(
            KV_TIMEOUT,
            leases.lease_holder(ShardId::new(shard, svc.total)),
        )
        .await;
        match holder {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(_))) => return,
            Ok(Err(e)) => {
                tracing::debug!(shard, error = %e, "cannot read the shard's lease; leaving the command to its owner");
                return;
            }
            Err(_) => return,
        }
    }
    let list = missing
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut refusal = command::not_owned(Some(op), &svc.prefix, &missing, false);
    refusal.message =
        format!("no bridge process runs shard {list} now (its lease is free); nothing was sent");
    reply_refused(&svc, reply_to, refusal).await;
}

/// Hands each frame to its shard now (so commands reach a shard in the
/// order they arrived) and returns the reply, sent once all were written.
fn send(
    svc: Arc<CommandService>,
    cmd: &Command,
    frames: Vec<(u32, String)>,
    reply_to: Option<String>,
) -> impl Future<Output = ()> + Send + 'static {
    let op = cmd.op();
    let mut waits = Vec::with_capacity(frames.len());
    for (shard, text) in frames {
        let (done, rx) = oneshot::channel();
        let handed = svc.routes.get(shard).map(|tx| {
            tx.try_send(ShardCommand {
                text,
                presence: op == Op::Presence,
                done,
            })
        });
        let immediate = match handed {
            Some(Ok(())) => None,
            Some(Err(mpsc::error::TrySendError::Full(_))) => {
                Some(Refused::RateLimited(Duration::from_secs(1)))
            }
            Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                Some(Refused::NotConnected("stopping"))
            }
        };
        waits.push((shard, immediate, rx));
    }
    async move {
        let mut results = Vec::with_capacity(waits.len());
        for (shard, immediate, rx) in waits {
            let outcome = match immediate {
                Some(refused) => Outcome::Refused(refused),
                None => match tokio::time::timeout(WRITE_WAIT, rx).await {
                    Ok(Ok(Ok(()))) => Outcome::Written,
                    Ok(Ok(Err(refused))) => Outcome::Refused(refused),
                    Ok(Err(_)) => Outcome::Lost,
                    Err(_) => Outcome::TimedOut,
                },
            };
            results.push((shard, outcome));
        }
        let reply = aggregate(&results);
        match reply.code {
            None => {
                tracing::debug!(op = op.code(), shards = ?reply.shards, "gateway command written")
            }
            Some(code) => tracing::debug!(op = op.code(), %code, "gateway command refused"),
        }
        svc.counters.count(Some(op), reply.code.map_or(Ok(()), Err));
        respond(svc.client.clone(), reply_to, reply).await;
    }
}

/// What became of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Written,
    Refused(Refused),
    /// The connection closed before the write.
    Lost,
    TimedOut,
}

/// One reply for a command's frames: ok when all were written, else the
/// first failure, with the shards that did get it.
fn aggregate(results: &[(u32, Outcome)]) -> CommandReply {
    let written: Vec<u32> = results
        .iter()
        .filter(|(_, o)| *o == Outcome::Written)
        .map(|(s, _)| *s)
        .collect();
    let Some((shard, failure)) = results.iter().find(|(_, o)| *o != Outcome::Written) else {
        return CommandReply::written(written);
    };
    let (code, error) = match failure {
        Outcome::Refused(Refused::NotConnected(state)) => (
            Code::ShardNotConnected,
            format!(
                "shard {shard} is not connected ({state}); nothing was sent to it, retry once it is"
            ),
        ),
        Outcome::Refused(Refused::RateLimited(_)) => (
            Code::RateLimited,
            format!(
                "shard {shard} has spent its gateway send budget (120 per 60 s, heartbeats reserved); nothing was sent to it"
            ),
        ),
        Outcome::Lost => (
            Code::ShardNotConnected,
            format!("shard {shard}'s connection closed before the command was written; retry"),
        ),
        Outcome::TimedOut | Outcome::Written => (
            Code::ShardNotConnected,
            format!(
                "shard {shard} did not write the command within {} s; its connection is likely lost, retry",
                WRITE_WAIT.as_secs()
            ),
        ),
    };
    let mut reply = CommandReply::refused(code, error);
    reply.shards = written;
    if code == Code::RateLimited {
        let wait = results
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Refused(Refused::RateLimited(d)) => Some(*d),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        reply.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
    }
    reply
}

/// Publishes `reply` to the requester, if it asked for one.
async fn respond(client: async_nats::Client, reply_to: Option<String>, reply: CommandReply) {
    let Some(to) = reply_to else {
        return;
    };
    let body = match serde_json::to_vec(&reply) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a command reply");
            return;
        }
    };
    if let Err(e) = client.publish(to, body.into()).await {
        tracing::debug!(error = %e, "command reply not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_aggregate_per_shard_outcomes() {
        assert_eq!(
            aggregate(&[(0, Outcome::Written), (1, Outcome::Written)]),
            CommandReply::written(vec![0, 1])
        );
        let limited = aggregate(&[
            (0, Outcome::Written),
            (
                1,
                Outcome::Refused(Refused::RateLimited(Duration::from_micros(1500))),
            ),
        ]);
        assert!(!limited.ok);
        assert_eq!(limited.code, Some(Code::RateLimited));
        assert_eq!(limited.retry_after_ms, Some(1));
        assert_eq!(limited.shards, [0]);
        let lost = aggregate(&[(2, Outcome::Lost)]);
        assert_eq!(lost.code, Some(Code::ShardNotConnected));
        assert!(
            lost.error
                .unwrap()
                .contains("closed before the command was written")
        );
        assert_eq!(lost.retry_after_ms, None);
        let state = aggregate(&[(0, Outcome::Refused(Refused::NotConnected("identifying")))]);
        assert!(state.error.unwrap().contains("(identifying)"));
    }
}
