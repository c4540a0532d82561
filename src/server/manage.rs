//! The management API, `/manage/session`, as the original aws-mock-metadata
//! documents it:
//!
//! - `GET`: 404 with no current session, else 200 and the session.
//! - `DELETE`: removes the session; 200 whether or not one existed.
//! - `POST` with `token=123456` (form) or `{"token": "123456"}` (JSON):
//!   400 for a missing or malformed code (STS is not called), 401 when STS
//!   rejects the code (an existing session stays), 200 and the session on
//!   success.
//!
//! Error bodies are `{"error": CODE, "message": TEXT}`.

use std::collections::HashMap;

use serde::Serialize;
use warp::http::{HeaderMap, Method, StatusCode, header};

use super::{AppState, HttpResponse, json};
use crate::clock::format_utc_seconds;
use crate::secret::{MfaCode, MfaCodeError};
use crate::session::{Session, SubmitError};
use crate::sts::StsError;

pub const SESSION_PATH: &str = "/manage/session";

#[derive(Serialize)]
struct SessionBody<'a> {
    session: SessionFields<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionFields<'a> {
    access_key: &'a str,
    secret_key: &'a str,
    session_token: &'a str,
    expiration: String,
}

fn session_response(session: &Session) -> HttpResponse {
    let creds = &session.credentials;
    let body = SessionBody {
        session: SessionFields {
            access_key: creds.access_key_id.as_str(),
            secret_key: creds.secret_access_key.expose(),
            session_token: creds.session_token.expose(),
            expiration: format_utc_seconds(creds.expiration),
        },
    };
    json(StatusCode::OK, &body)
}

/// Builds an error response with a machine-readable code and a message a
/// person can act on.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message.into() }),
    )
}

/// Handles a request under `/manage`. `path` has no repeated or trailing
/// slashes.
pub async fn handle(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> HttpResponse {
    // The session API returns secrets without an IMDSv2 token, so it is
    // never served to a request that came through a proxy.
    if headers.contains_key("x-forwarded-for") {
        return error(
            StatusCode::FORBIDDEN,
            "forwarded",
            "requests forwarded by a proxy (X-Forwarded-For) are rejected",
        );
    }
    if path != SESSION_PATH {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such endpoint; the management API is {SESSION_PATH}"),
        );
    }
    match *method {
        Method::GET => match state.cache.current() {
            Some(session) => session_response(&session),
            None => error(
                StatusCode::NOT_FOUND,
                "no_session",
                "no current session; POST an MFA code to /manage/session to start one",
            ),
        },
        Method::DELETE => {
            state.cache.clear();
            json(
                StatusCode::OK,
                &serde_json::json!({ "message": "session cleared" }),
            )
        }
        Method::POST => submit(state, headers, body).await,
        _ => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET, POST or DELETE",
            );
            response.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_static("GET, POST, DELETE"),
            );
            response
        }
    }
}

async fn submit(state: &AppState, headers: &HeaderMap, body: &[u8]) -> HttpResponse {
    let code = match parse_code(headers, body) {
        Ok(code) => code,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_token", message),
    };
    match state.cache.submit_code(code).await {
        Ok(session) => session_response(&session),
        Err(err) => submit_error_response(&err),
    }
}

fn submit_error_response(err: &SubmitError) -> HttpResponse {
    let message = err.to_string();
    match err {
        SubmitError::Sts(StsError::WrongCode) => {
            error(StatusCode::UNAUTHORIZED, "wrong_code", message)
        }
        SubmitError::CodeReused => error(StatusCode::UNAUTHORIZED, "code_reused", message),
        SubmitError::RateLimited { retry_after } => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
            let seconds = retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
            response
        }
        SubmitError::Keys(_) | SubmitError::KeychainTimeout => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_long_term_keys",
            message,
        ),
        SubmitError::Sts(StsError::Throttled { .. }) => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "sts_throttled", message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            response
        }
        SubmitError::Sts(StsError::Timeout { .. }) => {
            error(StatusCode::GATEWAY_TIMEOUT, "sts_timeout", message)
        }
        SubmitError::Sts(StsError::Unreachable { .. }) => {
            error(StatusCode::BAD_GATEWAY, "sts_unreachable", message)
        }
        SubmitError::Sts(StsError::ClockSkew { .. }) | SubmitError::AlreadyExpired { .. } => {
            error(StatusCode::BAD_GATEWAY, "clock_skew", message)
        }
        SubmitError::Sts(_) => error(StatusCode::BAD_GATEWAY, "sts_error", message),
    }
}

/// Reads the MFA code from a JSON or form body. JSON is chosen by the
/// `Content-Type`, or by a body that starts with `{` when none is given.
pub fn parse_code(headers: &HeaderMap, body: &[u8]) -> Result<MfaCode, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase());
    let is_json = match content_type.as_deref() {
        Some(ct) => ct.starts_with("application/json") || ct.contains("+json"),
        None => body.trim_ascii_start().starts_with(b"{"),
    };
    let token = if is_json {
        let parsed: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| "body is not a JSON object; send {\"token\": \"123456\"}".to_owned())?;
        let Some(object) = parsed.as_object() else {
            return Err("body is not a JSON object; send {\"token\": \"123456\"}".to_owned());
        };
        match object.get("token") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(
                    "token must be a JSON string of 6 digits, such as \"012345\"".to_owned(),
                );
            }
        }
    } else {
        let fields: HashMap<String, String> = serde_urlencoded::from_bytes(body)
            .map_err(|_| "body is not form data; send token=123456".to_owned())?;
        fields.get("token").cloned()
    };
    MfaCode::parse(token.as_deref().unwrap_or("")).map_err(|err| match err {
        MfaCodeError::Missing => {
            "missing MFA code; send token=123456 or {\"token\": \"123456\"}".to_owned()
        }
        MfaCodeError::NotSixDigits => "the MFA code must be exactly 6 digits".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(ct) = content_type {
            map.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        map
    }

    #[test]
    fn code_from_form_and_json() {
        let form = headers(Some("application/x-www-form-urlencoded"));
        assert_eq!(
            parse_code(&form, b"token=123456").unwrap().expose(),
            "123456"
        );
        let json = headers(Some("application/json; charset=utf-8"));
        assert_eq!(
            parse_code(&json, br#"{"token":"012345"}"#)
                .unwrap()
                .expose(),
            "012345"
        );
        assert_eq!(
            parse_code(&headers(None), br#" {"token":"654321"}"#)
                .unwrap()
                .expose(),
            "654321"
        );
        assert_eq!(
            parse_code(&headers(None), b"token=654321")
                .unwrap()
                .expose(),
            "654321"
        );
    }

    #[test]
    fn malformed_or_missing_codes_are_rejected() {
        let form = headers(Some("application/x-www-form-urlencoded"));
        let json = headers(Some("application/json"));
        for (h, body) in [
            (&form, &b"token=12345"[..]),
            (&form, b"token="),
            (&form, b""),
            (&form, b"other=123456"),
            (&form, b"token=12345a"),
            (&json, br#"{"token":123456}"#),
            (&json, br#"{"token":"1234567"}"#),
            (&json, br#"{}"#),
            (&json, b"not json"),
            (&json, br#"["123456"]"#),
            (&json, b"\xff\xfe"),
        ] {
            assert!(
                parse_code(h, body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn error_messages_never_echo_the_code() {
        let form = headers(Some("application/x-www-form-urlencoded"));
        let message = parse_code(&form, b"token=98765").unwrap_err();
        assert!(!message.contains("98765"));
    }
}
