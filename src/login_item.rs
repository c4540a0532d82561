//! Starting the app at login: a per-user launchd agent on macOS, an XDG
//! autostart entry on Linux.
//!
//! # Platform-specific
//! - macOS: `~/Library/LaunchAgents/<label>.plist`, loaded with
//!   `launchctl bootstrap gui/UID` and removed with `launchctl bootout`. It
//!   is restarted after a crash but not after Quit (`SuccessfulExit` false).
//! - Linux: `$XDG_CONFIG_HOME/autostart/aws-mock-metadata.desktop`, which
//!   desktop sessions start at login.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::notify::BUNDLE_ID;

/// launchd label of the agent.
pub const LAUNCHD_LABEL: &str = BUNDLE_ID;

/// Returns the path of this platform's login item.
pub fn item_path() -> anyhow::Result<PathBuf> {
    if cfg!(target_os = "macos") {
        let home = dirs::home_dir().context("cannot find the home directory; is HOME set?")?;
        Ok(home
            .join("Library/LaunchAgents")
            .join(format!("{LAUNCHD_LABEL}.plist")))
    } else {
        let config = dirs::config_dir()
            .context("cannot find the config directory; set HOME or XDG_CONFIG_HOME")?;
        Ok(config.join("autostart").join("aws-mock-metadata.desktop"))
    }
}

/// Writes the login item for `program` with `args` and, on macOS, loads
/// it. Returns the path written.
pub fn install(program: &Path, args: &[String]) -> anyhow::Result<PathBuf> {
    let path = item_path()?;
    let dir = path.parent().expect("the item path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let contents = if cfg!(target_os = "macos") {
        let log = dirs::home_dir()
            .unwrap_or_default()
            .join("Library/Logs/aws-mock-metadata.log");
        launch_agent_plist(program, args, &log)
    } else {
        desktop_entry(program, args)
    };
    std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(target_os = "macos")]
    {
        // Replacing a loaded agent needs a bootout first; it fails harmlessly
        // when none is loaded.
        let _ = launchctl(&["bootout", &format!("gui/{}/{LAUNCHD_LABEL}", uid())]);
        launchctl(&[
            "bootstrap",
            &format!("gui/{}", uid()),
            &path.to_string_lossy(),
        ])?;
    }
    Ok(path)
}

/// Removes the login item. Returns whether there was one.
pub fn uninstall() -> anyhow::Result<bool> {
    let path = item_path()?;
    #[cfg(target_os = "macos")]
    let _ = launchctl(&["bootout", &format!("gui/{}/{LAUNCHD_LABEL}", uid())]);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(target_os = "macos")]
fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(target_os = "macos")]
fn launchctl(args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new("/bin/launchctl")
        .args(args)
        .status()
        .context("cannot run launchctl")?;
    anyhow::ensure!(
        status.success(),
        "launchctl {} failed with {status}",
        args.join(" ")
    );
    Ok(())
}

/// Renders the launchd agent: run at load, restart only after a crash.
pub fn launch_agent_plist(program: &Path, args: &[String], log: &Path) -> String {
    let mut arguments = format!(
        "\t\t<string>{}</string>\n",
        xml_escape(&program.to_string_lossy())
    );
    for arg in args {
        arguments.push_str(&format!("\t\t<string>{}</string>\n", xml_escape(arg)));
    }
    let log = xml_escape(&log.to_string_lossy());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LAUNCHD_LABEL}</string>
	<key>ProgramArguments</key>
	<array>
{arguments}	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ProcessType</key>
	<string>Interactive</string>
	<key>StandardErrorPath</key>
	<string>{log}</string>
</dict>
</plist>
"#
    )
}

/// Renders an XDG autostart entry.
pub fn desktop_entry(program: &Path, args: &[String]) -> String {
    let mut exec = quote_exec_arg(&program.to_string_lossy());
    for arg in args {
        exec.push(' ');
        exec.push_str(&quote_exec_arg(arg));
    }
    format!(
        "[Desktop Entry]\nType=Application\nName=aws-mock-metadata\n\
         Comment=MFA session credentials for AWS SDKs through a local metadata service\n\
         Exec={exec}\nTerminal=false\nX-GNOME-Autostart-enabled=true\n"
    )
}

/// Quotes one `Exec` argument as the Desktop Entry Specification requires:
/// reserved characters force double quotes, inside which `"`, `` ` ``, `$`
/// and `\` are escaped. `%` is doubled because it starts a field code. The
/// key's value is itself an escaped string, so each backslash is doubled
/// again.
fn quote_exec_arg(arg: &str) -> String {
    let arg = arg.replace('%', "%%");
    let reserved = |c: char| " \t\n\"'\\><~|&;$*?#()`".contains(c);
    if !arg.is_empty() && !arg.chars().any(reserved) {
        return arg;
    }
    let mut quoted = String::from("\"");
    for c in arg.chars() {
        match c {
            '"' | '`' | '$' => {
                quoted.push_str("\\\\");
                quoted.push(c);
            }
            '\\' => quoted.push_str("\\\\\\\\"),
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_entry_quotes_arguments() {
        let entry = desktop_entry(
            Path::new("/opt/aws mock/aws-mock-metadata"),
            &[
                "--profile".into(),
                "dev".into(),
                "--role-name".into(),
                "a$b".into(),
                "50%".into(),
            ],
        );
        assert!(
            entry.contains("Exec=\"/opt/aws mock/aws-mock-metadata\" --profile dev --role-name \"a\\\\$b\" 50%%\n"),
            "{entry}"
        );
        assert!(entry.starts_with("[Desktop Entry]\nType=Application\n"));
    }

    #[test]
    fn launch_agent_escapes_and_restarts_only_after_crashes() {
        let plist = launch_agent_plist(
            Path::new("/Applications/aws-mock-metadata.app/Contents/MacOS/aws-mock-metadata"),
            &["--profile".into(), "a<b>&c".into()],
            Path::new("/Users/me/Library/Logs/aws-mock-metadata.log"),
        );
        assert!(plist.contains("<string>a&lt;b&gt;&amp;c</string>"));
        assert!(plist.contains("<key>SuccessfulExit</key>\n\t\t<false/>"));
        assert!(plist.contains(&format!("<string>{LAUNCHD_LABEL}</string>")));
    }
}
