use std::collections::VecDeque;
use std::sync::Arc;

use discord_bridge_schemas::AgentEventKind;

use super::*;
use crate::gateway::machine::PublishKind;

fn event(epoch: u64, seq: u64, size: usize) -> Publish {
    Publish {
        epoch,
        session_id: Arc::from("s"),
        seq,
        kind: PublishKind::Agent(AgentEventKind::Message),
        guild_id: None,
        body: vec![b'x'; size],
    }
}

#[test]
fn bounded_by_events_and_bytes() {
    let mut o = UnackedLog::new(3, 100);
    assert!(o.push(event(1, 1, 10)).is_ok());
    assert!(o.push(event(1, 2, 10)).is_ok());
    assert_eq!(o.push(event(1, 3, 90)), Err(Full { epoch: 1, seq: 3 }));
    assert!(o.push(event(1, 4, 10)).is_ok());
    assert_eq!(o.push(event(1, 5, 1)), Err(Full { epoch: 1, seq: 5 }));
    assert_eq!((o.events(), o.bytes()), (3, 30));
    // A single event larger than the byte cap still fits an empty log.
    let mut o = UnackedLog::new(3, 100);
    assert!(o.push(event(1, 1, 500)).is_ok());
}

#[test]
fn entries_stay_until_completed_and_rewind_resends() {
    let mut o = UnackedLog::new(10, 1000);
    for seq in 1..=3 {
        o.push(event(1, seq, 1)).unwrap();
    }
    assert_eq!(o.next_unsent().unwrap().meta.seq, 1);
    assert_eq!(o.next_unsent().unwrap().meta.seq, 2);
    o.rewind();
    assert_eq!(o.next_unsent().unwrap().meta.seq, 1);
    assert_eq!(o.complete_front(), Some((1, 1)));
    assert_eq!(o.next_unsent().unwrap().meta.seq, 2);
    assert_eq!(o.events(), 2);
}

#[test]
fn skips_commit_at_once_when_nothing_waits() {
    let mut o = UnackedLog::new(10, 1000);
    assert_eq!(o.skip(1, 1), Some((1, 1)));
    assert_eq!(o.skip(1, 2), Some((1, 2)));
    assert_eq!(o.committed(), (1, 2));
    assert_eq!(o.events(), 0);
}

#[test]
fn an_unacked_event_holds_back_the_skips_behind_it() {
    let mut o = UnackedLog::new(10, 1000);
    o.skip(1, 1);
    o.push(event(1, 2, 1)).unwrap();
    assert_eq!(o.skip(1, 3), None);
    assert_eq!(o.skip(1, 4), None);
    o.push(event(1, 5, 1)).unwrap();
    assert_eq!(o.skip(1, 6), None);
    assert_eq!(o.committed(), (1, 1));
    // Skips are not sent.
    assert_eq!(o.next_unsent().unwrap().meta.seq, 2);
    assert_eq!(o.next_unsent().unwrap().meta.seq, 5);
    assert!(o.next_unsent().is_none());
    assert_eq!(
        o.complete_front(),
        Some((1, 4)),
        "the run 3-4 commits with 2"
    );
    assert_eq!(o.complete_front(), Some((1, 6)));
    assert_eq!(o.complete_front(), None);
    assert_eq!(o.events(), 0);
}

#[test]
fn a_new_session_queues_behind_the_old_ones_events() {
    let mut o = UnackedLog::new(10, 1000);
    o.push(event(1, 7, 1)).unwrap();
    assert_eq!(o.skip(2, 1), None, "READY of the next session waits");
    assert_eq!(o.complete_front(), Some((2, 1)));
}

/// What the shard and the publisher do to the log, in any order.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A dispatch arrives: relayed (`true`) or skipped.
    Dispatch(bool),
    /// The publisher hands the next event to NATS.
    Send,
    /// NATS acknowledges the oldest event handed to it.
    Ack,
    /// A publish failed: everything unacked is sent again.
    Fail,
    /// The connection drops and the session is RESUMEd from the resume
    /// point: Discord replays everything after it.
    Resume,
    /// The session is lost: a new one starts (new epoch, seq from 1).
    NewSession,
}

