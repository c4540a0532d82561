//! The command line and shutdown signal shared by the benchmark baselines
//! `bare_server` and `warp_floor`.

use std::net::SocketAddr;

use bytes::Bytes;

/// Parses `--listen 127.0.0.1:PORT --body-file PATH` and reads the body.
/// Exits with a message on bad arguments, a non-loopback address or an
/// unreadable file.
pub fn parse_arguments(program: &str) -> (SocketAddr, Bytes) {
    let usage = || -> ! {
        eprintln!("usage: {program} --listen 127.0.0.1:PORT --body-file PATH");
        std::process::exit(2);
    };
    let mut listen: Option<SocketAddr> = None;
    let mut body_file: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--body-file" => body_file = args.next(),
            _ => usage(),
        }
    }
    let (Some(listen), Some(body_file)) = (listen, body_file) else {
        usage();
    };
    if !listen.ip().is_loopback() {
        eprintln!("{program}: {listen} is not a loopback address");
        std::process::exit(2);
    }
    let body = Bytes::from(std::fs::read(&body_file).unwrap_or_else(|err| {
        eprintln!("{program}: cannot read {body_file}: {err}");
        std::process::exit(1);
    }));
    (listen, body)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
