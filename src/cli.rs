//! Command-line flags and subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::prompt::PromptMode;

/// Where the server listens unless `--listen` says otherwise: the port the
/// original aws-mock-metadata used, on loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:45000";

/// A local EC2 instance metadata service that hands AWS SDKs short-lived
/// MFA session credentials, keeping the long-term keys in the OS keychain.
///
/// Point SDKs at it with AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:45000/
/// (with the trailing slash). When a caller needs credentials and there is
/// no session, it asks for an MFA code; answer with
/// `curl -X POST --data token=123456 http://127.0.0.1:45000/manage/session`
/// or at the terminal prompt.
#[derive(Debug, Parser)]
#[command(name = "aws-mock-metadata", version)]
pub struct Cli {
    /// AWS profile to use: its mfa_serial, region and duration_seconds from
    /// ~/.aws/config, and its long-term keys.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "AWS_PROFILE",
        default_value = "default"
    )]
    pub profile: String,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address and port to serve on; repeat to serve on several.
    #[arg(long = "listen", value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: Vec<SocketAddr>,

    /// Run without the menu-bar icon; MFA requests are logged and, when
    /// standard input is a terminal, read from it. Also chosen
    /// automatically when there is no display.
    #[arg(long)]
    pub headless: bool,

    /// Another host name that clients may use in the Host header (requests
    /// naming any other host are rejected, against DNS rebinding); repeat
    /// for several.
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,

    /// Role name that IMDS lists under iam/security-credentials/.
    #[arg(long, value_name = "NAME", default_value = "local-credentials", value_parser = parse_role_name)]
    pub role_name: String,

    /// Also answer metadata requests that carry no IMDSv2 token. Off by
    /// default: every current SDK fetches a token first, and requiring one
    /// blocks requests forged by web pages.
    #[arg(long)]
    pub allow_imdsv1: bool,

    /// Directory for the IMDSv2 token signing key [default: the platform's
    /// per-user state directory, e.g. ~/.local/state/aws-mock-metadata].
    #[arg(long, value_name = "DIR", env = "AWS_MOCK_METADATA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// How to ask for MFA codes: the native dialog with the menu-bar icon
    /// and the terminal when headless (auto), always the dialog, always the
    /// terminal, or only through POST /manage/session (none).
    #[arg(long, value_enum, default_value_t = PromptMode::Auto)]
    pub prompt: PromptMode,

    /// Time limit for one STS call, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub sts_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the long-term IAM keys kept in the OS keychain.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Start the app at login, or stop doing so.
    LoginItem {
        #[command(subcommand)]
        action: LoginItemCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum LoginItemCommand {
    /// Start the app at login (a launchd agent on macOS, an XDG autostart
    /// entry on Linux) with --profile and the arguments given after `--`.
    Install {
        /// Arguments for the app, such as `-- --listen 127.0.0.1:45000`.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Stop starting the app at login.
    Uninstall,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Store the profile's access key ID and secret access key in the OS
    /// keychain. The secret is read without echo, or from standard input.
    Store {
        /// The access key ID (AKIA...); asked for when not given.
        #[arg(long, value_name = "ID")]
        access_key_id: Option<String>,
        /// Read the secret access key from the first line of standard input.
        #[arg(long)]
        stdin: bool,
    },
    /// Remove the profile's keys from the OS keychain.
    Delete,
    /// Show where the profile's keys would be read from.
    Status,
}

/// Accepts IAM role names: 1 to 64 characters of `[A-Za-z0-9+=,.@_-]`.
fn parse_role_name(value: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if (1..=64).contains(&value.len()) && value.chars().all(allowed) {
        Ok(value.to_owned())
    } else {
        Err("a role name is 1 to 64 letters, digits or + = , . @ _ -".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listen_repeats_and_replaces_default() {
        let cli = Cli::try_parse_from([
            "aws-mock-metadata",
            "--listen",
            "127.0.0.1:1",
            "--listen",
            "[::1]:2",
        ])
        .unwrap();
        assert_eq!(cli.run.listen.len(), 2);
        let cli = Cli::try_parse_from(["aws-mock-metadata"]).unwrap();
        assert_eq!(cli.run.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
    }

    #[test]
    fn role_names_are_checked() {
        assert!(parse_role_name("local-credentials").is_ok());
        assert!(parse_role_name("a/b").is_err());
        assert!(parse_role_name("").is_err());
        assert!(parse_role_name(&"x".repeat(65)).is_err());
    }
}