fn random_op(rng: &mut fastrand::Rng) -> Op {
    match rng.u8(..100) {
        0..=39 => Op::Dispatch(rng.bool()),
        40..=59 => Op::Send,
        60..=84 => Op::Ack,
        85..=89 => Op::Fail,
        90..=96 => Op::Resume,
        _ => Op::NewSession,
    }
}

/// The property of the resume point: for random interleavings of
/// dispatches, sends, acks, failed publishes, rejections (a small log),
/// RESUMEs and new sessions, a RESUME never starts past an unacked event,
/// every relayed event is stored exactly once and in order (de-duplicated by
/// its id, as JetStream does), and nothing relayed is lost.
#[test]
fn resume_point_never_passes_an_unacked_event() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut log = UnackedLog::new(rng.usize(1..8), 1 << 20);
        let mut epoch = 1;
        // The session as Discord sees it: whether each seq is relayed, and
        // the next seq it sends on this connection (replays included).
        let mut discord: Vec<bool> = Vec::new();
        let mut next = 1_u64;
        let mut connected = true;
        // The machine's view: handled through, and the resume point.
        let mut handled = 0_u64;
        let mut committed = 0_u64;
        // What NATS holds in flight, what it stored, what was relayed.
        let mut in_flight: VecDeque<Mark> = VecDeque::new();
        let mut stored: Vec<Mark> = Vec::new();
        let mut relayed: Vec<Mark> = Vec::new();
        let feed = |mark: Option<Mark>, epoch: u64, committed: &mut u64| {
            if let Some((e, s)) = mark
                && e == epoch
            {
                *committed = (*committed).max(s);
            }
        };
        for _ in 0..400 {
            match random_op(&mut rng) {
                Op::Dispatch(relay) if connected => {
                    if next as usize > discord.len() {
                        discord.push(relay);
                    }
                    let seq = next;
                    next += 1;
                    if seq <= handled {
                        continue; // a replay of what the log already holds
                    }
                    assert_eq!(seq, handled + 1, "seed {seed}: no gaps");
                    if discord[seq as usize - 1] {
                        match log.push(event(epoch, seq, 1)) {
                            Ok(()) => {
                                relayed.push((epoch, seq));
                                handled = seq;
                            }
                            Err(full) => {
                                // Refused: not handled; the shard closes the
                                // connection and resumes later.
                                assert_eq!(full, Full { epoch, seq });
                                connected = false;
                            }
                        }
                    } else {
                        feed(log.skip(epoch, seq), epoch, &mut committed);
                        handled = seq;
                    }
                }
                Op::Dispatch(_) => {}
                Op::Send => {
                    if let Some(e) = log.next_unsent() {
                        in_flight.push_back((e.meta.epoch, e.meta.seq));
                    }
                }
                Op::Ack => {
                    if let Some(mark) = in_flight.pop_front() {
                        if !stored.contains(&mark) {
                            stored.push(mark);
                        }
                        feed(log.complete_front(), epoch, &mut committed);
                    }
                }
                Op::Fail => {
                    in_flight.clear();
                    log.rewind();
                }
                Op::Resume => {
                    // Discord replays everything after the resume point.
                    next = committed + 1;
                    connected = true;
                }
                Op::NewSession => {
                    epoch += 1;
                    discord.clear();
                    next = 1;
                    handled = 0;
                    committed = 0;
                    connected = true;
                }
            }
            // The resume point of the current session never passes an event
            // of that session that is not stored.
            for &(e, s) in &relayed {
                if e == epoch && s <= committed {
                    assert!(
                        stored.contains(&(e, s)),
                        "seed {seed}: resume point {committed} passes unstored seq {s}"
                    );
                }
            }
            assert!(
                committed <= handled,
                "seed {seed}: resume point past handled"
            );
        }
        // Drain: everything relayed ends up stored, once, in relay order.
        while let Some(e) = log.next_unsent() {
            in_flight.push_back((e.meta.epoch, e.meta.seq));
        }
        while let Some(mark) = in_flight.pop_front() {
            if !stored.contains(&mark) {
                stored.push(mark);
            }
            log.complete_front();
        }
        assert_eq!(log.events(), 0, "seed {seed}");
        assert_eq!(stored, relayed, "seed {seed}: stored in relay order, once");
    }
}
