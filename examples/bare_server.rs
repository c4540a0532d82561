//! The ceiling for `scripts/bench`: a bare hyper 1 server (no warp, no
//! routing, no token check) that responds to every request with one fixed body.
//!
//! `scripts/bench` fetches the app's credentials document, writes it to a
//! file and starts this server with it, so both servers send the same bytes
//! and the same headers (`content-type: text/plain`, `content-length`,
//! `date`). It runs on the same multi-threaded tokio runtime as the app, with
//! one worker per core.
//!
//! ```sh
//! cargo run --release --example bare_server -- --listen 127.0.0.1:45001 --body-file body.json
//! ```
//!
//! Only loopback addresses are accepted.

#[path = "common/baseline.rs"]
mod baseline;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() {
    let (listen, body) = baseline::parse_arguments("bare_server");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(serve(listen, body));
}

async fn serve(listen: SocketAddr, body: Bytes) {
    let listener = TcpListener::bind(listen).await.unwrap_or_else(|err| {
        eprintln!("bare_server: cannot listen on {listen}: {err}");
        std::process::exit(1);
    });
    eprintln!("bare_server listening on http://{listen}/");
    let mut shutdown = std::pin::pin!(baseline::shutdown_signal());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<Incoming>| {
                let body = body.clone();
                async move {
                    let mut response = Response::new(Full::new(body));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
