//! aws-mock-metadata: a local EC2 instance metadata service that hands AWS
//! SDKs short-lived MFA session credentials, keeping the long-term keys in
//! the OS keychain.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod gui;
pub mod keychain;
pub mod login_item;
pub mod notify;
pub mod prompt;
pub mod secret;
pub mod server;
pub mod session;
pub mod sts;
#[cfg(feature = "tray")]
pub mod tray;
