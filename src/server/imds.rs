//! The EC2 instance metadata paths that AWS SDKs read, with the IMDSv2
//! token handshake in front of them.
//!
//! Every answer is immediate: with no valid session the credentials path
//! returns 404 with a short hint, as real IMDS does when no role is
//! attached, and the session cache raises the MFA request in the
//! background. SDKs give IMDS about a second, so they could never wait for
//! a person to type a code.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use serde::Serialize;
use warp::http::{HeaderMap, Method, StatusCode, header};

use super::token::{TOKEN_HEADER, TTL_HEADER, parse_ttl};
use super::{AppState, HttpResponse, text};
use crate::clock::format_utc_seconds;
use crate::session::Session;

/// The instance ID served to SDKs; only its shape matters to them.
pub const INSTANCE_ID: &str = "i-0a3c5e7f9b1d2468a";

/// Handles one IMDS request. `path` has no repeated or trailing slashes.
pub fn handle(state: &AppState, method: &Method, path: &str, headers: &HeaderMap) -> HttpResponse {
    if path == "/latest/api/token" {
        return if method == Method::PUT {
            issue_token(state, headers)
        } else {
            method_not_allowed("PUT")
        };
    }
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    if let Some(rejection) = check_token(state, headers) {
        return rejection;
    }
    route(state, path)
}

fn issue_token(state: &AppState, headers: &HeaderMap) -> HttpResponse {
    // Real IMDS refuses token requests that passed through a proxy, so a
    // server-side request forgery through a forwarding proxy cannot start
    // an IMDSv2 session.
    if headers.contains_key("x-forwarded-for") {
        return text(
            StatusCode::FORBIDDEN,
            "token requests forwarded by a proxy (X-Forwarded-For) are refused",
        );
    }
    let ttl = match parse_ttl(headers.get(TTL_HEADER).map(|v| v.as_bytes())) {
        Ok(ttl) => ttl,
        Err(err) => return text(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let token = state.tokens.issue(ttl, state.clock.now());
    let mut response = text(StatusCode::OK, token);
    response
        .headers_mut()
        .insert(TTL_HEADER, ttl.as_secs().into());
    response
}

/// Returns the 401 response when the request's token is missing (and v1 is
/// not allowed) or invalid.
fn check_token(state: &AppState, headers: &HeaderMap) -> Option<HttpResponse> {
    match headers.get(TOKEN_HEADER) {
        Some(token) if state.tokens.verify(token.as_bytes(), state.clock.now()) => None,
        Some(_) => Some(text(
            StatusCode::UNAUTHORIZED,
            "IMDSv2 token is invalid or expired; request a new one with PUT /latest/api/token",
        )),
        None if state.allow_imdsv1 => None,
        None => Some(text(
            StatusCode::UNAUTHORIZED,
            "IMDSv2 token required; request one with PUT /latest/api/token (or start with --allow-imdsv1)",
        )),
    }
}

fn route(state: &AppState, path: &str) -> HttpResponse {
    let profile = state.cache.profile();
    let role = state.role_name.as_str();
    let listing = |items: &str| text(StatusCode::OK, items.to_owned());
    match path {
        "/" => listing("latest"),
        "/latest" => listing("dynamic\nmeta-data"),
        "/latest/meta-data" => listing("iam/\ninstance-id\nplacement/"),
        "/latest/meta-data/iam" => listing("info\nsecurity-credentials/"),
        "/latest/meta-data/iam/info" => iam_info(state),
        "/latest/meta-data/iam/security-credentials" => text(StatusCode::OK, role.to_owned()),
        "/latest/meta-data/iam/security-credentials-extended" if profile.account_id.is_some() => {
            text(StatusCode::OK, role.to_owned())
        }
        "/latest/meta-data/placement" => listing("availability-zone\nregion"),
        "/latest/meta-data/placement/region" => text(StatusCode::OK, profile.region.clone()),
        "/latest/meta-data/placement/availability-zone" => {
            text(StatusCode::OK, format!("{}a", profile.region))
        }
        "/latest/meta-data/instance-id" => listing(INSTANCE_ID),
        "/latest/dynamic" => listing("instance-identity/"),
        "/latest/dynamic/instance-identity" => listing("document"),
        "/latest/dynamic/instance-identity/document" => identity_document(state),
        _ => {
            if let Some(name) = path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
                credentials(state, name)
            } else if let Some(name) =
                path.strip_prefix("/latest/meta-data/iam/security-credentials-extended/")
                && profile.account_id.is_some()
            {
                credentials(state, name)
            } else {
                not_found()
            }
        }
    }
}

/// The credentials document, with the field names and formats SDKs parse.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsDocument<'a> {
    code: &'static str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
}

