//! Desktop notifications through notify-rust (freedesktop notifications on
//! Linux, Notification Center on macOS).
//!
//! A notification server that hangs makes `show()` block forever, so every
//! notification runs on a blocking thread under a time limit and a failure
//! is only logged.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::session::{MfaReason, SessionEvent};

/// Bundle identifier of the macOS app, also used as the notification
/// sender.
pub const BUNDLE_ID: &str = "io.github.aws-mock-metadata";

/// Upper bound on one notification call.
pub const SHOW_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepares the platform notification service. On macOS this must run
/// before the first notification, or the bundle look-up of an unbundled
/// binary can hang or attribute the notification to another app.
pub fn init() {
    #[cfg(target_os = "macos")]
    if let Err(err) = notify_rust::set_application(BUNDLE_ID) {
        warn!("cannot register for notifications as {BUNDLE_ID}: {err}");
    }
}

/// Shows one notification and returns whether it was delivered in time.
pub async fn show(summary: String, body: String) -> bool {
    let task = tokio::task::spawn_blocking(move || {
        notify_rust::Notification::new()
            .appname("aws-mock-metadata")
            .summary(&summary)
            .body(&body)
            .show()
            .map(|_| ())
    });
    match tokio::time::timeout(SHOW_TIMEOUT, task).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(err))) => {
            warn!("cannot show a notification: {err}");
            false
        }
        Ok(Err(join_error)) => {
            warn!("notification thread failed: {join_error}");
            false
        }
        Err(_) => {
            // The blocking thread stays stuck on the server; nothing else waits for it.
            warn!(
                "the notification server did not answer within {} s",
                SHOW_TIMEOUT.as_secs()
            );
            false
        }
    }
}

/// Returns the notification (summary, body) for a session event, if it
/// deserves one.
pub fn message_for(event: &SessionEvent) -> Option<(String, String)> {
    match event {
        SessionEvent::MfaNeeded(request) => Some(match request.reason {
            MfaReason::NoSession => (
                "MFA code needed".to_owned(),
                format!(
                    "An AWS SDK asked for credentials for profile \"{}\". Enter a code from {}.",
                    request.profile, request.mfa_serial
                ),
            ),
            MfaReason::ExpiringSoon => (
                "Session expires soon".to_owned(),
                format!(
                    "Enter a new MFA code for profile \"{}\" to renew the session before it expires.",
                    request.profile
                ),
            ),
        }),
        SessionEvent::CodeRejected { message } => {
            Some(("MFA code rejected".to_owned(), message.clone()))
        }
        SessionEvent::SubmitFailed { message } => {
            Some(("Cannot start the session".to_owned(), message.clone()))
        }
        SessionEvent::SessionExpired => Some((
            "Session expired".to_owned(),
            "SDKs get no credentials until a new MFA code is entered.".to_owned(),
        )),
        SessionEvent::SessionStarted { .. } | SessionEvent::SessionCleared => None,
    }
}

/// Shows a notification for each session event that deserves one, until
/// `shutdown` fires. Notifications are shown one after another, never
/// more than one call at a time.
pub async fn run(mut events: broadcast::Receiver<SessionEvent>, shutdown: CancellationToken) {
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                if let Some((summary, body)) = message_for(&event) {
                    debug!(summary, "showing notification");
                    show(summary, body).await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                debug!(missed, "notifications skipped")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MfaRequest;

    #[test]
    fn messages_name_the_profile_and_device() {
        let event = SessionEvent::MfaNeeded(MfaRequest {
            id: 1,
            profile: "dev".into(),
            mfa_serial: "arn:aws:iam::123456789012:mfa/dev".into(),
            reason: MfaReason::NoSession,
        });
        let (summary, body) = message_for(&event).unwrap();
        assert_eq!(summary, "MFA code needed");
        assert!(body.contains("\"dev\""));
        assert!(body.contains("arn:aws:iam::123456789012:mfa/dev"));
        assert!(message_for(&SessionEvent::SessionCleared).is_none());
    }
}
