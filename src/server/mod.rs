//! The HTTP server: IMDS paths and the management API on every listen
//! address, with graceful shutdown.

pub mod guard;
pub mod imds;
pub mod manage;
pub mod token;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::clock::Clock;
use crate::session::SessionCache;
use guard::Guard;
use token::TokenSigner;

pub type HttpResponse = Response<Bytes>;

/// Largest request body read; the only body this server uses is a short
/// MFA code.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// Time a client has to send its request headers, and then its body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; further connections wait until one closes.
/// It is well above the thousand concurrent SDK callers a busy developer
/// machine might see (the benchmark opens that many), and the app raises
/// its open-file limit to match.
pub const MAX_CONNECTIONS: usize = 4096;

/// Everything request handlers share.
pub struct AppState {
    /// NOTE: one profile is served at a time. Switching profiles from the
    /// tray means replacing this cache; nothing below it assumes only one.
    pub cache: Arc<SessionCache>,
    pub tokens: TokenSigner,
    pub role_name: String,
    pub allow_imdsv1: bool,
    pub clock: Arc<dyn Clock>,
    pub started_at: SystemTime,
    pub guard: Guard,
    /// The credentials document of the current session, rendered once.
    pub credentials_document: imds::DocumentCache,
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

pub fn json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(
            serde_json::to_string(body).expect("response types always serialize"),
        ))
        .expect("static status and header values are valid")
}

/// Collapses repeated slashes (the Java SDK joins paths with `//`) and
/// drops a trailing slash, so `/a//b/` and `/a/b` name the same resource.
/// Borrows a path that is already in that form instead of copying it.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let canonical =
        path.starts_with('/') && !path.contains("//") && (path.len() == 1 || !path.ends_with('/'));
    if canonical {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// A request body read up to [`MAX_BODY_BYTES`].
pub enum BoundedBody {
    Complete(Bytes),
    TooLarge,
    Failed,
    TimedOut,
}

/// Checks and routes one request. Used directly by tests; the HTTP filter
/// runs the same two steps but checks before reading the body.
pub async fn handle(
    state: &AppState,
    method: &Method,
    raw_path: &str,
    headers: &HeaderMap,
    body: BoundedBody,
) -> HttpResponse {
    match state.guard.check(headers) {
        Some(rejection) => rejection,
        None => route(state, method, raw_path, headers, body).await,
    }
}

async fn route(
    state: &AppState,
    method: &Method,
    raw_path: &str,
    headers: &HeaderMap,
    body: BoundedBody,
) -> HttpResponse {
    let path = normalize_path(raw_path);
    let body = match body {
        BoundedBody::Complete(bytes) => bytes,
        BoundedBody::TooLarge => {
            return manage::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        BoundedBody::Failed => {
            return manage::error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "request body could not be read",
            );
        }
        BoundedBody::TimedOut => {
            return manage::error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "request body did not arrive within {} s",
                    READ_TIMEOUT.as_secs()
                ),
            );
        }
    };
    if path == "/manage" || path.starts_with("/manage/") {
        manage::handle(state, method, &path, headers, &body).await
    } else {
        imds::handle(state, method, &path, headers)
    }
}

async fn read_bounded<S, B>(stream: S) -> BoundedBody
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut collected = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(mut chunk) = chunk else {
            return BoundedBody::Failed;
        };
        if collected.len() + chunk.remaining() > MAX_BODY_BYTES {
            return BoundedBody::TooLarge;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    BoundedBody::Complete(Bytes::from(collected))
}

/// Builds the warp filter for all routes, with a debug log line per request.
///
/// The server builds one per connection: warp clones the request handler
/// for every request, and a handle of the connection's own keeps those
/// reference counts off a counter that every core would share.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (HttpResponse,), Error = warp::Rejection> + Clone {
    let state = Arc::new(state);
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: warp::path::FullPath, headers: HeaderMap, body| {
                let state: Arc<Arc<AppState>> = Arc::clone(&state);
                async move {
                    // The clock is read only when the line will be written.
                    let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
                    let response =
                        checked_route(&state, &method, path.as_str(), &headers, body).await;
                    if let Some(started) = started {
                        debug!(
                            method = %method,
                            path = path.as_str(),
                            status = response.status().as_u16(),
                            latency_us = started.elapsed().as_micros() as u64,
                            "request"
                        );
                    }
                    response
                }
            },
        )
}

