//! Fault injection: what a test (or the demo) can make Discord do. Each call
//! acts on the connection currently serving a shard (the one attached to its
//! current session) and returns whether there was one; dispatches queued
//! before a call are delivered before its effect.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

use super::Simulator;
use super::config::HttpFault;
use super::flood::{Flood, FloodHandle, FloodRun};
use super::protocol::HEARTBEAT_REQUEST;
use super::record::{ConnId, Dispatched, RefusalCause};
use super::state::{Command, Inner, RawFrame};
use crate::shard::shard_for_guild;

impl Simulator {
    /// Dispatches event `t` with data `d` on the current session of `shard`
    /// and returns its sequence number; `None` when the shard has no valid
    /// session. With no connection attached the dispatch is buffered for the
    /// next RESUME, as Discord does for a resumable session.
    pub fn dispatch(&self, shard: u32, t: &str, d: Value) -> Option<u64> {
        let capacity = self.shared.config.replay_capacity;
        self.shared.with(|i| i.dispatch(shard, t, d, capacity))
    }

    /// Like [`dispatch`](Self::dispatch), and also says which session took
    /// the dispatch, so a test can tell later whether it was delivered,
    /// replayed or [refused](crate::RefusalRecord).
    pub fn dispatch_tracked(&self, shard: u32, t: &str, d: Value) -> Option<Dispatched> {
        let capacity = self.shared.config.replay_capacity;
        self.shared.with(|i| {
            let session_id = i.state.session_of(shard)?.id.clone();
            let seq = i.dispatch(shard, t, d, capacity)?;
            Some(Dispatched {
                shard,
                session_id,
                seq,
            })
        })
    }

    /// Dispatches on the shard that serves `guild_id` (`None`: a DM, which
    /// Discord sends on shard 0); returns the shard and sequence number.
    pub fn dispatch_to_guild(
        &self,
        guild_id: Option<u64>,
        t: &str,
        d: Value,
    ) -> Option<(u32, u64)> {
        let capacity = self.shared.config.replay_capacity;
        let fallback = self.shared.config.shards;
        self.shared.with(|i| {
            let shard = guild_id.map_or(0, |g| shard_for_guild(g, shard_total(i, fallback)));
            i.dispatch(shard, t, d, capacity).map(|seq| (shard, seq))
        })
    }

    /// Starts a flood on the connection serving `shard`: its task writes
    /// `flood.count` dispatches, cycling through `flood.events`, as fast as
    /// the client reads (or at `flood.rate`). `None` when no connection
    /// serves the shard's session.
    pub fn flood(&self, shard: u32, flood: Flood) -> Option<FloodHandle> {
        let run = FloodRun::new(flood);
        self.command(shard, false, Command::Flood(Arc::clone(&run)))
            .then_some(FloodHandle { run })
    }

    /// Sends op 7 RECONNECT. The session is detached from the connection:
    /// later dispatches are buffered for the client's RESUME.
    pub fn reconnect(&self, shard: u32) -> bool {
        self.command(shard, true, Command::Reconnect)
    }

    /// Sends op 9 INVALID_SESSION with `d: resumable`. When not resumable the
    /// session is dead at once: a RESUME of it gets op 9 `false` too.
    pub fn invalidate_session(&self, shard: u32, resumable: bool) -> bool {
        if !resumable {
            self.shared.with(|i| invalidate(i, shard));
        }
        self.command(shard, true, Command::InvalidSession(resumable))
    }

    /// Silently ends the current session of `shard`, as when it timed out
    /// during a long outage: a later RESUME gets op 9 `false`. A connection
    /// still attached is closed with 4009 (session timed out). Returns
    /// whether the shard had a session.
    pub fn expire_session(&self, shard: u32) -> bool {
        let had = self.shared.with(|i| invalidate(i, shard));
        let reason = "Session timed out.".to_owned();
        self.command(shard, true, Command::Close(4009, reason));
        had
    }

    /// Closes the connection serving `shard` with `code` and `reason`. Codes
    /// after which Discord forbids a RESUME (4004, 4007, 4009-4014) also end
    /// the session.
    pub fn close(&self, shard: u32, code: u16, reason: &str) -> bool {
        self.command(shard, true, Command::Close(code, reason.to_owned()))
    }

