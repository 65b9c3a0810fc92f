//! A session that cannot be resumed (the README's Gateway behaviour): when RESUME is refused
//! (op 9 `d: false`) or keeps failing, the bridge gives the session up,
//! reports it, and starts a new one with IDENTIFY through the identify
//! floor.

use std::collections::HashSet;
use std::time::Duration;

use discord_bridge_e2e::stack::{Stack, StackOptions, test_sim_config};
use discord_bridge_schemas::ShardState;
use discord_gateway_sim::{Endpoint, Outcome, SimConfig};

/// Waits for a session of shard 0 other than `old`, attached to a
/// connection; returns its id.
async fn new_session(stack: &Stack, old: &str) -> String {
    stack
        .wait_sim(|s| {
            s.session_of(0)
                .filter(|sess| sess.id != old && sess.attached.is_some() && !sess.invalidated)
                .map(|sess| sess.id.clone())
        })
        .await
}

/// Checks the second IDENTIFY: ≥ 5 s after the first, accepted, no rule
/// broken; and the error status that gave the old session up.
async fn identified_anew(stack: &Stack, old: &str) {
    let identifies = stack.sim.identifies();
    assert_eq!(identifies.len(), 2, "{identifies:#?}");
    let gap = identifies[1].at.duration_since(identifies[0].at);
    assert!(gap >= Duration::from_secs(5), "IDENTIFYs {gap:?} apart");
    assert!(matches!(identifies[1].outcome, Outcome::Ready { .. }));
    let conn = identifies[1].conn;
    let endpoint = stack.sim.read(|s| s.connections[&conn].endpoint);
    assert_eq!(
        endpoint,
        Endpoint::Gateway,
        "a new session starts at the gateway URL"
    );
    let ended = stack
        .wait_status("the old session given up", |e| {
            e.state == ShardState::Error && e.session_id.as_deref() == Some(old)
        })
        .await;
    assert_eq!(ended.fatal, Some(false), "{ended:?}");
    assert!(
        stack.sim.violations().is_empty(),
        "{:#?}",
        stack.sim.violations()
    );
}

/// Discord keeps a bounded replay buffer: after a disconnect long enough for
/// it to overflow, RESUME is answered with op 9 `d: false`.
#[tokio::test]
async fn refused_resume_starts_a_new_session() {
    let stack = Stack::start_with(StackOptions {
        sim: SimConfig {
            // Enough for READY and the GUILD_CREATEs, not for a long outage.
            replay_capacity: 8,
            ..test_sim_config()
        },
        ..StackOptions::default()
    })
    .await;
    let old = stack.wait_session(0).await;
    stack.guild_message("before");
    stack.wait_contents(&["before"]).await;

    assert!(stack.sim.reconnect(0));
    for i in 0..12 {
        stack.guild_message(&format!("beyond the replay buffer {i}"));
    }
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, old);
    assert_eq!(resume.outcome, Outcome::InvalidSession);

    new_session(&stack, &old).await;
    stack.guild_message("after");
    stack.wait_contents(&["before", "after"]).await;
    assert_eq!(
        stack.sim.resumes().len(),
        1,
        "a refused session is not resumed again"
    );
    identified_anew(&stack, &old).await;
}

/// Every connection to the resume URL is closed as soon as it opens, before
/// RESUMED: after a few such failures in a row the bridge stops insisting.
#[tokio::test]
async fn repeatedly_failing_resume_falls_back_to_identify() {
    let stack = Stack::start().await;
    let old = stack.wait_session(0).await;
    stack.guild_message("before");
    stack.wait_contents(&["before"]).await;

    let saboteur = async {
        let mut closed = HashSet::new();
        loop {
            let conn = stack
                .wait_sim(|s| {
                    s.connections
                        .values()
                        .find(|c| {
                            c.endpoint == Endpoint::Resume
                                && c.closed.is_none()
                                && !closed.contains(&c.id)
                        })
                        .map(|c| c.id)
                })
                .await;
            closed.insert(conn);
            stack.sim.close_conn(conn, 4000, "resume sabotaged");
        }
    };
    assert!(stack.sim.drop_connection(0));
    let new = tokio::select! {
        new = new_session(&stack, &old) => new,
        () = saboteur => unreachable!("the saboteur never ends"),
    };
    let resume_conns = stack
        .sim
        .connections()
        .iter()
        .filter(|c| c.endpoint == Endpoint::Resume)
        .count();
    assert!(
        (2..=10).contains(&resume_conns),
        "gave up after {resume_conns} failed RESUME connections"
    );
    assert!(
        stack
            .sim
            .resumes()
            .iter()
            .all(|r| r.session_id == old && !matches!(r.outcome, Outcome::Resumed { .. })),
        "{:#?}",
        stack.sim.resumes()
    );
    stack.guild_message("after");
    stack.wait_contents(&["before", "after"]).await;
    assert_ne!(new, old);
    identified_anew(&stack, &old).await;
}
