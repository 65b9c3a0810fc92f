//! Handling of payloads received on an open connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use discord_bridge_schemas::ShardState;

use super::{
    Action, CLOSE_NORMAL, EndReason, Ended, Machine, OutFrame, Phase, Publish, PublishKind,
    SendKind, Stage, Step,
};
use crate::config::gateway_url::check_gateway_url;
use crate::gateway::close::Disposition;
use crate::gateway::heartbeat::{self, Heartbeat};
use crate::gateway::normalize::{self, MessageIn, Outcome};
use crate::gateway::payload::{self, Hello, Inbound, Ready, op};
use crate::gateway::untrusted;
use serde_json::value::RawValue;

/// The body of a dispatch: raw `d`, or a MESSAGE_CREATE already decoded on
/// the hot path (with the frame's size).
enum Body<'a, 'm> {
    Raw(Option<&'a RawValue>),
    Message(&'m MessageIn<'a>, usize),
}
use crate::gateway::session::Session;

impl Machine {
    pub(super) fn frame(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Action>) {
        if let Phase::Open(conn) = &mut self.phase
            && let Some(hb) = conn.stage.heartbeat()
        {
            hb.on_frame();
        }
        // The hot path: most frames of a busy bot are MESSAGE_CREATE.
        if self.one_pass_messages
            && let Some(m) = payload::decode_message_dispatch(bytes)
        {
            self.stats.one_pass_messages += 1;
            return self.dispatch(
                "MESSAGE_CREATE",
                m.seq,
                Body::Message(&m.message, m.len),
                out,
            );
        }
        let p = match payload::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::warn!(error = %e, len = bytes.len(), "skipped a malformed gateway frame");
                return;
            }
        };
        match u8::try_from(p.op).unwrap_or(u8::MAX) {
            op::DISPATCH => self.dispatch_frame(now, &p, out),
            op::HEARTBEAT => {
                if let Phase::Open(conn) = &mut self.phase
                    && let Some(hb) = conn.stage.heartbeat()
                {
                    hb.on_request(now);
                }
                self.send_heartbeat(now, out);
            }
            op::HEARTBEAT_ACK => {
                if let Phase::Open(conn) = &mut self.phase
                    && let Some(rtt) = conn.stage.heartbeat().and_then(|hb| hb.on_ack(now))
                {
                    self.last_rtt = Some(rtt);
                    tracing::trace!(rtt_ms = rtt.as_millis(), "heartbeat acknowledged");
                }
            }
            op::HELLO => self.hello(now, &p, out),
            op::RECONNECT => {
                let ended = Ended {
                    reason: EndReason::ReconnectRequested,
                    code: Some(super::CLOSE_RESUMABLE),
                    detail: "Discord asked for a reconnect (op 7)".to_owned(),
                };
                self.close_and_reconnect(now, &ended, out);
            }
            op::INVALID_SESSION => {
                let resumable = p.d.is_some_and(|d| d.get() == "true");
                self.invalid_session(now, resumable, out);
            }
            other => {
                self.stats.unknown_opcodes += 1;
                tracing::warn!(op = other, "skipped a payload with an unknown opcode");
            }
        }
    }

    fn hello(&mut self, now: Instant, p: &Inbound<'_>, out: &mut Vec<Action>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        if !matches!(conn.stage, Stage::AwaitingHello { .. }) {
            tracing::debug!("ignored a second HELLO");
            return;
        }
        let interval =
            p.d.and_then(|d| serde_json::from_str::<Hello>(d.get()).ok())
                .map(|h| Duration::from_millis(h.heartbeat_interval))
                .filter(|i| !i.is_zero() && *i <= heartbeat::MAX_INTERVAL);
        let Some(interval) = interval else {
            self.stats.malformed += 1;
            let ended = Ended {
                reason: EndReason::BadHello,
                code: Some(super::CLOSE_RESUMABLE),
                detail: format!(
                    "HELLO without a usable heartbeat_interval (1 ms to {} s)",
                    heartbeat::MAX_INTERVAL.as_secs()
                ),
            };
            return self.close_and_reconnect(now, &ended, out);
        };
        let hb = Heartbeat::new(now, interval, self.rng.f64());
        conn.limiter.reserve_for_heartbeats(interval);
        if conn.resume {
            conn.stage = Stage::Handshake {
                hb,
                step: Step::Resuming,
                deadline: Some(now + self.cfg.handshake_timeout),
            };
            let Some(session) = &self.session else {
                return;
            };
            let seq = session.committed;
            let text = payload::resume(self.cfg.token.expose(), &session.id, seq);
            let mut ev = self.status(
                ShardState::Resuming,
                format!("resuming session {} from seq {seq}", session.id),
            );
            ev.last_seq = Some(seq);
            out.push(Action::Status(ev));
            self.stats.resumes += 1;
            self.send(
                now,
                OutFrame {
                    kind: SendKind::Resume,
                    text,
                },
                out,
            );
        } else {
            conn.stage = Stage::Handshake {
                hb,
                step: Step::AwaitingPermit,
                deadline: None,
            };
            out.push(Action::Status(self.status(
                ShardState::Identifying,
                "waiting for the identify rate limit, then identifying",
            )));
            out.push(Action::RequestIdentify);
        }
    }

    fn invalid_session(&mut self, now: Instant, resumable: bool, out: &mut Vec<Action>) {
        let ended = Ended {
            reason: EndReason::InvalidSession,
            code: Some(if resumable {
                super::CLOSE_RESUMABLE
            } else {
                CLOSE_NORMAL
            }),
            detail: if resumable {
                "Discord invalidated the session (op 9, resumable)".to_owned()
            } else {
                "Discord invalidated the session (op 9, not resumable)".to_owned()
            },
        };
        if resumable && self.session.is_some() {
            return self.close_and_reconnect(now, &ended, out);
        }
        out.push(Action::Close {
            code: CLOSE_NORMAL,
            reason: ended.reason.as_str(),
        });
        self.connection_ended(now, &ended, Disposition::Reidentify, out);
    }

    fn dispatch_frame(&mut self, now: Instant, p: &Inbound<'_>, out: &mut Vec<Action>) {
        let t = p.t.as_deref().unwrap_or_default();
        if !t.is_empty() && !untrusted::is_event_name(t) {
            // Not relayed under a name that could change its subject or a
            // header; its seq still counts as handled.
            self.stats.malformed += 1;
            tracing::warn!(event = %untrusted::printable(t), seq = ?p.s, "skipped a dispatch whose event name is not a plain upper-case token");
            return self.dispatch("", p.s, Body::Raw(None), out);
        }
        match t {
            "READY" if !self.ready(now, p, out) => return,
            "RESUMED" => self.resumed(out),
            _ => {}
        }
        self.dispatch(t, p.s, Body::Raw(p.d), out);
    }

    /// Sequence bookkeeping, normalization and publishing of one dispatch.
    fn dispatch(&mut self, t: &str, seq: Option<u64>, body: Body<'_, '_>, out: &mut Vec<Action>) {
        let (Some(seq), Some(session)) = (seq, self.session.as_mut()) else {
            tracing::debug!(
                event = t,
                "dispatch outside a session or without seq, not relayed"
            );
            return;
        };
        if seq < session.last_seq && seq <= session.handled_through {
            // Replays after a RESUME start at the seq we asked for; anything
            // lower than what we already have is a protocol anomaly.
            tracing::debug!(seq, last = session.last_seq, "dispatch with an old seq");
        }
        session.last_seq = session.last_seq.max(seq);
        if seq <= session.handled_through {
            self.stats.replays_skipped += 1;
            return;
        }
        let bot = self.bot_user_id.as_deref();
        let outcome = match &body {
            Body::Raw(Some(d)) => normalize::normalize(t, d, bot),
            Body::Raw(None) => Ok(Outcome::NotRelayed),
            Body::Message(m, len) => normalize::message_event(m, bot, *len),
        };
        let published = match outcome {
            Ok(Outcome::Relay(n)) => {
                self.stats.relayed += 1;
                out.push(Action::Publish(Publish {
                    epoch: session.epoch,
                    session_id: Arc::clone(&session.id),
                    seq,
                    kind: PublishKind::Agent(n.kind),
                    guild_id: n.guild_id,
                    body: n.body,
                }));
                true
            }
            Ok(Outcome::OwnMessage) => {
                self.stats.own_messages += 1;
                false
            }
            Ok(Outcome::NotRelayed) => false,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::warn!(seq, error = %e, "skipped a dispatch with a malformed body");
                false
            }
        };
        if let Body::Raw(Some(d)) = body
            && !self.raw_dispatch.is_empty()
            && self.raw_dispatch.contains(t)
            && publishable_raw(&mut self.stats.malformed, t, seq, d)
        {
            out.push(Action::Publish(Publish {
                epoch: session.epoch,
                session_id: Arc::clone(&session.id),
                seq,
                kind: PublishKind::Raw(t.into()),
                guild_id: None,
                body: d.get().as_bytes().to_vec(),
            }));
        }
        if !published {
            out.push(Action::Skip {
                epoch: session.epoch,
                seq,
            });
        }
        session.handled_through = seq;
    }

    /// Starts the session READY describes; `false` when READY is refused
    /// (the connection is then closed and a new session identified).
    fn ready(&mut self, now: Instant, p: &Inbound<'_>, out: &mut Vec<Action>) -> bool {
        let ready = p.d.map(|d| serde_json::from_str::<Ready<'_>>(d.get()));
        let ready = match ready {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                self.stats.malformed += 1;
                tracing::error!(error = %e, "READY without a usable session; the session cannot be resumed");
                return true;
            }
            None => {
                self.stats.malformed += 1;
                tracing::error!("READY without data; the session cannot be resumed");
                return true;
            }
        };
        if !untrusted::is_session_id(&ready.session_id) {
            // Its id would go into every event's Nats-Msg-Id header (and a
            // CR/LF would split it): no event of this session can be
            // published safely, so it is given up for a new one.
            self.stats.malformed += 1;
            let ended = Ended {
                reason: EndReason::BadReady,
                code: Some(CLOSE_NORMAL),
                detail: format!(
                    "READY carried a session_id that is not a plain token ({:?}); \
                     dropping that session and identifying a new one",
                    untrusted::printable(&ready.session_id)
                ),
            };
            out.push(Action::Close {
                code: CLOSE_NORMAL,
                reason: ended.reason.as_str(),
            });
            self.connection_ended(now, &ended, Disposition::Reidentify, out);
            return false;
        }
        let resume_url = match ready.resume_gateway_url.as_deref() {
            Some(url) => match check_gateway_url(url, self.cfg.allow_insecure_gateway) {
                Ok(()) => Some(url.to_owned()),
                Err(e) => {
                    tracing::error!(url = %untrusted::printable(url), error = %e, "refusing READY's resume_gateway_url; this session will not be resumed");
                    None
                }
            },
            None => None,
        };
        self.bot_user_id = Some(ready.user.id.clone().into_owned());
        self.epochs += 1;
        self.session = Some(Session::new(
            Arc::from(ready.session_id.as_ref()),
            resume_url,
            self.epochs,
        ));
        self.stats.sessions += 1;
        self.go_live();
        let user = ready.user.username.as_deref().unwrap_or("?");
        tracing::info!(user, "gateway session ready");
        out.push(Action::Status(self.status(
            ShardState::Connected,
            format!("READY: new session as {}", untrusted::printable(user)),
        )));
        // A new session starts without the bot's presence: the last one a
        // caller set goes out again.
        if let Some(text) = self.presence.clone() {
            tracing::debug!("sending the last presence update again on the new session");
            self.send(
                now,
                OutFrame {
                    kind: SendKind::Presence,
                    text,
                },
                out,
            );
        }
        true
    }

    fn resumed(&mut self, out: &mut Vec<Action>) {
        let resuming = matches!(
            &self.phase,
            Phase::Open(c) if matches!(c.stage, Stage::Handshake { step: Step::Resuming, .. })
        );
        if !resuming {
            return;
        }
        self.go_live();
        tracing::info!("gateway session resumed");
        out.push(Action::Status(
            self.status(ShardState::Connected, "RESUMED: session resumed"),
        ));
    }

    fn go_live(&mut self) {
        self.backoff.reset();
        self.resume_failures = 0;
        self.resume_connect_failures = 0;
        if let Phase::Open(conn) = &mut self.phase
            && let Stage::Handshake { hb, .. } = &conn.stage
        {
            conn.stage = Stage::Live { hb: hb.clone() };
        }
    }
}

/// Whether a raw dispatch body stays within what its consumers can parse
/// (it is published untouched, so it cannot be trimmed); counted as
/// malformed when not.
fn publishable_raw(malformed: &mut u64, t: &str, seq: u64, d: &RawValue) -> bool {
    match untrusted::check_json(d.get().as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            *malformed += 1;
            tracing::warn!(event = t, seq, error = %e, "not publishing a raw dispatch whose body is beyond the JSON limits");
            false
        }
    }
}
