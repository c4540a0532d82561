//! The tray menu: a status line with the expiry countdown, the profile,
//! "Enter MFA code…", "Clear session" and "Quit", with stable string IDs.

use std::time::{Duration, SystemTime};

use aws_mock_metadata_tray_abi::{Phase, Status};
use tray_icon::menu::{Menu, MenuItem, PredefinedMenuItem};

pub const STATUS_ID: &str = "status";
pub const PROFILE_ID: &str = "profile";
pub const ENTER_CODE_ID: &str = "enter-code";
pub const CLEAR_SESSION_ID: &str = "clear-session";
pub const QUIT_ID: &str = "quit";

/// The menu and the items whose text or state changes.
pub struct TrayMenu {
    pub menu: Menu,
    status: MenuItem,
    profile: MenuItem,
    clear_session: MenuItem,
}

impl TrayMenu {
    pub fn new(profile: &str) -> Self {
        let status = MenuItem::with_id(STATUS_ID, "No session", false, None);
        let profile = MenuItem::with_id(PROFILE_ID, format!("Profile: {profile}"), false, None);
        let enter_code = MenuItem::with_id(ENTER_CODE_ID, "Enter MFA code…", true, None);
        let clear_session = MenuItem::with_id(CLEAR_SESSION_ID, "Clear session", false, None);
        let quit = MenuItem::with_id(QUIT_ID, "Quit", true, None);
        let menu = Menu::new();
        menu.append_items(&[
            &status,
            &profile,
            &PredefinedMenuItem::separator(),
            &enter_code,
            &clear_session,
            &PredefinedMenuItem::separator(),
            &quit,
        ])
        .expect("appending items to a new menu succeeds");
        Self {
            menu,
            status,
            profile,
            clear_session,
        }
    }

    pub fn update(&self, status: &Status, now: SystemTime) {
        self.status.set_text(status_line(status, now));
        self.profile
            .set_text(format!("Profile: {}", status.profile));
        self.clear_session.set_enabled(status.expiration.is_some());
    }

    pub fn show_quitting(&self) {
        self.status.set_text("Quitting…");
    }
}

/// Formats the status line, such as "Session expires in 3 h 12 min".
pub fn status_line(status: &Status, now: SystemTime) -> String {
    let remaining = status.expiration.and_then(|e| e.duration_since(now).ok());
    match (status.phase, remaining) {
        (Phase::Valid, Some(left)) => format!("Session expires in {}", format_countdown(left)),
        (Phase::ExpiringSoon, Some(left)) => format!(
            "Session expires in {}: enter a new code",
            format_countdown(left)
        ),
        (Phase::WaitingForCode, _) => "Waiting for MFA code".to_owned(),
        _ => "No session".to_owned(),
    }
}

/// Formats the short countdown shown next to the macOS menu-bar icon, such as
/// "3h 12m"; empty without a session.
pub fn short_countdown(status: &Status, now: SystemTime) -> String {
    match status.expiration.and_then(|e| e.duration_since(now).ok()) {
        Some(left) => {
            let minutes = left.as_secs() / 60;
            if minutes >= 60 {
                format!("{}h {}m", minutes / 60, minutes % 60)
            } else {
                format!("{minutes}m")
            }
        }
        None => String::new(),
    }
}

/// Formats a remaining time in whole minutes, rounded down: "3 h 12 min",
/// "45 min", "less than a minute".
pub fn format_countdown(left: Duration) -> String {
    let minutes = left.as_secs() / 60;
    match (minutes / 60, minutes % 60) {
        (0, 0) => "less than a minute".to_owned(),
        (0, m) => format!("{m} min"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase, left: Option<Duration>, now: SystemTime) -> Status {
        Status {
            profile: "dev".into(),
            phase,
            expiration: left.map(|l| now + l),
        }
    }

    #[test]
    fn countdown_formats() {
        assert_eq!(
            format_countdown(Duration::from_secs(3 * 3600 + 12 * 60 + 59)),
            "3 h 12 min"
        );
        assert_eq!(format_countdown(Duration::from_secs(45 * 60)), "45 min");
        assert_eq!(
            format_countdown(Duration::from_secs(59)),
            "less than a minute"
        );
        assert_eq!(format_countdown(Duration::from_secs(3600)), "1 h 0 min");
    }

    #[test]
    fn status_lines_per_phase() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let hours = Some(Duration::from_secs(3 * 3600 + 12 * 60));
        assert_eq!(
            status_line(&status(Phase::Valid, hours, now), now),
            "Session expires in 3 h 12 min"
        );
        assert_eq!(
            status_line(
                &status(Phase::ExpiringSoon, Some(Duration::from_secs(1800)), now),
                now
            ),
            "Session expires in 30 min: enter a new code"
        );
        assert_eq!(
            status_line(&status(Phase::WaitingForCode, None, now), now),
            "Waiting for MFA code"
        );
        assert_eq!(
            status_line(&status(Phase::NoSession, None, now), now),
            "No session"
        );
        assert_eq!(
            short_countdown(&status(Phase::Valid, hours, now), now),
            "3h 12m"
        );
        assert_eq!(
            short_countdown(&status(Phase::NoSession, None, now), now),
            ""
        );
    }
}
