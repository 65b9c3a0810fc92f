//! The listening socket: one port for `GET /api/v10/gateway/bot` and the
//! WebSocket gateway, plain or TLS ([`Stream`]). The HTTP request head is read by hand (bounded in size
//! and time), then answered or upgraded.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::conn::{self, Upgrade};
use super::record::{Endpoint, HttpRecord, push_capped};
use super::state::Shared;
use super::transport::Stream;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest WebSocket message accepted from a client (Discord's limit is
/// 4096 bytes, answered with 4002; this only bounds memory).
const MAX_MESSAGE: usize = 1 << 20;

/// Accepts connections until `cancel` fires; each is served on `tracker`,
/// after a TLS handshake when `tls` is set.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let span = tracing::debug_span!("sim_conn", %peer);
                let task = serve(
                    stream,
                    tls.clone(),
                    Arc::clone(&shared),
                    cancel.child_token(),
                );
                tracker.spawn(task.instrument(span));
            }
            Err(error) => {
                // Typically out of file descriptors: let some close.
                tracing::warn!(%error, "sim: accept failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?;
    if !request_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
    })
}

/// Reads up to the end of the head; returns it and the bytes after it.
async fn read_head(stream: &mut Stream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        let searched = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(searched + at + 4);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Some((Vec::new(), Vec::new()));
        }
    }
}

/// Completes the TLS handshake (bounded like the request head) when the
/// port speaks TLS, then serves the connection.
async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => {
            let handshake = tokio::select! {
                () = cancel.cancelled() => return,
                done = timeout(HEAD_TIMEOUT, acceptor.accept(tcp)) => done,
            };
            match handshake {
                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                // A client that does not trust the certificate ends here.
                Ok(Err(error)) => {
                    tracing::debug!(%error, "sim: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    handle(stream, shared, cancel).await;
}

async fn handle(mut stream: Stream, shared: Arc<Shared>, cancel: CancellationToken) {
    let head = tokio::select! {
        () = cancel.cancelled() => return,
        head = timeout(HEAD_TIMEOUT, read_head(&mut stream)) => head,
    };
    let Ok(Some((head, rest))) = head else {
        return;
    };
    let Some(request) = parse_head(&head) else {
        let body = r#"{"message":"400: Bad Request","code":0}"#;
        return respond(stream, 400, &[], body).await;
    };
    let upgrade = request
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return websocket(stream, rest, request, shared, cancel).await;
    }
    let (status, headers, body) = route(&request, &shared);
    respond(stream, status, &headers, &body).await;
}

fn route(request: &Request, shared: &Shared) -> (u16, Vec<(&'static str, String)>, String) {
    let path = request.path.trim_end_matches('/');
    let authorized =
        request.header("authorization") == Some(&format!("Bot {}", shared.config.token));
    let (status, headers, body) = match (request.method.as_str(), path) {
        ("GET", "/api/v10/gateway/bot") => gateway_bot(shared, authorized),
        ("GET", "/api/v10/gateway") => (
            200,
            Vec::new(),
            json!({"url": shared.gateway_url}).to_string(),
        ),
        (_, "/api/v10/gateway/bot" | "/api/v10/gateway") => (405, Vec::new(), error_body(405)),
        _ => (404, Vec::new(), error_body(404)),
    };
    tracing::debug!(method = %request.method, path = %request.path, status, "sim: http request");
    shared.with(|inner| {
        let record = HttpRecord {
            method: request.method.clone(),
            path: request.path.clone(),
            authorized,
            status,
            at: Instant::now(),
        };
        push_capped(&mut inner.state.http, record);
    });
    (status, headers, body)
}

fn gateway_bot(shared: &Shared, authorized: bool) -> (u16, Vec<(&'static str, String)>, String) {
    let config = &shared.config;
    let (fault, remaining) =
        shared.with(|i| (i.faults.pop_front(), i.state.session_start_remaining));
    if let Some(fault) = fault {
        return match fault.retry_after {
            Some(after) if fault.status == 429 => {
                let body = json!({"message": "You are being rate limited.", "retry_after": after, "global": false});
                let headers = vec![
                    ("Retry-After", format!("{}", after.max(0.0).ceil())),
                    ("X-RateLimit-Scope", "user".to_owned()),
                ];
                (429, headers, body.to_string())
            }
            _ => (fault.status, Vec::new(), error_body(fault.status)),
        };
    }
    if !authorized {
        return (401, Vec::new(), error_body(401));
    }
    let body = json!({
        "url": shared.gateway_url,
        "shards": config.shards,
        "session_start_limit": {
            "total": config.session_start_total,
            "remaining": remaining,
            "reset_after": config.reset_after_ms,
            "max_concurrency": config.max_concurrency,
        },
    });
    (200, Vec::new(), body.to_string())
}

const fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Discord's JSON error body, e.g. `{"message":"401: Unauthorized","code":0}`.
fn error_body(status: u16) -> String {
    format!(r#"{{"message":"{status}: {}","code":0}}"#, reason(status))
}

async fn respond(mut stream: Stream, status: u16, headers: &[(&str, String)], body: &str) {
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

async fn websocket(
    mut stream: Stream,
    rest: Vec<u8>,
    request: Request,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let endpoint = match request.path.trim_end_matches('/') {
        "/gateway" => Endpoint::Gateway,
        "/resume" => Endpoint::Resume,
        _ => return respond(stream, 404, &[], &error_body(404)).await,
    };
    let key = request.header("sec-websocket-key");
    let (Some(key), true) = (key, request.header("sec-websocket-version") == Some("13")) else {
        let headers = [("Sec-WebSocket-Version", "13".to_owned())];
        return respond(stream, 400, &headers, &error_body(400)).await;
    };
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
    let upgrade = Upgrade {
        endpoint,
        path: request.path,
        query: request.query,
    };
    conn::serve(shared, ws, upgrade, cancel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_heads() {
        let head =
            b"GET /gateway/?v=10&encoding=json HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\r\n";
        let request = parse_head(head).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/gateway/");
        assert_eq!(request.query, "v=10&encoding=json");
        assert_eq!(request.header("upgrade"), Some("WebSocket"));
        assert!(parse_head(b"garbage\r\n\r\n").is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").is_none());
        assert!(parse_head(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn discord_error_bodies() {
        assert_eq!(
            error_body(401),
            r#"{"message":"401: Unauthorized","code":0}"#
        );
    }
}
