//! Op 9 INVALID_SESSION (the README's Gateway behaviour): `d: true` RESUMEs the session;
//! `d: false` starts a new one with IDENTIFY, through the 5 s identify floor.

use std::time::Duration;

use discord_bridge_e2e::jetstream::header;
use discord_bridge_e2e::stack::Stack;
use discord_bridge_schemas::{ShardState, header as h};
use discord_gateway_sim::{Closer, Endpoint, Outcome};

#[tokio::test]
async fn resumable_invalid_session_resumes() {
    let stack = Stack::start().await;
    let session = stack.wait_session(0).await;
    let seq = stack.guild_message("before");
    stack.wait_contents(&["before"]).await;

    assert!(stack.sim.invalidate_session(0, true));
    stack.guild_message("while invalidated");
    let resume = stack.wait_sim(|s| s.resumes.first().cloned()).await;
    assert_eq!(resume.session_id, session);
    assert_eq!(resume.seq, seq);
    assert_eq!(resume.outcome, Outcome::Resumed { replayed: 1 });
    stack.wait_session(0).await;
    stack.guild_message("after");
    stack
        .wait_contents(&["before", "while invalidated", "after"])
        .await;

    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 2, "{conns:#?}");
    let closed = conns[0].closed.clone().expect("first connection ended");
    assert_eq!(closed.by, Closer::Client);
    assert!(
        !matches!(closed.code, Some(1000 | 1001)),
        "a resumable close: {closed:?}"
    );
    assert_eq!(conns[1].endpoint, Endpoint::Resume);
    assert_eq!(stack.sim.identifies().len(), 1, "no new session");
    let status = stack
        .wait_status("disconnected", |e| e.state == ShardState::Disconnected)
        .await;
    assert_eq!(status.reason.as_deref(), Some("invalid_session"));
    assert_eq!(status.will_resume, Some(true));
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

#[tokio::test]
async fn non_resumable_invalid_session_identifies_after_the_floor() {
    let stack = Stack::start().await;
    let old = stack.wait_session(0).await;
    stack.guild_message("old session");
    stack.wait_contents(&["old session"]).await;

    assert!(stack.sim.invalidate_session(0, false));
    let new = stack
        .wait_sim(|s| {
            s.session_of(0)
                .filter(|sess| sess.id != old && sess.attached.is_some())
                .map(|sess| sess.id.clone())
        })
        .await;
    stack.guild_message("new session");
    let stored = stack.wait_contents(&["old session", "new session"]).await;
    assert_eq!(
        header(&stored[1], h::MSG_ID)
            .and_then(|id| id.split_once(':'))
            .map(|p| p.0),
        Some(new.as_str()),
        "events of the new session carry its id"
    );

    let identifies = stack.sim.identifies();
    assert_eq!(identifies.len(), 2, "{identifies:#?}");
    let gap = identifies[1].at.duration_since(identifies[0].at);
    assert!(
        gap >= Duration::from_secs(5),
        "IDENTIFYs {gap:?} apart: the 5 s floor applies"
    );
    assert!(matches!(identifies[1].outcome, Outcome::Ready { .. }));
    assert!(
        stack.sim.resumes().is_empty(),
        "a dead session is not resumed"
    );
    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 2, "{conns:#?}");
    let closed = conns[0].closed.clone().expect("first connection ended");
    assert_eq!(closed.by, Closer::Client);
    assert_eq!(
        conns[1].endpoint,
        Endpoint::Gateway,
        "a new session starts at the gateway URL"
    );

    let status = stack
        .wait_status("disconnected", |e| e.state == ShardState::Disconnected)
        .await;
    assert_eq!(status.reason.as_deref(), Some("invalid_session"));
    assert_eq!(status.will_resume, Some(false));
    let ended = stack
        .wait_status("the old session's end", |e| {
            e.state == ShardState::Error && e.session_id.as_deref() == Some(old.as_str())
        })
        .await;
    assert_eq!(ended.fatal, Some(false), "{ended:?}");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}
