//! The terminal prompt: when standard input is a terminal, MFA requests are
//! printed there and codes typed there are submitted like
//! `POST /manage/session`.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clock::format_utc_seconds;
use crate::secret::MfaCode;
use crate::session::{SessionCache, SessionEvent};

/// Runs until `shutdown` fires.
pub async fn run(cache: Arc<SessionCache>, shutdown: CancellationToken) {
    let mut events = cache.subscribe();
    let mut lines = std::io::stdin().is_terminal().then(spawn_line_reader);
    let interactive = lines.is_some();
    if interactive {
        eprintln!(
            "Type an MFA code for profile \"{}\" here at any time to start a session.",
            cache.profile().name
        );
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(SessionEvent::MfaNeeded(request)) => {
                    if interactive {
                        eprint!("MFA code for profile \"{}\" (device {}): ", request.profile, request.mfa_serial);
                    }
                }
                Ok(SessionEvent::CodeRejected { message }) if interactive => {
                    eprint!("{message}\nMFA code: ");
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            line = next_line(&mut lines) => match line {
                Some(line) => submit_line(&cache, &line).await,
                None => lines = None,
            },
        }
    }
}

async fn submit_line(cache: &SessionCache, line: &str) {
    if line.trim().is_empty() {
        return;
    }
    match MfaCode::parse(line) {
        Ok(code) => match cache.submit_code(code).await {
            Ok(session) => eprintln!(
                "Session started; it expires at {}.",
                format_utc_seconds(session.expiration())
            ),
            // The cache has already logged the failure, and for a wrong
            // code the event handler above prompts again.
            Err(err) if err.is_code_problem() => {}
            Err(err) => eprintln!("{err}"),
        },
        Err(err) => eprint!("{err}; type the 6-digit code: "),
    }
}

async fn next_line(lines: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads standard input on a plain thread, because reading a terminal
/// blocks. The thread ends at end of input; at exit it is simply dropped.
fn spawn_line_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        })
        .expect("spawning a thread succeeds");
    rx
}
