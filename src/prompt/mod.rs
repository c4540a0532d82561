//! Ways a person answers an MFA request: the native dialog or the
//! terminal. Both submit codes through [`SessionCache::submit_code`], the
//! same path as `POST /manage/session`.

pub mod dialog;
pub mod terminal;

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::secret::MfaCode;
use crate::session::{MfaRequest, SessionCache, SessionEvent};
use dialog::DialogOutcome;

/// The way MFA codes are requested, set by `--prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptMode {
    /// The native dialog with the menu-bar icon, the terminal when headless.
    Auto,
    /// The native dialog (osascript on macOS, zenity or kdialog on Linux).
    Dialog,
    /// Standard input, when it is a terminal.
    Terminal,
    /// Only `POST /manage/session`.
    None,
}

/// Opens the MFA dialog for each MFA request and for each `open_requests`
/// message (the tray's "Enter MFA code…"), one dialog at a time, until
/// `shutdown` fires.
pub async fn run_dialogs(
    cache: Arc<SessionCache>,
    mut open_requests: mpsc::UnboundedReceiver<()>,
    notify: bool,
    shutdown: CancellationToken,
) {
    let mut events = cache.subscribe();
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(SessionEvent::MfaNeeded(request)) => {
                    // A request answered while an earlier dialog was open is stale.
                    if cache.status().pending.as_ref().map(|p| p.id) != Some(request.id) {
                        continue;
                    }
                    Some(request)
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            opened = open_requests.recv() => match opened {
                Some(()) => cache.status().pending,
                None => return,
            },
        };
        converse(&cache, request, &mut events, notify, &shutdown).await;
    }
}

/// Runs one dialog until a code is accepted, the person cancels, or a
/// session starts by another route.
async fn converse(
    cache: &SessionCache,
    request: Option<MfaRequest>,
    events: &mut broadcast::Receiver<SessionEvent>,
    notify: bool,
    shutdown: &CancellationToken,
) {
    let profile = cache.profile().name.clone();
    let mfa_serial = cache.profile().mfa_serial.clone();
    let mut notice: Option<String> = None;
    loop {
        info!(profile = %profile, "opening the MFA dialog");
        let outcome = tokio::select! {
            outcome = dialog::ask_for_code(&profile, &mfa_serial, notice.as_deref()) => outcome,
            () = session_started(events) => {
                info!("session started by another route; closing the MFA dialog");
                return;
            }
            () = shutdown.cancelled() => return,
        };
        match outcome {
            DialogOutcome::Entered(text) => match MfaCode::parse(text.expose()) {
                Ok(code) => match cache.submit_code(code).await {
                    Ok(_) => return,
                    // The notification task reports the rejection; ask again.
                    Err(err) if err.is_code_problem() => notice = Some(err.to_string()),
                    Err(_) => return,
                },
                Err(err) => {
                    let message = format!("{err}; type the 6 digits your MFA device shows");
                    if notify {
                        crate::notify::show("MFA code rejected".to_owned(), message.clone()).await;
                    }
                    notice = Some(message);
                }
            },
            DialogOutcome::Cancelled | DialogOutcome::TimedOut => {
                if let Some(request) = &request {
                    cache.cancel_request(request.id);
                }
                return;
            }
            DialogOutcome::Unavailable(message) => {
                warn!("{message}");
                return;
            }
        }
    }
}

async fn session_started(events: &mut broadcast::Receiver<SessionEvent>) {
    loop {
        match events.recv().await {
            Ok(SessionEvent::SessionStarted { .. }) => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
