//! The operations endpoint (`http.listen`): `/metrics`, `/healthz`,
//! `/readyz`.
//!
//! # Why hyper and not a framework
//!
//! Three fixed `GET` routes need no router, extractors or middleware, so
//! this is `hyper`'s HTTP/1 server and `hyper-util`'s tokio glue, which the
//! bridge already links for its HTTP client (reqwest): no hand-written HTTP
//! parsing, and not one crate more in the tree. A framework such as axum
//! would add its router and its own dependencies for a `match` on the path.
//!
//! The server is one supervised task; it serves its connections itself
//! (at most [`MAX_CONNECTIONS`] at once, each with a header read timeout,
//! so a stuck client cannot hold the port), and stops when told: open
//! connections finish the request in flight and close.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics;
use super::observe::Observed;
use super::tasks::{TaskError, TaskId, Tasks};

/// Connections served at once; more wait in the listen backlog. Probes and
/// a scraper or two need a handful.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open connections may take to finish when the server stops.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address cannot be bound (in use, not an address of this host,
    /// a privileged port).
    #[error(
        "cannot listen on {addr} for /metrics, /healthz and /readyz (http.listen, \
         BRIDGE_HTTP_LISTEN): {source}; stop what uses it or choose another address"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The running endpoint; stopped when dropped.
#[derive(Debug)]
pub(crate) struct HttpServer {
    stop: CancellationToken,
    task: Option<JoinHandle<Option<()>>>,
}

impl HttpServer {
    /// Binds `addr` and serves `observed` from a task of `tasks`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub(crate) async fn start(
        addr: SocketAddr,
        observed: Arc<Observed>,
        tasks: &Tasks,
    ) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
        let stop = CancellationToken::new();
        let task = tasks.spawn(
            TaskId::process("http endpoint"),
            serve(listener, observed, stop.clone()),
        );
        Ok(Self {
            stop,
            task: Some(task),
        })
    }

    /// Stops serving and waits until the task ended.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    listener: TcpListener,
    observed: Arc<Observed>,
    stop: CancellationToken,
) -> Result<(), TaskError> {
    let mut open = FuturesUnordered::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept(), if open.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, _)) => {
                    open.push(connection(stream, Arc::clone(&observed), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tracing::warn!(error = %e, "http endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(()) = open.next(), if !open.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(CLOSE_GRACE, async { while open.next().await.is_some() {} }).await;
    Ok(())
}

async fn connection(stream: TcpStream, observed: Arc<Observed>, stop: CancellationToken) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = respond(req.method(), req.uri().path(), &observed);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http endpoint connection ended with an error");
    }
}

/// The answer to `method path`.
fn respond(method: &Method, path: &str, observed: &Observed) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD\n".to_owned(),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => {
            let verdict = observed.readiness();
            let status = if verdict.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, format!("{}\n", verdict.text()))
        }
        "/metrics" => match metrics::render(observed.read()) {
            Ok(body) => {
                let mut r = text(StatusCode::OK, body);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                r
            }
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render the metrics: {e}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the endpoint serves /metrics, /healthz and /readyz\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // Probes and scrapes must see the state now, never a cached answer.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::config::Config;
    use crate::health::Stage;

    async fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn routes() {
        let observed = Observed::new(&Config::default());
        let r = respond(&Method::GET, "/healthz", &observed);
        assert_eq!(r.status(), StatusCode::OK);

        let r = respond(&Method::GET, "/readyz", &observed);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r).await, "nats: connecting\n");
        observed.set_stage(Stage::Stopping);
        let r = respond(&Method::HEAD, "/readyz", &observed);
        assert_eq!(body(r).await, "shutting down\n");

        let r = respond(&Method::GET, "/metrics", &observed);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = body(r).await;
        assert!(text.contains("discord_bridge_nats_connected 0"), "{text}");
        assert!(
            text.contains("discord_bridge_buffer_limit_events 10000"),
            "{text}"
        );

        assert_eq!(
            respond(&Method::GET, "/", &observed).status(),
            StatusCode::NOT_FOUND
        );
        let r = respond(&Method::POST, "/readyz", &observed);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }
}
