//! Close codes that keep the session (the README's Gateway behaviour): 4000-range codes other
//! than the fatal ones and 4007/4009, and a TCP drop without a close frame,
//! are RESUMEd at the resume URL; 4007 and 4009 start a new session with
//! IDENTIFY, through the identify floor.

use std::time::Duration;

use discord_bridge_e2e::stack::Stack;
use discord_bridge_schemas::ShardState;
use discord_gateway_sim::{Closer, Endpoint, Outcome};

/// How the simulator ends the connection.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Close(u16),
    Drop,
}

#[tokio::test]
async fn resumable_close_codes_and_transport_loss_resume() {
    let stack = Stack::start().await;
    let session = stack.wait_session(0).await;
    let faults = [
        Fault::Close(4000),
        Fault::Close(4001),
        Fault::Close(4002),
        Fault::Close(4003),
        Fault::Close(4005),
        Fault::Close(4008),
        Fault::Drop,
    ];
    let mut expected = Vec::new();
    for fault in faults {
        let before = format!("before {fault:?}");
        let seq = stack.guild_message(&before);
        expected.push(before);
        let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
        stack.wait_contents(&refs).await;

        let conn = stack.wait_sim(|s| s.connection_of(0).map(|c| c.id)).await;
        let resumes = stack.sim.resumes().len();
        let done = match fault {
            Fault::Close(code) => stack.sim.close(0, code, "test"),
            Fault::Drop => stack.sim.drop_connection(0),
        };
        assert!(done, "{fault:?}: a connection serves shard 0");
        let during = format!("during {fault:?}");
        stack.guild_message(&during);
        expected.push(during);

        let resume = stack.wait_sim(|s| s.resumes.get(resumes).cloned()).await;
        assert_eq!(resume.session_id, session, "{fault:?}");
        assert_eq!(resume.seq, seq, "{fault:?}: RESUME from the last acked seq");
        assert_eq!(
            resume.outcome,
            Outcome::Resumed { replayed: 1 },
            "{fault:?}"
        );
        let record = stack.sim.connections();
        let old = record.iter().find(|c| c.id == conn).expect("recorded");
        let closed = old.closed.clone().expect("ended");
        match fault {
            Fault::Close(code) => {
                assert_eq!((closed.by, closed.code), (Closer::Server, Some(code)));
            }
            Fault::Drop => assert_eq!(closed.by, Closer::ServerDrop),
        }
        let new = record
            .iter()
            .find(|c| c.id == resume.conn)
            .expect("recorded");
        assert_eq!(
            new.endpoint,
            Endpoint::Resume,
            "{fault:?}: at the resume URL"
        );
        stack.wait_session(0).await;
    }
    stack.guild_message("last");
    expected.push("last".to_owned());
    let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    stack.wait_contents(&refs).await;

    assert_eq!(stack.sim.identifies().len(), 1, "never a new session");
    assert_eq!(stack.sim.connections().len(), faults.len() + 1);
    let reasons: Vec<Option<String>> = stack
        .statuses()
        .into_iter()
        .filter(|e| e.state == ShardState::Disconnected)
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons.len(), faults.len(), "{reasons:?}");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

/// 4007 (invalid seq) and 4009 (session timed out) end the session: the
/// bridge must not RESUME, and its new IDENTIFY waits out the floor.
async fn closed_session_identifies_anew(code: u16) {
    let stack = Stack::start().await;
    let old = stack.wait_session(0).await;
    stack.guild_message("old session");
    stack.wait_contents(&["old session"]).await;

    if code == 4009 {
        assert!(stack.sim.expire_session(0));
    } else {
        assert!(stack.sim.close(0, code, "test"));
    }
    stack
        .wait_sim(|s| {
            s.session_of(0)
                .filter(|sess| sess.id != old && sess.attached.is_some())
                .map(|_| ())
        })
        .await;
    stack.guild_message("new session");
    stack.wait_contents(&["old session", "new session"]).await;

    assert!(
        stack.sim.resumes().is_empty(),
        "{code}: no RESUME of a dead session: {:?}",
        stack.sim.resumes()
    );
    let identifies = stack.sim.identifies();
    assert_eq!(identifies.len(), 2, "{code}: {identifies:#?}");
    let gap = identifies[1].at.duration_since(identifies[0].at);
    assert!(
        gap >= Duration::from_secs(5),
        "{code}: IDENTIFYs {gap:?} apart"
    );
    let conns = stack.sim.connections();
    assert_eq!(conns.len(), 2, "{code}: {conns:#?}");
    assert_eq!(conns[1].endpoint, Endpoint::Gateway);
    let status = stack
        .wait_status("disconnected", |e| e.state == ShardState::Disconnected)
        .await;
    assert_eq!(status.close_code, Some(code));
    assert_eq!(status.will_resume, Some(false), "{status:?}");
    assert!(
        stack.sim.violations().is_empty(),
        "{:?}",
        stack.sim.violations()
    );
}

#[tokio::test]
async fn close_4007_invalid_seq_identifies_anew() {
    closed_session_identifies_anew(4007).await;
}

#[tokio::test]
async fn close_4009_session_timed_out_identifies_anew() {
    closed_session_identifies_anew(4009).await;
}
