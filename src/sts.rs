//! STS calls, mapped to this app's credential type and to errors that say
//! what went wrong and what to do.
//!
//! The endpoint comes from the standard SDK settings (`AWS_ENDPOINT_URL_STS`,
//! `AWS_ENDPOINT_URL`, or `endpoint_url` in the profile), which is how tests
//! point the app at a local STS.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use crate::clock::truncate_to_seconds;
use crate::config::ProfileConfig;
use crate::secret::{AccessKeyId, LongTermKeys, MfaCode, Secret, SessionCredentials};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Anything that turns long-term keys and an MFA code into session
/// credentials: STS itself, or a stand-in in unit tests.
pub trait SessionIssuer: Send + Sync + 'static {
    fn get_session_token<'a>(
        &'a self,
        keys: LongTermKeys,
        profile: &'a ProfileConfig,
        code: MfaCode,
    ) -> BoxFuture<'a, Result<SessionCredentials, StsError>>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    #[error("STS rejected the MFA code; wait for the next code from your MFA device and enter it")]
    WrongCode,
    #[error(
        "STS could not validate MFA codes for device \"{mfa_serial}\"; check that mfa_serial is \
         the ARN of an MFA device assigned to this IAM user"
    )]
    MfaDeviceMismatch { mfa_serial: String },
    #[error(
        "STS does not recognise the long-term access key {access_key_id} ({code}); store the \
         current keys with `aws-mock-metadata keys store --profile {profile}`"
    )]
    UnknownKey {
        access_key_id: String,
        code: String,
        profile: String,
    },
    #[error(
        "STS rejected the request signature, so the secret access key does not match access key \
         {access_key_id}; store the current keys with `aws-mock-metadata keys store --profile {profile}`"
    )]
    SignatureMismatch {
        access_key_id: String,
        profile: String,
    },
    #[error(
        "STS rejected the request time ({message}); set the system clock right (enable NTP) and try again"
    )]
    ClockSkew { message: String },
    #[error("STS is throttling requests ({code}); wait a minute and try again")]
    Throttled { code: String },
    #[error("STS denied GetSessionToken: {message}")]
    AccessDenied { message: String },
    #[error("STS did not answer within {} s; check the network connection and the STS endpoint setting", timeout.as_secs())]
    Timeout { timeout: Duration },
    #[error(
        "cannot reach STS: {detail}; check the network connection and the STS endpoint setting"
    )]
    Unreachable { detail: String },
    #[error("STS failed with {code}: {message}")]
    Service { code: String, message: String },
    #[error("STS returned a response without usable credentials: {detail}")]
    InvalidResponse { detail: String },
    #[error("cannot build the STS request: {detail}")]
    InvalidRequest { detail: String },
}

impl StsError {
    /// Removes `secret` from every text the error carries, because SDK
    /// error texts can quote the request.
    fn redact(self, secret: &str) -> Self {
        let scrub = |text: String| text.replace(secret, "<redacted>");
        match self {
            StsError::ClockSkew { message } => StsError::ClockSkew {
                message: scrub(message),
            },
            StsError::AccessDenied { message } => StsError::AccessDenied {
                message: scrub(message),
            },
            StsError::Unreachable { detail } => StsError::Unreachable {
                detail: scrub(detail),
            },
            StsError::Service { code, message } => StsError::Service {
                code,
                message: scrub(message),
            },
            StsError::InvalidResponse { detail } => StsError::InvalidResponse {
                detail: scrub(detail),
            },
            StsError::InvalidRequest { detail } => StsError::InvalidRequest {
                detail: scrub(detail),
            },
            other => other,
        }
    }

    /// True when a person should simply try the next code.
    pub fn is_wrong_code(&self) -> bool {
        matches!(self, StsError::WrongCode)
    }
}

