//! The AWS profile this app serves, read from `~/.aws/config` and
//! `~/.aws/credentials` with the AWS SDK's own profile parser, and
//! validated once at start-up.
//!
//! The file locations follow the SDK rules: `AWS_CONFIG_FILE` and
//! `AWS_SHARED_CREDENTIALS_FILE` override the defaults, and the profile is
//! `--profile`, else `AWS_PROFILE`, else `default`.

use std::time::Duration;

use aws_runtime::env_config::file::EnvConfigFiles;
use aws_types::os_shim_internal::{Env, Fs};

use crate::secret::{AccessKeyId, LongTermKeys, Secret};

/// GetSessionToken's accepted `DurationSeconds` range, in seconds.
pub const SESSION_DURATION_RANGE: std::ops::RangeInclusive<u64> = 900..=129_600;

/// Session length when the profile sets no `duration_seconds`: 12 hours,
/// the GetSessionToken default, so a code typed in the morning lasts the
/// working day.
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(43_200);

/// Region used for STS and served by IMDS when neither the profile nor the
/// environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// One validated AWS profile.
#[derive(Clone, Debug)]
pub struct ProfileConfig {
    pub name: String,
    /// ARN or serial number of the MFA device, sent as `SerialNumber`.
    pub mfa_serial: String,
    pub region: String,
    pub session_duration: Duration,
    /// Account of the MFA device's ARN; `None` for a hardware serial.
    pub account_id: Option<String>,
    /// Keys from the credentials file, used when the keychain has none.
    pub file_keys: Option<LongTermKeys>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the AWS config files: {0}")]
    Load(String),
    #[error(
        "profile \"{profile}\" not found in the AWS config files; add it to ~/.aws/config \
         (or $AWS_CONFIG_FILE) as [profile {profile}] with mfa_serial = <your MFA device ARN>, \
         or choose another with --profile"
    )]
    ProfileNotFound { profile: String },
    #[error(
        "profile \"{profile}\" has no mfa_serial; add the MFA device ARN with \
         `aws configure set mfa_serial arn:aws:iam::ACCOUNT_ID:mfa/DEVICE_NAME --profile {profile}` \
         (in ~/.aws/config the section is [profile {profile}], not [{profile}])"
    )]
    MissingMfaSerial { profile: String },
    #[error(
        "profile \"{profile}\": mfa_serial \"{value}\" is neither an MFA device ARN \
         (arn:aws:iam::ACCOUNT_ID:mfa/NAME) nor a hardware serial number (9 to 256 characters)"
    )]
    InvalidMfaSerial { profile: String, value: String },
    #[error(
        "profile \"{profile}\": duration_seconds \"{value}\" is not a whole number of seconds \
         from 900 to 129600 (15 minutes to 36 hours); fix it or remove it to use 43200"
    )]
    InvalidDuration { profile: String, value: String },
    #[error("profile \"{profile}\": region \"{value}\" is not a region name such as us-east-1")]
    InvalidRegion { profile: String, value: String },
    #[error(
        "profile \"{profile}\": aws_access_key_id is set in the credentials file but \
         aws_secret_access_key is not; add it, or remove both and store the keys with \
         `aws-mock-metadata keys store --profile {profile}`"
    )]
    IncompleteFileKeys { profile: String },
    #[error(
        "profile \"{profile}\" holds temporary keys (aws_session_token is set); GetSessionToken \
         needs the IAM user's long-term keys, so store those with \
         `aws-mock-metadata keys store --profile {profile}`"
    )]
    TemporaryFileKeys { profile: String },
}

/// Reads and validates `profile` from the files the SDK would read, given
/// the process environment `env` and file system `fs`.
pub async fn load_profile(profile: &str, env: &Env, fs: &Fs) -> Result<ProfileConfig, ConfigError> {
    let files = EnvConfigFiles::default();
    let set = aws_config::profile::parser::load(fs, env, &files, None)
        .await
        .map_err(|err| ConfigError::Load(err.to_string()))?;
    let Some(section) = set.get_profile(profile) else {
        return Err(ConfigError::ProfileNotFound {
            profile: profile.to_owned(),
        });
    };
    let get = |key: &str| section.get(key).map(str::trim).filter(|v| !v.is_empty());
    let err_profile = || profile.to_owned();

    let mfa_serial = get("mfa_serial").ok_or_else(|| ConfigError::MissingMfaSerial {
        profile: err_profile(),
    })?;
    let account_id =
        validate_mfa_serial(mfa_serial).map_err(|()| ConfigError::InvalidMfaSerial {
            profile: err_profile(),
            value: mfa_serial.to_owned(),
        })?;

    let session_duration = match get("duration_seconds") {
        None => DEFAULT_SESSION_DURATION,
        Some(value) => parse_duration(value).ok_or_else(|| ConfigError::InvalidDuration {
            profile: err_profile(),
            value: value.to_owned(),
        })?,
    };

    let region = get("region")
        .map(str::to_owned)
        .or_else(|| env.get("AWS_REGION").ok())
        .or_else(|| env.get("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    if !is_region_name(&region) {
        return Err(ConfigError::InvalidRegion {
            profile: err_profile(),
            value: region,
        });
    }

    let file_keys = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ConfigError::IncompleteFileKeys {
                profile: err_profile(),
            });
        }
        (Some(_), Some(_)) if get("aws_session_token").is_some() => {
            return Err(ConfigError::TemporaryFileKeys {
                profile: err_profile(),
            });
        }
        (Some(id), Some(secret)) => Some(LongTermKeys {
            access_key_id: AccessKeyId::new(id),
            secret_access_key: Secret::new(secret),
        }),
    };

    Ok(ProfileConfig {
        name: profile.to_owned(),
        mfa_serial: mfa_serial.to_owned(),
        region,
        session_duration,
        account_id,
        file_keys,
    })
}

