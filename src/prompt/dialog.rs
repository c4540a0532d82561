//! The native MFA dialog: AppleScript `display dialog` through `osascript`
//! on macOS; zenity, else kdialog, on Linux. Each dialog is a child
//! process, so the GUI thread never waits on it.
//!
//! Profile names and device ARNs are passed as arguments, never pasted into
//! a script, so a quote in a profile name cannot change what runs.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::secret::Secret;

/// Window title, also what tests search for.
pub const DIALOG_TITLE: &str = "aws-mock-metadata";

/// An unattended dialog gives up after this long.
pub const DIALOG_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub enum DialogOutcome {
    Entered(Secret),
    Cancelled,
    TimedOut,
    /// No dialog program could be run; the message explains why.
    Unavailable(String),
}

/// Shows the MFA dialog for `profile` and `mfa_serial`, with `notice` (such
/// as "the last code was rejected") above the question.
pub async fn ask_for_code(profile: &str, mfa_serial: &str, notice: Option<&str>) -> DialogOutcome {
    let question =
        format!("Enter the MFA code for AWS profile \"{profile}\"\n(device {mfa_serial})");
    let text = match notice {
        Some(notice) => format!("{notice}\n\n{question}"),
        None => question,
    };
    if !cfg!(target_os = "macos")
        && ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .all(|var| std::env::var_os(var).is_none_or(|v| v.is_empty()))
    {
        return DialogOutcome::Unavailable(
            "no display for the MFA dialog (DISPLAY and WAYLAND_DISPLAY are unset); use --prompt terminal or POST /manage/session"
                .to_owned(),
        );
    }
    let Some(mut command) = dialog_command(&text) else {
        return DialogOutcome::Unavailable(
            "no dialog program found: install zenity (or kdialog), or start with --prompt terminal"
                .to_owned(),
        );
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return DialogOutcome::Unavailable(format!("cannot start the MFA dialog: {err}"));
        }
    };
    // The dialog programs give up on their own; this limit only covers one
    // that ignores its time-out option.
    let output = match tokio::time::timeout(
        DIALOG_TIMEOUT + Duration::from_secs(5),
        child.wait_with_output(),
    )
    .await
    {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return DialogOutcome::Unavailable(format!("the MFA dialog failed: {err}")),
        Err(_) => return DialogOutcome::TimedOut,
    };
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match output.status.code() {
        Some(0) if cfg!(target_os = "macos") && answer == "gave up" => DialogOutcome::TimedOut,
        Some(0) => DialogOutcome::Entered(Secret::new(answer)),
        // zenity reports its --timeout with exit status 5.
        Some(5) if !cfg!(target_os = "macos") => DialogOutcome::TimedOut,
        _ => DialogOutcome::Cancelled,
    }
}

#[cfg(target_os = "macos")]
fn dialog_command(text: &str) -> Option<Command> {
    // `giving up after` closes an unattended dialog; the script prints
    // "gave up" then, and the code otherwise. Cancel exits non-zero.
    let script = [
        "on run argv",
        "tell application \"System Events\" to activate",
        "tell application \"System Events\" to set answer to display dialog (item 1 of argv) \
         default answer \"\" with hidden answer with title (item 2 of argv) \
         buttons {\"Cancel\", \"OK\"} default button \"OK\" cancel button \"Cancel\" \
         giving up after (item 3 of argv as integer)",
        "if gave up of answer then return \"gave up\"",
        "return text returned of answer",
        "end run",
    ];
    let mut command = Command::new("/usr/bin/osascript");
    for line in script {
        command.arg("-e").arg(line);
    }
    command
        .arg("--")
        .arg(text)
        .arg(DIALOG_TITLE)
        .arg(DIALOG_TIMEOUT.as_secs().to_string());
    Some(command)
}

#[cfg(not(target_os = "macos"))]
fn dialog_command(text: &str) -> Option<Command> {
    if let Some(zenity) = find_program("zenity") {
        let mut command = Command::new(zenity);
        command
            .arg("--entry")
            .arg("--hide-text")
            .arg(format!("--title={DIALOG_TITLE}"))
            .arg(format!("--text={}", escape_pango(text)))
            .arg(format!("--timeout={}", DIALOG_TIMEOUT.as_secs()));
        return Some(command);
    }
    let kdialog = find_program("kdialog")?;
    let mut command = Command::new(kdialog);
    command
        .arg("--title")
        .arg(DIALOG_TITLE)
        .arg("--password")
        .arg(text);
    Some(command)
}

/// zenity reads `--text` as Pango markup, so `<` and `&` must be escaped.
#[cfg(not(target_os = "macos"))]
fn escape_pango(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(not(target_os = "macos"))]
fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(all(test, not(target_os = "macos")))]
mod tests {
    use super::*;

    #[test]
    fn markup_in_profile_names_is_escaped() {
        assert_eq!(escape_pango("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