/// Classifies an STS error response by its code and message. STS reuses
/// `AccessDenied` for wrong codes and for device problems, so the message
/// decides between them.
pub fn classify_service_error(
    code: Option<&str>,
    message: Option<&str>,
    keys: &LongTermKeys,
    profile: &ProfileConfig,
) -> StsError {
    let code = code.unwrap_or("Unknown").to_owned();
    let message = message.unwrap_or("").trim().to_owned();
    let lower = message.to_ascii_lowercase();
    match code.as_str() {
        "AccessDenied" if lower.contains("invalid mfa one time pass code") => StsError::WrongCode,
        "AccessDenied" if lower.contains("unable to validate mfa code") => {
            StsError::MfaDeviceMismatch {
                mfa_serial: profile.mfa_serial.clone(),
            }
        }
        "AccessDenied" => StsError::AccessDenied { message },
        "InvalidClientTokenId" | "UnrecognizedClientException" => StsError::UnknownKey {
            access_key_id: keys.access_key_id.masked(),
            code,
            profile: profile.name.clone(),
        },
        "SignatureDoesNotMatch"
            if lower.contains("signature expired")
                || lower.contains("signature not yet current") =>
        {
            StsError::ClockSkew { message }
        }
        "SignatureDoesNotMatch" => StsError::SignatureMismatch {
            access_key_id: keys.access_key_id.masked(),
            profile: profile.name.clone(),
        },
        "RequestExpired" | "RequestTimeTooSkewed" | "InvalidSignatureException" => {
            StsError::ClockSkew { message }
        }
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => StsError::Throttled { code },
        _ => StsError::Service { code, message },
    }
}

/// Checks an STS endpoint URL from the environment: an `http` or `https`
/// URL with a host and no white space.
pub fn validate_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("\"{url}\" does not start with http:// or https://"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("\"{url}\" contains white space"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("\"{url}\" has no host"));
    }
    Ok(())
}

/// The real STS, through aws-sdk-sts.
#[derive(Clone, Debug)]
pub struct StsClient {
    base: SdkConfig,
    timeout: Duration,
    /// The endpoint override, for messages only; the SDK resolves the
    /// endpoint it really uses.
    endpoint: Option<String>,
}

impl StsClient {
    /// Builds a client from the SDK's own configuration sources for
    /// `profile` (endpoint URLs, proxy settings), but with the region fixed
    /// and no credential chain: the keys are passed per call.
    pub async fn from_environment(profile: &ProfileConfig, timeout: Duration) -> Self {
        let base = Self::loader(profile, timeout).load().await;
        let ignore_overrides =
            std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_ok_and(|v| v == "true");
        let endpoint = ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]
            .iter()
            .filter(|_| !ignore_overrides)
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
        Self {
            base,
            timeout,
            endpoint,
        }
    }

    /// Builds a client that sends every call to `endpoint_url`.
    pub async fn with_endpoint(
        profile: &ProfileConfig,
        endpoint_url: &str,
        timeout: Duration,
    ) -> Self {
        let base = Self::loader(profile, timeout)
            .endpoint_url(endpoint_url)
            .load()
            .await;
        Self {
            base,
            timeout,
            endpoint: Some(endpoint_url.to_owned()),
        }
    }

    fn loader(profile: &ProfileConfig, timeout: Duration) -> aws_config::ConfigLoader {
        aws_config::defaults(BehaviorVersion::latest())
            .profile_name(&profile.name)
            .region(Region::new(profile.region.clone()))
            .no_credentials()
            // A one-time code must not be resent: after a lost response the
            // retry would fail as a reused code and hide the real outcome.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .operation_timeout(timeout)
                    .build(),
            )
    }

    /// Returns the endpoint override set in the environment or by the
    /// caller, if any, for log messages.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    async fn call(
        &self,
        keys: LongTermKeys,
        profile: &ProfileConfig,
        code: MfaCode,
    ) -> Result<SessionCredentials, StsError> {
        let credentials = Credentials::new(
            keys.access_key_id.as_str(),
            keys.secret_access_key.expose(),
            None,
            None,
            "aws-mock-metadata-long-term-keys",
        );
        let config = aws_sdk_sts::config::Builder::from(&self.base)
            .credentials_provider(credentials)
            .build();
        let client = aws_sdk_sts::Client::from_conf(config);
        let result = client
            .get_session_token()
            .serial_number(&profile.mfa_serial)
            .token_code(code.expose())
            .duration_seconds(i32::try_from(profile.session_duration.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) => {
                return Err(self
                    .map_sdk_error(err, &keys, profile)
                    .redact(code.expose()));
            }
        };
        let creds = output
            .credentials()
            .ok_or_else(|| StsError::InvalidResponse {
                detail: "no Credentials element".into(),
            })?;
        let expiration =
            SystemTime::try_from(*creds.expiration()).map_err(|_| StsError::InvalidResponse {
                detail: "Expiration is out of range".into(),
            })?;
        Ok(SessionCredentials {
            access_key_id: AccessKeyId::new(creds.access_key_id()),
            secret_access_key: Secret::new(creds.secret_access_key()),
            session_token: Secret::new(creds.session_token()),
            expiration: truncate_to_seconds(expiration),
        })
    }

    fn map_sdk_error<E, R>(
        &self,
        err: SdkError<E, R>,
        keys: &LongTermKeys,
        profile: &ProfileConfig,
    ) -> StsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(context) => {
                classify_service_error(context.err().code(), context.err().message(), keys, profile)
            }
            SdkError::TimeoutError(_) => StsError::Timeout {
                timeout: self.timeout,
            },
            SdkError::DispatchFailure(failure) if failure.is_timeout() => StsError::Timeout {
                timeout: self.timeout,
            },
            SdkError::DispatchFailure(_) => StsError::Unreachable {
                detail: format!(
                    "{} (endpoint {})",
                    error_chain(&err),
                    self.endpoint_url().unwrap_or("of the profile's region")
                ),
            },
            // The SDK's text for a request it could not build includes the
            // request itself, with the MFA code in its body, so it is not
            // passed on.
            SdkError::ConstructionFailure(_) => StsError::InvalidRequest {
                detail: "check the STS endpoint setting (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or endpoint_url)"
                    .to_owned(),
            },
            _ => StsError::InvalidResponse {
                detail: error_chain(&err),
            },
        }
    }
}

