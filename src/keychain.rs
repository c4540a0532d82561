//! Long-term IAM keys in the OS keychain (macOS Keychain, Secret Service on
//! Linux), one entry per profile, with the credentials file as a fallback.
//!
//! The keys are never taken from IMDS, the container endpoint or any SDK
//! credential chain: those could lead back to this app.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::ProfileConfig;
use crate::secret::{AccessKeyId, LongTermKeys, Secret};

/// Keychain service name; the account name is the profile name.
pub const KEYCHAIN_SERVICE: &str = "aws-mock-metadata";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeychainError {
    /// No keychain service is running, or it is locked.
    #[error("the OS keychain is not available ({0})")]
    Unavailable(String),
    #[error(
        "the keychain entry for profile \"{profile}\" is not in the format this app writes; store the keys again with `aws-mock-metadata keys store --profile {profile}`"
    )]
    Corrupt { profile: String },
    #[error("the OS keychain failed: {0}")]
    Failed(String),
}

/// Access to stored long-term keys. Calls may block on the OS keychain, so
/// async code runs them through `spawn_blocking`.
pub trait KeyStore: Send + Sync + 'static {
    fn load(&self, profile: &str) -> Result<Option<LongTermKeys>, KeychainError>;
    fn store(&self, profile: &str, keys: &LongTermKeys) -> Result<(), KeychainError>;
    /// Deletes the entry and returns whether there was one.
    fn delete(&self, profile: &str) -> Result<bool, KeychainError>;
}

/// The stored form of an entry: a JSON object with the credentials-file
/// key names.
#[derive(Serialize, Deserialize)]
struct StoredKeys {
    aws_access_key_id: String,
    aws_secret_access_key: String,
}

fn encode(keys: &LongTermKeys) -> String {
    serde_json::to_string(&StoredKeys {
        aws_access_key_id: keys.access_key_id.as_str().to_owned(),
        aws_secret_access_key: keys.secret_access_key.expose().to_owned(),
    })
    .expect("two strings always serialize")
}

fn decode(profile: &str, stored: &str) -> Result<LongTermKeys, KeychainError> {
    let parsed: StoredKeys = serde_json::from_str(stored).map_err(|_| KeychainError::Corrupt {
        profile: profile.to_owned(),
    })?;
    Ok(LongTermKeys {
        access_key_id: AccessKeyId::new(parsed.aws_access_key_id),
        secret_access_key: Secret::new(parsed.aws_secret_access_key),
    })
}

/// The platform keychain through the `keyring` crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsKeychain;

impl OsKeychain {
    fn entry(profile: &str) -> Result<keyring::Entry, KeychainError> {
        keyring::Entry::new(KEYCHAIN_SERVICE, profile).map_err(map_keyring_error)
    }
}

fn map_keyring_error(err: keyring::Error) -> KeychainError {
    match err {
        keyring::Error::NoDefaultStore => {
            KeychainError::Unavailable("no keychain service is reachable".to_owned())
        }
        keyring::Error::NoStorageAccess(inner) => {
            KeychainError::Unavailable(format!("locked or access denied: {inner}"))
        }
        other => KeychainError::Failed(other.to_string()),
    }
}

impl KeyStore for OsKeychain {
    fn load(&self, profile: &str) -> Result<Option<LongTermKeys>, KeychainError> {
        match Self::entry(profile)?.get_password() {
            Ok(stored) => decode(profile, &stored).map(Some),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(err) => Err(map_keyring_error(err)),
        }
    }

    fn store(&self, profile: &str, keys: &LongTermKeys) -> Result<(), KeychainError> {
        Self::entry(profile)?
            .set_password(&encode(keys))
            .map_err(map_keyring_error)
    }

    fn delete(&self, profile: &str) -> Result<bool, KeychainError> {
        match Self::entry(profile)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(err) => Err(map_keyring_error(err)),
        }
    }
}

/// An in-memory store for tests, which can be set to fail like a locked
/// or absent keychain.
#[derive(Default)]
pub struct MemoryKeyStore {
    entries: Mutex<HashMap<String, String>>,
    failure: Mutex<Option<KeychainError>>,
}

impl MemoryKeyStore {
    /// Makes every later call fail with `error`, or succeed again with `None`.
    pub fn set_failure(&self, error: Option<KeychainError>) {
        *self.failure.lock().expect("mutex poisoned") = error;
    }

    fn check(&self) -> Result<(), KeychainError> {
        match self.failure.lock().expect("mutex poisoned").clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore").finish_non_exhaustive()
    }
}

