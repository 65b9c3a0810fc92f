//! The soak's accounting, without IO: what was sent, what the stream holds,
//! what the simulator refused for good and what the bridge reported lost,
//! reconciled into one [`Audit`].
//!
//! An event sent (accepted by the simulator) is either stored exactly once,
//! or lost. A loss is *reported* when both sides agree on it: the simulator
//! refused to deliver or replay that sequence of that session (a
//! [`RefusalRecord`]), and the bridge gave that session up with a status
//! event whose `last_seq` (the sequence up to which JetStream stored it) is
//! below the event's — the bridge's "anything after `last_seq` cannot be
//! replayed". Anything else missing from the stream is an unreported loss.

use std::collections::{BTreeMap, HashMap, HashSet};

use discord_gateway_sim::{RefusalCause, RefusalRecord};
use serde::Serialize;

/// An event the simulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEvent {
    /// The unique id it carries (message id and content).
    pub id: u64,
    /// Its shard.
    pub shard: u32,
    /// The session that took it.
    pub session_id: String,
    /// Its sequence number there.
    pub seq: u64,
}

/// A message of the agent stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its stream sequence.
    pub stream_seq: u64,
    /// The unique id of the sent event it carries, if it carries one.
    pub id: Option<u64>,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    /// `Discord-Shard` (`id/total`).
    pub shard: String,
    /// `Discord-Session`.
    pub session_id: String,
    /// `Discord-Seq`.
    pub seq: u64,
}

/// A status event in which the bridge gave a session up (`state: error`,
/// `fatal: false`, with its `session_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LossReport {
    /// The shard.
    pub shard: u32,
    /// The session given up.
    pub session_id: String,
    /// Everything up to this sequence is stored; what Discord sent after it
    /// and the stream lacks is lost.
    pub last_seq: u64,
    /// Sequences the bridge received and could not relay, if any.
    pub lost: Option<(u64, u64)>,
    /// The status event's `reason`, if any.
    pub reason: Option<String>,
}

/// Consecutive lost events of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostRange {
    /// The shard.
    pub shard: u32,
    /// The session.
    pub session_id: String,
    /// The first lost sequence.
    pub from: u64,
    /// The last lost sequence.
    pub to: u64,
    /// How many sent events it holds.
    pub events: u64,
    /// Whether the simulator refused them and the bridge reported them.
    pub reported: bool,
}

/// A sim refusal, with what became of the sent events in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The shard.
    pub shard: u32,
    /// The session.
    pub session_id: String,
    /// The first refused sequence.
    pub from: u64,
    /// The last refused sequence.
    pub to: u64,
    /// Why (the simulator's [`RefusalCause`]).
    pub cause: String,
    /// Sent events in the range that the stream holds anyway (delivered
    /// before, and stored, by the process that had them).
    pub stored: u64,
    /// Sent events in the range that the stream lacks.
    pub lost: u64,
    /// Whether the bridge gave that session up in a status event.
    pub reported_by_bridge: bool,
}

/// A unique id stored more than once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// The event id.
    pub id: u64,
    /// The stream sequences holding it.
    pub stream_seqs: Vec<u64>,
}

/// A sent event missing from the stream that no refusal and report explain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreported {
    /// The event id.
    pub id: u64,
    /// Its shard.
    pub shard: u32,
    /// Its session.
    pub session_id: String,
    /// Its sequence.
    pub seq: u64,
    /// What is missing: the simulator's refusal, the bridge's report, or both.
    pub why: String,
}

/// An event stored before one with a lower sequence of the same session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutOfOrder {
    /// The session.
    pub session_id: String,
    /// The sequence stored late.
    pub seq: u64,
    /// The sequence stored before it.
    pub after: u64,
    /// Its stream sequence.
    pub stream_seq: u64,
}

