//! A second reference for `scripts/bench`: the app's warp filter chain
//! (method, full path, cloned headers, body stream, `then`) with no logic
//! behind it, responding to every request with one fixed body.
//!
//! Beside `bare_server` (plain hyper, the ceiling) it shows how much of the
//! app's per-request cost is warp itself and how much is the app's own
//! work (request checks, the IMDSv2 token, the session). It accepts
//! connections as `bare_server` does and serves them with hyper's HTTP/1
//! connection and `warp::service`, on the same multi-threaded tokio runtime.
//!
//! ```sh
//! cargo run --release --example warp_floor -- --listen 127.0.0.1:45002 --body-file body.json
//! ```
//!
//! Only loopback addresses are accepted.

#[path = "common/baseline.rs"]
mod baseline;

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, Response, header};

fn main() {
    let (listen, body) = baseline::parse_arguments("warp_floor");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(serve(listen, body));
}

async fn serve(listen: SocketAddr, body: Bytes) {
    let listener = TcpListener::bind(listen).await.unwrap_or_else(|err| {
        eprintln!("warp_floor: cannot listen on {listen}: {err}");
        std::process::exit(1);
    });
    eprintln!("warp_floor listening on http://{listen}/");
    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |_method: Method, _path: warp::path::FullPath, _headers: HeaderMap, _body| {
                let body = body.clone();
                async move {
                    let mut response = Response::new(body);
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    response
                }
            },
        );
    let service = warp::service(routes);
    let mut shutdown = std::pin::pin!(baseline::shutdown_signal());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
