use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use aws_mock_metadata::app::{self, Settings};
use aws_mock_metadata::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("aws_mock_metadata=info,warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // An empty AWS_PROFILE means "not set", as the SDKs read it.
    let profile = if cli.profile.trim().is_empty() {
        "default".to_owned()
    } else {
        cli.profile
    };
    let result = match cli.command {
        Some(Command::Keys { action }) => app::run_keys_command(&profile, action),
        Some(Command::LoginItem { action }) => app::run_login_item_command(&profile, action),
        None => Settings::from_args(profile, cli.run).and_then(app::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