/// The reconciliation; see the [module docs](self).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    /// Events the simulator accepted.
    pub sent: u64,
    /// Messages in the stream.
    pub stored: u64,
    /// Distinct sent events in the stream.
    pub stored_unique: u64,
    /// Sent events missing from the stream.
    pub lost: u64,
    /// Of those, the ones both the simulator and the bridge account for.
    pub lost_reported: u64,
    /// The lost events, as ranges.
    pub lost_ranges: Vec<LostRange>,
    /// Lost events nothing accounts for (must be empty).
    pub unreported: Vec<Unreported>,
    /// Events stored twice or more (must be empty).
    pub duplicates: Vec<Duplicate>,
    /// Stream messages that carry no sent event's id (must be empty).
    pub unknown: Vec<u64>,
    /// Events stored after a later one of their session: measured, not a
    /// failure — a publish lost in a NATS failover is stored when it is
    /// retried, after the ones pipelined behind it.
    pub out_of_order: Vec<OutOfOrder>,
    /// The simulator's refusals.
    pub refusals: Vec<Refusal>,
    /// Refusals of a session the bridge never reported given up (must be
    /// empty), or sessions a client ended with 1000/1001 (the bridge never
    /// may).
    pub refusals_unreported: Vec<Refusal>,
    /// The bridge's reports.
    pub reports: Vec<LossReport>,
    /// Reports whose `lost` range the simulator does not confirm it refused
    /// (must be empty).
    pub reports_unconfirmed: Vec<LossReport>,
}

impl Audit {
    /// Whether every guarantee held (order is measured, not required: see
    /// [`out_of_order`](Self::out_of_order)).
    #[must_use]
    pub fn clean(&self) -> bool {
        self.unreported.is_empty()
            && self.duplicates.is_empty()
            && self.unknown.is_empty()
            && self.refusals_unreported.is_empty()
            && self.reports_unconfirmed.is_empty()
    }
}

/// Reconciles the four sources; see the [module docs](self).
#[must_use]
pub fn audit(
    sent: &[SentEvent],
    stored: &[StoredEvent],
    refusals: &[RefusalRecord],
    reports: &[LossReport],
) -> Audit {
    let mut out = Audit {
        sent: sent.len() as u64,
        stored: stored.len() as u64,
        reports: reports.to_vec(),
        ..Audit::default()
    };
    let known: HashSet<u64> = sent.iter().map(|e| e.id).collect();
    let mut copies: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    for m in stored {
        match m.id.filter(|id| known.contains(id)) {
            Some(id) => copies.entry(id).or_default().push(m.stream_seq),
            None => out.unknown.push(m.stream_seq),
        }
        if let Some(previous) = last_seq.insert(&m.session_id, m.seq)
            && m.seq <= previous
        {
            out.out_of_order.push(OutOfOrder {
                session_id: m.session_id.clone(),
                seq: m.seq,
                after: previous,
                stream_seq: m.stream_seq,
            });
        }
    }
    out.stored_unique = copies.len() as u64;
    out.duplicates = copies
        .iter()
        .filter(|(_, seqs)| seqs.len() > 1)
        .map(|(id, seqs)| Duplicate {
            id: *id,
            stream_seqs: seqs.clone(),
        })
        .collect();

    let refused = |e: &SentEvent| refusals.iter().any(|r| r.covers(&e.session_id, e.seq));
    let reported = |e: &SentEvent| {
        reports
            .iter()
            .any(|r| r.session_id == e.session_id && r.last_seq < e.seq)
    };
    let mut lost: Vec<(&SentEvent, bool)> = Vec::new();
    for e in sent.iter().filter(|e| !copies.contains_key(&e.id)) {
        let (by_sim, by_bridge) = (refused(e), reported(e));
        if !(by_sim && by_bridge) {
            let why = match (by_sim, by_bridge) {
                (false, false) => "neither refused by the simulator nor reported by the bridge",
                (false, true) => "reported by the bridge, but the simulator never refused it",
                _ => "refused by the simulator, but the bridge reported no loss there",
            };
            out.unreported.push(Unreported {
                id: e.id,
                shard: e.shard,
                session_id: e.session_id.clone(),
                seq: e.seq,
                why: why.to_owned(),
            });
        }
        lost.push((e, by_sim && by_bridge));
    }
    out.lost = lost.len() as u64;
    out.lost_reported = lost.iter().filter(|(_, ok)| *ok).count() as u64;
    out.lost_ranges = ranges(lost);

    for r in refusals {
        let inside = sent.iter().filter(|e| r.covers(&e.session_id, e.seq));
        let (mut stored_n, mut lost_n) = (0, 0);
        for e in inside {
            if copies.contains_key(&e.id) {
                stored_n += 1;
            } else {
                lost_n += 1;
            }
        }
        let refusal = Refusal {
            shard: r.shard,
            session_id: r.session_id.clone(),
            from: r.from,
            to: r.to,
            cause: format!("{:?}", r.cause),
            stored: stored_n,
            lost: lost_n,
            reported_by_bridge: reports.iter().any(|p| p.session_id == r.session_id),
        };
        if !refusal.reported_by_bridge || r.cause == RefusalCause::EndedByClient {
            out.refusals_unreported.push(refusal.clone());
        }
        out.refusals.push(refusal);
    }
    out.reports_unconfirmed = reports
        .iter()
        .filter(|p| {
            p.lost.is_some_and(|(from, to)| {
                !(from..=to).all(|seq| refusals.iter().any(|r| r.covers(&p.session_id, seq)))
            })
        })
        .cloned()
        .collect();
    out
}