    /// Closes connection `conn` (attached to a session or not).
    pub fn close_conn(&self, conn: ConnId, code: u16, reason: &str) -> bool {
        self.command_conn(conn, Command::Close(code, reason.to_owned()))
    }

    /// Drops the TCP connection serving `shard` without a close frame; the
    /// session stays resumable.
    pub fn drop_connection(&self, shard: u32) -> bool {
        self.command(shard, true, Command::Drop)
    }

    /// Drops connection `conn` without a close frame.
    pub fn drop_conn(&self, conn: ConnId) -> bool {
        self.command_conn(conn, Command::Drop)
    }

    /// Sends a frame as is, bypassing the compressor (e.g. a corrupt
    /// compressed stream, or a text frame on a compressed connection).
    pub fn send_raw(&self, shard: u32, frame: RawFrame) -> bool {
        self.command(shard, false, Command::Raw(frame))
    }

    /// Sends `text` through the connection's compressor, as a payload
    /// (e.g. malformed JSON that is correctly compressed).
    pub fn send_payload_text(&self, shard: u32, text: &str) -> bool {
        self.command(shard, false, Command::Payload(text.to_owned()))
    }

    /// Switches op 11 answers to `shard`'s heartbeats on or off (off: the
    /// client should detect a zombie connection). Lasts across connections.
    pub fn set_heartbeat_ack(&self, shard: u32, ack: bool) {
        self.shared.with(|i| {
            if ack {
                i.acks_paused.remove(&shard);
            } else {
                i.acks_paused.insert(shard);
            }
        });
    }

    /// Makes the next session started (by any shard) carry `id` as its
    /// `session_id` in READY — e.g. one with CR/LF, to test that the client
    /// refuses what it cannot put in a header.
    pub fn force_next_session_id(&self, id: impl Into<String>) {
        let id = id.into();
        self.shared.with(|i| i.forced_session_ids.push_back(id));
    }

    /// Sends op 1: the client must heartbeat at once.
    pub fn request_heartbeat(&self, shard: u32) -> bool {
        self.command(shard, false, Command::Payload(HEARTBEAT_REQUEST.to_owned()))
    }

    /// Makes the next `times` `GET /gateway/bot` requests answer `fault`.
    pub fn fail_gateway_bot(&self, times: usize, fault: HttpFault) {
        self.shared
            .with(|i| i.faults.extend(std::iter::repeat_n(fault, times)));
    }

    /// Queues `command` on the connection serving `shard`. With `stop`,
    /// dispatches made after this call are not sent on that connection.
    fn command(&self, shard: u32, stop: bool, command: Command) -> bool {
        self.shared.with(|i| {
            let seq = i.state.session_of(shard).map_or(0, |s| s.seq);
            let Some((conn, live)) = i.live_of(shard) else {
                return false;
            };
            if stop {
                live.flush_limit = Some(seq);
            }
            let queued = live.commands.try_send(command).is_ok();
            if !queued {
                tracing::warn!(%conn, "sim: command queue full, command dropped");
            }
            queued
        })
    }

    fn command_conn(&self, conn: ConnId, command: Command) -> bool {
        self.shared.read(|i| {
            i.live
                .get(&conn)
                .is_some_and(|l| l.commands.try_send(command).is_ok())
        })
    }
}

/// The shard count clients identified with (the configured one before any
/// did).
fn shard_total(inner: &Inner, fallback: u32) -> u32 {
    inner
        .state
        .shard_sessions
        .values()
        .find_map(|id| inner.state.sessions.get(id))
        .map_or(fallback, |s| s.shard.total)
}

/// Ends the current session of `shard`. A connection still attached sends
/// what was dispatched so far before it is told (op 9 or a close queued
/// with a flush limit); without one, what it was not sent is refused.
fn invalidate(inner: &mut Inner, shard: u32) -> bool {
    let Some(session) = inner.state.session_of(shard) else {
        return false;
    };
    let id = session.id.clone();
    let sent = if session
        .attached
        .is_some_and(|c| inner.live.contains_key(&c))
    {
        session.seq
    } else {
        session.delivered
    };
    inner.end_session(&id, sent, RefusalCause::EndedByServer, Instant::now())
}
