//! Hostile strings from the gateway never reach a header, a subject or a
//! log line unchecked: a READY whose session id holds CR/LF is refused, a
//! new session is identified, and events flow again — nothing stalls.

use discord_bridge_e2e::jetstream::header;
use discord_bridge_e2e::stack::{Stack, StackOptions};
use discord_bridge_schemas::{ShardState, header as h};

const HOSTILE: &str = "sess\r\nX-Evil: 1";

#[tokio::test]
async fn a_ready_with_a_crlf_session_id_is_refused_and_a_new_session_works() {
    let mut stack = Stack::start_idle(StackOptions::default()).await;
    stack.sim.force_next_session_id(HOSTILE);
    stack.start_bridge();

    let refused = stack
        .wait_status("the hostile READY refused", |e| {
            e.state == ShardState::Disconnected && e.reason.as_deref() == Some("bad_ready")
        })
        .await;
    assert!(!refused.detail.contains('\n'), "{refused:?}");
    assert_eq!(refused.will_resume, Some(false));

    // A new session, identified (not resumed) after the identify floor.
    let session = stack
        .wait_sim(|s| {
            s.session_of(0)
                .filter(|sess| sess.id != HOSTILE && sess.attached.is_some())
                .map(|sess| sess.id.clone())
        })
        .await;
    stack.guild_message("after the hostile READY");
    let stored = stack.wait_contents(&["after the hostile READY"]).await;
    let id = header(&stored[0], h::MSG_ID).expect("a message id");
    assert!(id.starts_with(&format!("{session}:")), "{id}");
    assert_eq!(stack.sim.identifies().len(), 2);
    assert!(
        stack.sim.resumes().is_empty(),
        "the refused session is never resumed"
    );
    let closed = stack.sim.connections()[0].closed.clone().expect("closed");
    assert_eq!(closed.code, Some(1000), "{closed:?}");
    assert!(!stack.bridge_finished(), "the bridge keeps running");
    stack.stop_bridge().await.expect("clean stop");
}