impl SessionIssuer for StsClient {
    fn get_session_token<'a>(
        &'a self,
        keys: LongTermKeys,
        profile: &'a ProfileConfig,
        code: MfaCode,
    ) -> BoxFuture<'a, Result<SessionCredentials, StsError>> {
        Box::pin(self.call(keys, profile, code))
    }
}

/// Joins an error and its sources into one line.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> (LongTermKeys, ProfileConfig) {
        let keys = LongTermKeys {
            access_key_id: AccessKeyId::new("AKIAEXAMPLE1234"),
            secret_access_key: Secret::new("s"),
        };
        let profile = ProfileConfig {
            name: "dev".into(),
            mfa_serial: "arn:aws:iam::123456789012:mfa/dev".into(),
            region: "us-east-1".into(),
            session_duration: Duration::from_secs(3600),
            account_id: None,
            file_keys: None,
        };
        (keys, profile)
    }

    #[test]
    fn endpoint_urls_are_checked() {
        assert!(validate_endpoint("http://127.0.0.1:5000").is_ok());
        assert!(validate_endpoint("https://sts.eu-west-1.amazonaws.com/").is_ok());
        assert!(validate_endpoint("not a url").is_err());
        assert!(validate_endpoint("127.0.0.1:5000").is_err());
        assert!(validate_endpoint("http://127.0.0.1:5000/a b").is_err());
        assert!(validate_endpoint("http:///path").is_err());
    }

    #[test]
    fn error_texts_lose_the_code() {
        let err = StsError::InvalidResponse {
            detail: "Request { body: TokenCode=112233 }".into(),
        }
        .redact("112233");
        assert!(!err.to_string().contains("112233"), "{err}");
    }

    #[test]
    fn wrong_code_is_told_apart_from_device_problems() {
        let (keys, profile) = fixtures();
        let wrong = classify_service_error(
            Some("AccessDenied"),
            Some("MultiFactorAuthentication failed with invalid MFA one time pass code. "),
            &keys,
            &profile,
        );
        assert_eq!(wrong, StsError::WrongCode);
        let device = classify_service_error(
            Some("AccessDenied"),
            Some(
                "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial number is valid and associated with this user.",
            ),
            &keys,
            &profile,
        );
        assert!(matches!(device, StsError::MfaDeviceMismatch { .. }));
        assert!(!device.is_wrong_code());
    }

    #[test]
    fn key_signature_and_clock_errors_are_not_wrong_codes() {
        let (keys, profile) = fixtures();
        let unknown = classify_service_error(
            Some("InvalidClientTokenId"),
            Some("The security token included in the request is invalid."),
            &keys,
            &profile,
        );
        assert!(matches!(unknown, StsError::UnknownKey { .. }));
        assert!(unknown.to_string().contains("****1234"));
        assert!(!unknown.to_string().contains("AKIAEXAMPLE"));
        let signature = classify_service_error(
            Some("SignatureDoesNotMatch"),
            Some("The request signature we calculated does not match"),
            &keys,
            &profile,
        );
        assert!(matches!(signature, StsError::SignatureMismatch { .. }));
        let clock = classify_service_error(
            Some("SignatureDoesNotMatch"),
            Some("Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z"),
            &keys,
            &profile,
        );
        assert!(matches!(clock, StsError::ClockSkew { .. }));
        let throttled =
            classify_service_error(Some("Throttling"), Some("Rate exceeded"), &keys, &profile);
        assert!(matches!(throttled, StsError::Throttled { .. }));
    }
}
