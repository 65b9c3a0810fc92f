//! Op 7 RECONNECT: the bridge closes with a resumable (non-1000) code,
//! RESUMEs at READY's `resume_gateway_url` from the last sequence JetStream
//! acknowledged, and every event — dispatched before, during and after the
//! reconnect — is stored once, in order.

use discord_bridge_e2e::jetstream::header;
use discord_bridge_e2e::stack::{Stack, assert_exactly_once};
use discord_bridge_schemas::{ShardState, header as h};
use discord_gateway_sim::{Closer, Endpoint, Outcome};

#[tokio::test]
async fn op7_resumes_at_the_resume_url_without_losing_or_duplicating_events() {
    let stack = Stack::start().await;
    let session = stack.wait_session(0).await;

    stack.guild_message("before 1");
    stack.guild_message("before 2");
    let last_before = stack.guild_message("before 3");
    stack
        .wait_contents(&["before 1", "before 2", "before 3"])
        .await;

    assert!(stack.sim.reconnect(0), "a connection serves shard 0");
    // The session is detached: these wait in Discord's buffer for the RESUME.
    stack.guild_message("during 1");
    stack.guild_message("during 2");

    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session, "RESUMEs the same session");
    assert_eq!(
        resume.seq, last_before,
        "RESUME starts from the last sequence JetStream acknowledged"
    );
    assert_eq!(
        resume.outcome,
        Outcome::Resumed { replayed: 2 },
        "Discord replays the two events sent while disconnected"
    );
    stack.wait_session(0).await;
    stack.guild_message("after 1");
    stack.guild_message("after 2");

    let stored = stack
        .wait_contents(&[
            "before 1", "before 2", "before 3", "during 1", "during 2", "after 1", "after 2",
        ])
        .await;
    assert_exactly_once(&stored);
    for m in &stored {
        let id = header(m, h::MSG_ID).unwrap();
        assert!(id.starts_with(&format!("{session}:")), "one session: {id}");
    }

    let conns = stack.sim.connections();
    assert_eq!(
        conns.len(),
        2,
        "one connection, then one RESUME: {conns:#?}"
    );
    assert_eq!(conns[0].endpoint, Endpoint::Gateway);
    let closed = conns[0]
        .closed
        .as_ref()
        .expect("the first connection ended");
    assert_eq!(
        closed.by,
        Closer::Client,
        "the bridge closed it: {closed:?}"
    );
    let code = closed.code.expect("with a close frame");
    assert!(
        !matches!(code, 1000 | 1001),
        "a resumable close code, not {code}"
    );
    assert_eq!(
        conns[1].endpoint,
        Endpoint::Resume,
        "RESUME at resume_gateway_url"
    );
    assert!(
        conns[1].closed.is_none(),
        "the resumed connection stays open"
    );
    assert_eq!(stack.sim.identifies().len(), 1, "no new session");

    let disconnected = stack
        .wait_status("disconnected after op 7", |e| {
            e.state == ShardState::Disconnected
        })
        .await;
    assert_eq!(disconnected.reason.as_deref(), Some("reconnect_requested"));
    assert_eq!(disconnected.will_resume, Some(true));
    let resuming = stack
        .wait_status("resuming", |e| e.state == ShardState::Resuming)
        .await;
    assert_eq!(resuming.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(resuming.last_seq, Some(last_before));
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

/// Bursts of events with a reconnect or a dropped connection right behind
/// them: some events are still unacknowledged when the connection ends, so
/// Discord replays events the bridge already published. Each is stored once.
#[tokio::test]
async fn replays_after_repeated_reconnects_are_stored_once() {
    let stack = Stack::start().await;
    let session = stack.wait_session(0).await;
    let mut expected = Vec::new();
    for round in 0..4 {
        for i in 0..25 {
            let content = format!("round {round} event {i}");
            stack.guild_message(&content);
            expected.push(content);
        }
        let resumes = stack.sim.resumes().len();
        let faulted = if round % 2 == 0 {
            stack.sim.reconnect(0)
        } else {
            stack.sim.drop_connection(0)
        };
        assert!(faulted, "round {round}: a connection serves shard 0");
        stack
            .wait_sim(|s| {
                s.resumes
                    .get(resumes)
                    .filter(|r| matches!(r.outcome, Outcome::Resumed { .. }))
                    .map(|_| ())
            })
            .await;
        stack.wait_session(0).await;
    }
    stack.guild_message("last");
    expected.push("last".to_owned());

    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    stack.wait_contents(&expected).await;
    let resumes = stack.sim.resumes();
    assert_eq!(resumes.len(), 4, "{resumes:#?}");
    assert!(resumes.iter().all(|r| r.session_id == session));
    assert_eq!(stack.sim.identifies().len(), 1, "every reconnect resumed");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}
