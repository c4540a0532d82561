//! Newtypes for values that must never reach a log: long-term keys, session
//! credentials and MFA codes. Each has a hand-written `Debug` that redacts
//! the secret part.

use std::fmt;
use std::time::SystemTime;

/// A secret string. `Debug` prints a fixed placeholder, and the value is
/// reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An access key ID. Not secret on its own, but `Debug` shows only the last
/// four characters, as the AWS console does.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKeyId(String);

impl AccessKeyId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the ID with all but the last four characters masked, for logs.
    pub fn masked(&self) -> String {
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("****{tail}")
    }
}

impl fmt::Debug for AccessKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessKeyId({})", self.masked())
    }
}

/// Long-term IAM user keys, the input to `GetSessionToken`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongTermKeys {
    pub access_key_id: AccessKeyId,
    pub secret_access_key: Secret,
}

/// Temporary credentials returned by STS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCredentials {
    pub access_key_id: AccessKeyId,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    /// Expiry, truncated to whole seconds so that every rendering agrees.
    pub expiration: SystemTime,
}

/// A one-time MFA code: exactly six ASCII digits, as STS requires.
#[derive(Clone, PartialEq, Eq)]
pub struct MfaCode(String);

/// The reason a string is not an MFA code. The message never repeats the
/// input, because the input may be a real code with a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MfaCodeError {
    #[error("MFA code is missing")]
    Missing,
    #[error("MFA code must be exactly 6 digits")]
    NotSixDigits,
}

impl MfaCode {
    /// Parses a code, ignoring surrounding white space and inner spaces
    /// (authenticator apps show codes as `123 456`).
    pub fn parse(input: &str) -> Result<Self, MfaCodeError> {
        let digits: String = input.chars().filter(|c| *c != ' ').collect();
        let digits = digits.trim();
        if digits.is_empty() {
            return Err(MfaCodeError::Missing);
        }
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MfaCodeError::NotSixDigits);
        }
        Ok(Self(digits.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MfaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MfaCode(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_secret_values() {
        let creds = SessionCredentials {
            access_key_id: AccessKeyId::new("ASIAEXAMPLEKEY123456"),
            secret_access_key: Secret::new("very-secret-value"),
            session_token: Secret::new("session-token-value"),
            expiration: SystemTime::UNIX_EPOCH,
        };
        let code = MfaCode::parse("123456").unwrap();
        let printed = format!("{creds:?} {code:?}");
        assert!(!printed.contains("very-secret-value"));
        assert!(!printed.contains("session-token-value"));
        assert!(!printed.contains("ASIAEXAMPLEKEY"));
        assert!(!printed.contains("123456"));
        assert!(printed.contains("****3456"));
    }

    #[test]
    fn mfa_code_accepts_six_digits_with_spaces() {
        assert_eq!(MfaCode::parse(" 123 456\n").unwrap().expose(), "123456");
    }

    #[test]
    fn mfa_code_rejects_wrong_lengths_and_letters() {
        assert_eq!(MfaCode::parse(""), Err(MfaCodeError::Missing));
        assert_eq!(MfaCode::parse("12345"), Err(MfaCodeError::NotSixDigits));
        assert_eq!(MfaCode::parse("1234567"), Err(MfaCodeError::NotSixDigits));
        assert_eq!(MfaCode::parse("12a456"), Err(MfaCodeError::NotSixDigits));
        assert_eq!(
            MfaCode::parse("１２３４５６"),
            Err(MfaCodeError::NotSixDigits)
        );
    }
}
