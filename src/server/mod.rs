//! The HTTP server: IMDS paths and the management API on every listen
//! address, with graceful shutdown.

pub mod imds;
pub mod manage;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response, StatusCode, header};

use crate::clock::Clock;
use crate::session::SessionCache;
use token::TokenSigner;

pub type HttpResponse = Response<String>;

/// Largest request body read; the only body this server uses is a short
/// MFA code.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

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
}

pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
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
        .body(serde_json::to_string(body).expect("response types always serialize"))
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
}

/// Routes one request. Used by the HTTP filter and directly by tests.
pub async fn handle(
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

/// The warp filter for all routes, with a debug log line per request.
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
        .and(warp::body::stream().then(read_bounded))
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  headers: HeaderMap,
                  body: BoundedBody| {
                let state = Arc::clone(&state);
                async move { handle(&state, &method, path.as_str(), &headers, body).await }
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
pub async fn serve(listeners: Vec<TcpListener>, state: Arc<AppState>, shutdown: CancellationToken) {
    let filter = routes(state);
    let servers = listeners.into_iter().map(|listener| {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        info!(address = %addr, "listening on http://{addr}/");
        let shutdown = shutdown.clone();
        warp::serve(filter.clone())
            .incoming(listener)
            .graceful(async move { shutdown.cancelled().await })
            .run()
    });
    futures_util::future::join_all(servers).await;
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