impl KeyStore for MemoryKeyStore {
    fn load(&self, profile: &str) -> Result<Option<LongTermKeys>, KeychainError> {
        self.check()?;
        let entries = self.entries.lock().expect("mutex poisoned");
        entries
            .get(profile)
            .map(|stored| decode(profile, stored))
            .transpose()
    }

    fn store(&self, profile: &str, keys: &LongTermKeys) -> Result<(), KeychainError> {
        self.check()?;
        self.entries
            .lock()
            .expect("mutex poisoned")
            .insert(profile.to_owned(), encode(keys));
        Ok(())
    }

    fn delete(&self, profile: &str) -> Result<bool, KeychainError> {
        self.check()?;
        Ok(self
            .entries
            .lock()
            .expect("mutex poisoned")
            .remove(profile)
            .is_some())
    }
}

/// The origin of a profile's long-term keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Keychain,
    CredentialsFile,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySource::Keychain => "the OS keychain",
            KeySource::CredentialsFile => "the credentials file",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error(
        "no long-term keys for profile \"{profile}\"{}: store them with \
         `aws-mock-metadata keys store --profile {profile}`, or add aws_access_key_id and \
         aws_secret_access_key to the [{profile}] section of the credentials file",
        keychain_problem.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
    )]
    NotFound {
        profile: String,
        keychain_problem: Option<KeychainError>,
    },
    #[error(transparent)]
    Keychain(KeychainError),
}

/// Finds the long-term keys for `profile`: the keychain first, then the
/// credentials file when the keychain has no entry or cannot be reached.
pub fn resolve_keys(
    store: &dyn KeyStore,
    profile: &ProfileConfig,
) -> Result<(LongTermKeys, KeySource), KeysError> {
    let keychain_problem = match store.load(&profile.name) {
        Ok(Some(keys)) => return Ok((keys, KeySource::Keychain)),
        Ok(None) => None,
        Err(err @ KeychainError::Unavailable(_)) => Some(err),
        Err(err) => return Err(KeysError::Keychain(err)),
    };
    match &profile.file_keys {
        Some(keys) => Ok((keys.clone(), KeySource::CredentialsFile)),
        None => Err(KeysError::NotFound {
            profile: profile.name.clone(),
            keychain_problem,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn profile(file_keys: Option<LongTermKeys>) -> ProfileConfig {
        ProfileConfig {
            name: "dev".into(),
            mfa_serial: "arn:aws:iam::123456789012:mfa/dev".into(),
            region: "us-east-1".into(),
            session_duration: Duration::from_secs(3600),
            account_id: Some("123456789012".into()),
            file_keys,
        }
    }

    fn keys(id: &str) -> LongTermKeys {
        LongTermKeys {
            access_key_id: AccessKeyId::new(id),
            secret_access_key: Secret::new("s"),
        }
    }

    #[test]
    fn keychain_wins_over_credentials_file() {
        let store = MemoryKeyStore::default();
        store.store("dev", &keys("AKIAKEYCHAIN")).unwrap();
        let (found, source) = resolve_keys(&store, &profile(Some(keys("AKIAFILE")))).unwrap();
        assert_eq!(found.access_key_id.as_str(), "AKIAKEYCHAIN");
        assert_eq!(source, KeySource::Keychain);
    }

    #[test]
    fn unavailable_keychain_falls_back_to_file() {
        let store = MemoryKeyStore::default();
        store.set_failure(Some(KeychainError::Unavailable("locked".into())));
        let (found, source) = resolve_keys(&store, &profile(Some(keys("AKIAFILE")))).unwrap();
        assert_eq!(found.access_key_id.as_str(), "AKIAFILE");
        assert_eq!(source, KeySource::CredentialsFile);
    }

    #[test]
    fn no_keys_anywhere_says_how_to_add_them() {
        let store = MemoryKeyStore::default();
        store.set_failure(Some(KeychainError::Unavailable("locked".into())));
        let err = resolve_keys(&store, &profile(None)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("keys store --profile dev"), "{message}");
        assert!(message.contains("locked"), "{message}");
    }

    #[test]
    fn round_trip_and_delete() {
        let store = MemoryKeyStore::default();
        store.store("dev", &keys("AKIA1")).unwrap();
        assert_eq!(
            store.load("dev").unwrap().unwrap().access_key_id.as_str(),
            "AKIA1"
        );
        assert!(store.delete("dev").unwrap());
        assert!(!store.delete("dev").unwrap());
        assert_eq!(store.load("dev").unwrap(), None);
    }
}