/// Groups lost events (in sent order) into runs of one session.
fn ranges(lost: Vec<(&SentEvent, bool)>) -> Vec<LostRange> {
    let mut out: Vec<LostRange> = Vec::new();
    let mut by_session: BTreeMap<(&str, u32), Vec<(u64, bool)>> = BTreeMap::new();
    for (e, ok) in lost {
        by_session
            .entry((&e.session_id, e.shard))
            .or_default()
            .push((e.seq, ok));
    }
    for ((session, shard), mut seqs) in by_session {
        seqs.sort_unstable();
        for (seq, ok) in seqs {
            match out.last_mut() {
                Some(last) if last.session_id == session && last.reported == ok => {
                    last.to = seq;
                    last.events += 1;
                }
                _ => out.push(LostRange {
                    shard,
                    session_id: session.to_owned(),
                    from: seq,
                    to: seq,
                    events: 1,
                    reported: ok,
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    fn sent(id: u64, session: &str, seq: u64) -> SentEvent {
        SentEvent {
            id,
            shard: 0,
            session_id: session.to_owned(),
            seq,
        }
    }

    fn stored(stream_seq: u64, e: &SentEvent) -> StoredEvent {
        StoredEvent {
            stream_seq,
            id: Some(e.id),
            msg_id: format!("{}:{}", e.session_id, e.seq),
            shard: "0/2".to_owned(),
            session_id: e.session_id.clone(),
            seq: e.seq,
        }
    }

    fn refusal(session: &str, from: u64, to: u64, cause: RefusalCause) -> RefusalRecord {
        RefusalRecord {
            session_id: session.to_owned(),
            shard: 0,
            from,
            to,
            cause,
            at: Instant::now(),
        }
    }

    fn report(session: &str, last_seq: u64, lost: Option<(u64, u64)>) -> LossReport {
        LossReport {
            shard: 0,
            session_id: session.to_owned(),
            last_seq,
            lost,
            reason: None,
        }
    }

    #[test]
    fn everything_stored_once_is_clean() {
        let s: Vec<_> = (1..=3).map(|i| sent(i, "a", i + 4)).collect();
        let st: Vec<_> = s
            .iter()
            .enumerate()
            .map(|(i, e)| stored(i as u64 + 1, e))
            .collect();
        let a = audit(&s, &st, &[], &[]);
        assert!(a.clean(), "{a:#?}");
        assert_eq!((a.sent, a.stored, a.stored_unique, a.lost), (3, 3, 3, 0));
    }

    #[test]
    fn a_duplicate_an_unknown_message_and_disorder_are_caught() {
        let s = [sent(1, "a", 5), sent(2, "a", 6)];
        let mut stranger = stored(4, &s[0]);
        stranger.id = Some(99);
        let st = [
            stored(1, &s[1]),
            stored(2, &s[0]),
            stored(3, &s[0]),
            stranger,
        ];
        let a = audit(&s, &st, &[], &[]);
        assert!(!a.clean());
        assert_eq!(
            a.duplicates,
            [Duplicate {
                id: 1,
                stream_seqs: vec![2, 3]
            }]
        );
        assert_eq!(a.unknown, [4]);
        assert_eq!(a.out_of_order.len(), 3, "{:?}", a.out_of_order);
        assert_eq!(a.out_of_order[0].seq, 5);
    }

    #[test]
    fn a_loss_both_sides_account_for_is_reported() {
        let s = [
            sent(1, "a", 5),
            sent(2, "a", 6),
            sent(3, "a", 7),
            sent(4, "b", 1),
        ];
        let st = [stored(1, &s[0]), stored(2, &s[3])];
        let refusals = [refusal("a", 6, 9, RefusalCause::ResumeRefused)];
        let a = audit(&s, &st, &refusals, &[report("a", 5, None)]);
        assert!(a.clean(), "{a:#?}");
        assert_eq!((a.lost, a.lost_reported), (2, 2));
        assert_eq!(a.lost_ranges.len(), 1);
        let r = &a.lost_ranges[0];
        assert_eq!((r.from, r.to, r.events, r.reported), (6, 7, 2, true));
        assert_eq!((a.refusals[0].stored, a.refusals[0].lost), (0, 2));
    }

    #[test]
    fn a_loss_one_side_does_not_account_for_is_unreported() {
        let s = [sent(1, "a", 5), sent(2, "a", 6), sent(3, "a", 7)];
        let st = [stored(1, &s[0])];
        // The bridge says everything up to 6 is stored: 6 is not.
        let a = audit(
            &s,
            &st,
            &[refusal("a", 6, 7, RefusalCause::ResumeRefused)],
            &[report("a", 6, None)],
        );
        assert_eq!(a.unreported.len(), 1, "{a:#?}");
        assert_eq!(a.unreported[0].seq, 6);
        assert!(a.unreported[0].why.contains("bridge reported no loss"));
        // Missing with no refusal at all.
        let a = audit(&s, &st, &[], &[report("a", 5, None)]);
        assert_eq!(a.unreported.len(), 2);
        assert!(a.unreported[0].why.contains("simulator never refused"));
        let a = audit(&s, &st, &[], &[]);
        assert!(a.unreported[0].why.contains("neither"));
        assert!(!a.clean());
    }

    #[test]
    fn refusals_and_reports_must_agree() {
        let s = [sent(1, "a", 5)];
        let st = [stored(1, &s[0])];
        // A refusal of a session the bridge never gave up.
        let a = audit(
            &s,
            &st,
            &[refusal("a", 6, 8, RefusalCause::EndedByServer)],
            &[],
        );
        assert_eq!(a.refusals_unreported.len(), 1);
        assert!(!a.clean());
        // A session the client ended itself is never right.
        let a = audit(
            &s,
            &st,
            &[refusal("a", 6, 8, RefusalCause::EndedByClient)],
            &[report("a", 5, None)],
        );
        assert_eq!(a.refusals_unreported.len(), 1);
        // A lost range the simulator did not refuse.
        let a = audit(
            &s,
            &st,
            &[refusal("a", 6, 8, RefusalCause::ResumeRefused)],
            &[report("a", 5, Some((7, 9)))],
        );
        assert_eq!(a.reports_unconfirmed.len(), 1);
        let a = audit(
            &s,
            &st,
            &[refusal("a", 6, 9, RefusalCause::ResumeRefused)],
            &[report("a", 5, Some((7, 9)))],
        );
        assert!(a.clean(), "{a:#?}");
        assert_eq!(a.refusals[0].stored, 0);
    }
}