/// Checks the guard, reads the body (only when the request has one), then
/// routes the request.
async fn checked_route<S, B>(
    state: &AppState,
    method: &Method,
    raw_path: &str,
    headers: &HeaderMap,
    body: S,
) -> HttpResponse
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if let Some(rejection) = state.guard.check(headers) {
        return rejection;
    }
    // HTTP/1.1 requests without these headers have no body, so the common
    // GET needs no read and no timer.
    let has_body = headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING);
    let body = if has_body {
        match tokio::time::timeout(READ_TIMEOUT, read_bounded(body)).await {
            Ok(body) => body,
            Err(_) => BoundedBody::TimedOut,
        }
    } else {
        BoundedBody::Complete(Bytes::new())
    };
    route(state, method, raw_path, headers, body).await
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "cannot listen on {addr}: the port is already in use; stop the other program or choose another address with --listen"
    )]
    InUse { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: permission denied (ports below 1024 need root); choose another address with --listen"
    )]
    PermissionDenied { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: the address is not available on this machine; choose another with --listen"
    )]
    NotAvailable { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Other {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds every address, failing on the first that cannot be bound.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, BindError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AddrInUse => BindError::InUse { addr },
                std::io::ErrorKind::PermissionDenied => BindError::PermissionDenied { addr },
                std::io::ErrorKind::AddrNotAvailable => BindError::NotAvailable { addr },
                _ => BindError::Other { addr, source },
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serves on `listeners` until `shutdown` fires, then lets requests in
/// flight finish.
///
/// The accept loop is written here rather than taken from `warp::serve`,
/// because it also rejects peers the guard does not allow, bounds the time
/// to send request headers, and caps the number of open connections.
pub async fn serve(listeners: Vec<TcpListener>, state: Arc<AppState>, shutdown: CancellationToken) {
    for listener in &listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(address = %addr, "listening on http://{addr}/");
        }
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let accepts = listeners.iter().map(|listener| Box::pin(listener.accept()));
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            (result, _, _) = futures_util::future::select_all(accepts) => result,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Usually out of file descriptors; pausing lets connections close.
                warn!("cannot accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !state.guard.allows_peer(peer.ip()) {
            debug!(peer = %peer, "connection from a non-local address closed");
            continue;
        }
        // At the limit, the connection waits here for a free place (and
        // later ones wait in the kernel's accept queue) instead of being
        // dropped: an SDK would read a dropped connection as a failure.
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                debug!(peer = %peer, "connection limit of {MAX_CONNECTIONS} reached; waiting for a free place");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let service = TrackedService {
            inner: warp::service(routes(Arc::clone(&state))),
            activity: Arc::clone(&activity),
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        // Each connection watches a token of its own: a token shared by
        // all of them would put one lock on every poll of every connection.
        let stop = shutdown.child_token();
        let closed = CancellationToken::new();
        let closed_guard = closed.clone().drop_guard();
        let task = connections.spawn(async move {
            let _closed = closed_guard;
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    // Finishes the request in flight, then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                debug!(peer = %peer, "connection ended with an error: {err}");
            }
            drop(permit);
        });
        let abort = task.abort_handle();
        connections.spawn(async move {
            tokio::select! {
                () = closed.cancelled() => {}
                () = activity.headers_overdue() => {
                    debug!(peer = %peer, "request headers did not arrive within {} s; connection closed", READ_TIMEOUT.as_secs());
                    abort.abort();
                }
            }
        });
    }
    drop(listeners);
    connections.close();
    connections.wait().await;
    info!("server stopped");
}

/// The time a connection last finished a request, so that one watchdog per
/// connection can enforce [`READ_TIMEOUT`] on request headers. hyper's own
/// header time-out allocates and registers a new timer for every request.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` at which the last request ended, or
    /// [`Activity::IN_PROGRESS`].
    last_end_ms: AtomicU64,
}

impl Activity {
    const IN_PROGRESS: u64 = u64::MAX;

    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_end_ms: AtomicU64::new(0),
        }
    }

    fn begin(&self) {
        self.last_end_ms.store(Self::IN_PROGRESS, Ordering::Relaxed);
    }

    fn end(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_end_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once the connection has waited [`READ_TIMEOUT`] for the
    /// headers of its next request (or of its first). A request in
    /// progress is never cut: its body has a time-out of its own.
    async fn headers_overdue(&self) {
        let mut deadline = self.opened + READ_TIMEOUT;
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            deadline = match self.last_end_ms.load(Ordering::Relaxed) {
                Self::IN_PROGRESS => Instant::now() + READ_TIMEOUT,
                ms => self.opened + Duration::from_millis(ms) + READ_TIMEOUT,
            };
            if deadline <= Instant::now() {
                return;
            }
        }
    }
}

/// The warp service of one connection, reporting to its [`Activity`] when
/// each request starts and ends.
struct TrackedService<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for TrackedService<S>
where
    S: tower_service::Service<hyper::Request<Incoming>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.activity.begin();
        // warp's service is always ready, so `poll_ready` is not awaited.
        let mut inner = self.inner.clone();
        TrackedFuture {
            future: inner.call(request),
            activity: Arc::clone(&self.activity),
        }
    }
}

pin_project_lite::pin_project! {
    struct TrackedFuture<F> {
        #[pin]
        future: F,
        activity: Arc<Activity>,
    }
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        this.activity.end();
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/latest//meta-data/"), "/latest/meta-data");
        assert_eq!(normalize_path("//"), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(
            normalize_path("/latest/meta-data/iam/security-credentials/"),
            "/latest/meta-data/iam/security-credentials"
        );
    }
}