/// Checks an `mfa_serial` value and returns the account ID when it is an
/// ARN. STS accepts `[\w+=/:,.@-]` with 9 to 256 characters.
fn validate_mfa_serial(value: &str) -> Result<Option<String>, ()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=/:,.@-".contains(c);
    if !(9..=256).contains(&value.len()) || !value.chars().all(allowed) {
        return Err(());
    }
    if !value.starts_with("arn:") {
        return Ok(None);
    }
    // arn:PARTITION:iam::ACCOUNT_ID:mfa/NAME
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.starts_with("mfa/")
                && resource.len() > 4 =>
        {
            Ok(Some((*account).to_owned()))
        }
        _ => Err(()),
    }
}

fn parse_duration(value: &str) -> Option<Duration> {
    let secs: u64 = value.parse().ok()?;
    SESSION_DURATION_RANGE
        .contains(&secs)
        .then(|| Duration::from_secs(secs))
}

fn is_region_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.contains('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "/home/me/.aws/config";
    const CREDENTIALS: &str = "/home/me/.aws/credentials";

    async fn load(
        config: &str,
        credentials: &str,
        profile: &str,
    ) -> Result<ProfileConfig, ConfigError> {
        let env = Env::from_slice(&[
            ("AWS_CONFIG_FILE", CONFIG),
            ("AWS_SHARED_CREDENTIALS_FILE", CREDENTIALS),
        ]);
        let fs = Fs::from_slice(&[(CONFIG, config), (CREDENTIALS, credentials)]);
        load_profile(profile, &env, &fs).await
    }

    #[tokio::test]
    async fn reads_profile_from_both_files() {
        let profile = load(
            "[profile dev]\nmfa_serial = arn:aws:iam::123456789012:mfa/dev\nregion = eu-west-1\nduration_seconds = 3600\n",
            "[dev]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = secret\n",
            "dev",
        )
        .await
        .unwrap();
        assert_eq!(profile.mfa_serial, "arn:aws:iam::123456789012:mfa/dev");
        assert_eq!(profile.region, "eu-west-1");
        assert_eq!(profile.session_duration, Duration::from_secs(3600));
        assert_eq!(profile.account_id.as_deref(), Some("123456789012"));
        let keys = profile.file_keys.unwrap();
        assert_eq!(keys.access_key_id.as_str(), "AKIAEXAMPLE");
        assert_eq!(keys.secret_access_key.expose(), "secret");
    }

    #[tokio::test]
    async fn defaults_apply_when_optional_keys_are_absent() {
        let profile = load("[default]\nmfa_serial = GAHT12345678\n", "", "default")
            .await
            .unwrap();
        assert_eq!(profile.region, DEFAULT_REGION);
        assert_eq!(profile.session_duration, DEFAULT_SESSION_DURATION);
        assert_eq!(profile.account_id, None);
        assert!(profile.file_keys.is_none());
    }

    #[tokio::test]
    async fn missing_mfa_serial_names_the_profile_and_the_fix() {
        let err = load("[profile dev]\nregion = us-east-1\n", "", "dev")
            .await
            .unwrap_err();
        assert!(matches!(err, ConfigError::MissingMfaSerial { .. }));
        let message = err.to_string();
        assert!(message.contains("\"dev\""), "{message}");
        assert!(
            message.contains("aws configure set mfa_serial"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn duration_outside_sts_range_is_rejected() {
        for value in ["899", "129601", "1h", "-5"] {
            let config = format!(
                "[profile dev]\nmfa_serial = arn:aws:iam::123456789012:mfa/dev\nduration_seconds = {value}\n"
            );
            let err = load(&config, "", "dev").await.unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidDuration { .. }),
                "{value}: {err}"
            );
            assert!(err.to_string().contains(value));
        }
        for value in ["900", "129600"] {
            let config = format!(
                "[profile dev]\nmfa_serial = arn:aws:iam::123456789012:mfa/dev\nduration_seconds = {value}\n"
            );
            assert!(load(&config, "", "dev").await.is_ok(), "{value}");
        }
    }

    #[tokio::test]
    async fn unknown_profile_is_reported() {
        let err = load("[profile dev]\nmfa_serial = GAHT12345678\n", "", "prod")
            .await
            .unwrap_err();
        assert!(matches!(err, ConfigError::ProfileNotFound { .. }));
    }

    #[tokio::test]
    async fn temporary_keys_in_credentials_file_are_rejected() {
        let err = load(
            "[profile dev]\nmfa_serial = GAHT12345678\n",
            "[dev]\naws_access_key_id = ASIA\naws_secret_access_key = s\naws_session_token = t\n",
            "dev",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ConfigError::TemporaryFileKeys { .. }));
    }

    #[test]
    fn mfa_serial_forms() {
        assert_eq!(
            validate_mfa_serial("arn:aws:iam::123456789012:mfa/me"),
            Ok(Some("123456789012".into()))
        );
        assert_eq!(
            validate_mfa_serial("arn:aws-cn:iam::123456789012:mfa/a/b"),
            Ok(Some("123456789012".into()))
        );
        assert_eq!(validate_mfa_serial("GAHT12345678"), Ok(None));
        assert!(validate_mfa_serial("arn:aws:iam::12345:mfa/me").is_err());
        assert!(validate_mfa_serial("arn:aws:iam::123456789012:user/me").is_err());
        assert!(validate_mfa_serial("short").is_err());
        assert!(validate_mfa_serial("has space in it").is_err());
    }
}