fn credentials(state: &AppState, role: &str) -> HttpResponse {
    if role != state.role_name {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no role named \"{}\" here; the role is \"{}\"",
                truncate(role, 64),
                state.role_name
            ),
        );
    }
    // Both the legacy and the extended document carry AccountId when it is
    // known: botocore and the Rust SDK read it from either.
    let account_id = state.cache.profile().account_id.as_deref();
    let document = state.cache.serve_caller(|session| {
        state
            .credentials_document
            .get_or_render(session, account_id)
    });
    match document {
        Some(document) => text(StatusCode::OK, document),
        None => text(
            StatusCode::NOT_FOUND,
            format!(
                "no MFA session for profile \"{}\"; enter an MFA code (menu bar, terminal, or POST /manage/session) and retry",
                state.cache.profile().name
            ),
        ),
    }
}

/// The rendered credentials document of one session. Rendering (two
/// timestamps and JSON) costs more than the rest of a request, and the
/// document only changes with the session. It is read without a lock.
#[derive(Default)]
pub struct DocumentCache(ArcSwapOption<RenderedDocument>);

struct RenderedDocument {
    session: Arc<Session>,
    body: Bytes,
}

impl DocumentCache {
    fn get_or_render(&self, session: &Arc<Session>, account_id: Option<&str>) -> Bytes {
        if let Some(rendered) = self.0.load().as_ref()
            && Arc::ptr_eq(&rendered.session, session)
        {
            return rendered.body.clone();
        }
        let body = render_credentials(session, account_id);
        self.0.store(Some(Arc::new(RenderedDocument {
            session: Arc::clone(session),
            body: body.clone(),
        })));
        body
    }
}

fn render_credentials(session: &Session, account_id: Option<&str>) -> Bytes {
    let creds = &session.credentials;
    let document = CredentialsDocument {
        code: "Success",
        last_updated: format_utc_seconds(session.obtained_at),
        kind: "AWS-HMAC",
        access_key_id: creds.access_key_id.as_str(),
        secret_access_key: creds.secret_access_key.expose(),
        token: creds.session_token.expose(),
        expiration: format_utc_seconds(creds.expiration),
        account_id,
    };
    Bytes::from(serde_json::to_string_pretty(&document).expect("strings always serialize"))
}

fn iam_info(state: &AppState) -> HttpResponse {
    let account = state
        .cache
        .profile()
        .account_id
        .as_deref()
        .unwrap_or("000000000000");
    let body = serde_json::json!({
        "Code": "Success",
        "LastUpdated": format_utc_seconds(state.started_at),
        "InstanceProfileArn": format!("arn:aws:iam::{account}:instance-profile/{}", state.role_name),
        "InstanceProfileId": "AIPAAWSMOCKMETADATA0",
    });
    text(
        StatusCode::OK,
        serde_json::to_string_pretty(&body).expect("JSON values always serialize"),
    )
}

fn identity_document(state: &AppState) -> HttpResponse {
    let profile = state.cache.profile();
    let body = serde_json::json!({
        "accountId": profile.account_id.as_deref().unwrap_or("000000000000"),
        "architecture": std::env::consts::ARCH,
        "availabilityZone": format!("{}a", profile.region),
        "imageId": "ami-00000000000000000",
        "instanceId": INSTANCE_ID,
        "instanceType": "t3.micro",
        "pendingTime": format_utc_seconds(state.started_at),
        "privateIp": "127.0.0.1",
        "region": profile.region,
        "version": "2017-09-30",
    });
    text(
        StatusCode::OK,
        serde_json::to_string_pretty(&body).expect("JSON values always serialize"),
    )
}

fn not_found() -> HttpResponse {
    text(StatusCode::NOT_FOUND, "not found")
}

fn method_not_allowed(allowed: &'static str) -> HttpResponse {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
    response
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}
