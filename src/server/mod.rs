//! The HTTP server: IMDS paths and the management API on every listen
//! address, with graceful shutdown.

pub mod guard;
pub mod imds;
pub mod manage;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response, StatusCode, header};

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
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body.into())
        .expect("static status and header values are valid")
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
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
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
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let log = warp::log::custom(|info| {
        debug!(
            method = %info.method(),
            path = %info.path(),
            status = info.status().as_u16(),
            latency_us = info.elapsed().as_micros() as u64,
            "request"
        );
    });
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: warp::path::FullPath, headers: HeaderMap, body| {
                let state = Arc::clone(&state);
                async move {
                    if let Some(rejection) = state.guard.check(&headers) {
                        return rejection;
                    }
                    // HTTP/1.1 requests without these headers have no body,
                    // so the common GET needs no read and no timer.
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
                    route(&state, &method, path.as_str(), &headers, body).await
                }
            },
        )
        .with(log)
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
    let service = warp::service(routes(Arc::clone(&state)));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
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
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(READ_TIMEOUT)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(peer = %peer, "connection ended with an error: {err}");
            }
            drop(permit);
        });
    }
    drop(listeners);
    graceful.shutdown().await;
    info!("server stopped");
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
