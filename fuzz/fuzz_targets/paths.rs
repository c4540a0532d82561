//! `normalize_path`, and whole requests through `server::handle` against a
//! state that contains a session. The target asserts that a request never
//! gets a 5xx or credentials without a valid IMDSv2 token, and that the
//! `Host`/`Origin` guard rejects hosts the server does not serve.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_mock_metadata::clock::{Clock, ManualClock};
use aws_mock_metadata::config::ProfileConfig;
use aws_mock_metadata::keychain::MemoryKeyStore;
use aws_mock_metadata::secret::{AccessKeyId, LongTermKeys, MfaCode, Secret, SessionCredentials};
use aws_mock_metadata::server::guard::Guard;
use aws_mock_metadata::server::token::{TOKEN_HEADER, TTL_HEADER, TokenSigner};
use aws_mock_metadata::server::{self, AppState, BoundedBody, normalize_path};
use aws_mock_metadata::session::SessionCache;
use aws_mock_metadata::sts::{BoxFuture, SessionIssuer, StsError};
use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, header};

const KEY: [u8; 32] = [0x5a; 32];
const START: u64 = 1_800_000_000;
const ROLE: &str = "local-credentials";
const LISTEN: &str = "127.0.0.1:45000";
const FIRST_CODE: &str = "123456";
const WRONG_CODE: &str = "000000";

const PATHS: &[&str] = &[
    "/",
    "/latest",
    "/latest/api/token",
    "/latest/meta-data/",
    "/latest/meta-data/iam/info",
    "/latest/meta-data/iam/security-credentials/",
    "/latest/meta-data/iam/security-credentials/local-credentials",
    "/latest/meta-data/iam/security-credentials-extended/local-credentials",
    "/latest/meta-data/placement/availability-zone",
    "/latest/meta-data/instance-id",
    "/latest/dynamic/instance-identity/document",
    "/manage/session",
];

/// `Host` values that the guard of a server on [`LISTEN`] accepts.
const HOSTS: &[&str] = &[
    "127.0.0.1:45000",
    "localhost",
    "169.254.169.254",
    "[::1]:45000",
];

const HEADER_NAMES: &[&str] = &[
    TTL_HEADER,
    "content-type",
    "x-forwarded-for",
    "origin",
    "sec-fetch-site",
    "host",
];

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"];

/// Issues a 12-hour session for any code but [`WRONG_CODE`].
struct FakeIssuer {
    clock: Arc<ManualClock>,
}

impl SessionIssuer for FakeIssuer {
    fn get_session_token<'a>(
        &'a self,
        _keys: LongTermKeys,
        _profile: &'a ProfileConfig,
        code: MfaCode,
    ) -> BoxFuture<'a, std::result::Result<SessionCredentials, StsError>> {
        let result = if code.expose() == WRONG_CODE {
            Err(StsError::WrongCode)
        } else {
            Ok(SessionCredentials {
                access_key_id: AccessKeyId::new("ASIAFUZZSESSION00001"),
                secret_access_key: Secret::new("fuzz-session-secret"),
                session_token: Secret::new("fuzz-session-token"),
                expiration: self.clock.now() + Duration::from_secs(43_200),
            })
        };
        Box::pin(async move { result })
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
    })
}

/// Builds a fresh state whose cache contains a session, so that every input
/// starts from the same state.
async fn state(allow_imdsv1: bool) -> AppState {
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(START)));
    let profile = ProfileConfig {
        name: "dev".into(),
        mfa_serial: "arn:aws:iam::123456789012:mfa/dev".into(),
        region: "eu-central-1".into(),
        session_duration: Duration::from_secs(43_200),
        account_id: Some("123456789012".into()),
        file_keys: Some(LongTermKeys {
            access_key_id: AccessKeyId::new("AKIAFUZZLONGTERM0001"),
            secret_access_key: Secret::new("long-term-secret"),
        }),
    };
    let cache = Arc::new(SessionCache::new(
        profile,
        clock.clone(),
        Arc::new(FakeIssuer { clock: clock.clone() }),
        Arc::new(MemoryKeyStore::default()),
    ));
    cache
        .submit_code(MfaCode::parse(FIRST_CODE).expect("six digits"))
        .await
        .expect("the fake issuer accepts the first code");
    AppState {
        cache,
        tokens: TokenSigner::from_key(KEY),
        role_name: ROLE.into(),
        allow_imdsv1,
        clock,
        started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(START),
        guard: Guard::new(&[LISTEN.parse().expect("a socket address")], &[]),
        credentials_document: Default::default(),
    }
}

struct Request {
    method: Method,
    path: String,
    headers: HeaderMap,
    valid_token: bool,
    body: BoundedBody,
}

fn pick<'a>(u: &mut Unstructured<'_>, items: &[&'a str]) -> Result<&'a str> {
    Ok(items[u.choose_index(items.len())?])
}

fn bytes_or_known(u: &mut Unstructured<'_>, known: &[&str]) -> Result<Vec<u8>> {
    Ok(if u.ratio(3, 4)? {
        pick(u, known)?.as_bytes().to_vec()
    } else {
        u.arbitrary::<&[u8]>()?.to_vec()
    })
}

fn request(u: &mut Unstructured<'_>) -> Result<Request> {
    let method = if u.ratio(7, 8)? {
        Method::from_bytes(pick(u, METHODS)?.as_bytes()).expect("a known method")
    } else {
        Method::from_bytes(u.arbitrary::<&[u8]>()?).unwrap_or(Method::GET)
    };
    let path = match u.choose_index(4)? {
        0 => pick(u, PATHS)?.to_owned(),
        1 => pick(u, PATHS)?.replace('/', "//"),
        2 => format!("{}{}", pick(u, PATHS)?, u.arbitrary::<&str>()?),
        _ => u.arbitrary::<&str>()?.to_owned(),
    };
    let mut headers = HeaderMap::new();
    if u.ratio(7, 8)? {
        let host = bytes_or_known(u, HOSTS)?;
        if let Ok(value) = HeaderValue::from_bytes(&host) {
            headers.insert(header::HOST, value);
        }
    }
    let signer = TokenSigner::from_key(KEY);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(START);
    let mut valid_token = false;
    let token = match u.choose_index(4)? {
        0 => None,
        1 => {
            valid_token = true;
            Some(signer.issue(Duration::from_secs(60), now).into_bytes())
        }
        2 => Some(
            signer
                .issue(Duration::from_secs(60), now - Duration::from_secs(61))
                .into_bytes(),
        ),
        _ => Some(u.arbitrary::<&[u8]>()?.to_vec()),
    };
    if let Some(token) = token {
        match HeaderValue::from_bytes(&token) {
            Ok(value) => {
                headers.insert(TOKEN_HEADER, value);
            }
            Err(_) => valid_token = false,
        }
    }
    for _ in 0..u.choose_index(4)? {
        let name = bytes_or_known(u, HEADER_NAMES)?;
        let value = bytes_or_known(u, &["21600", "1", "application/json", "null"])?;
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&name), HeaderValue::from_bytes(&value)) {
            if name.as_str() != TOKEN_HEADER {
                headers.append(name, value);
            }
        }
    }
    let body = match u.choose_index(8)? {
        0 => BoundedBody::TooLarge,
        1 => BoundedBody::Failed,
        2 => BoundedBody::TimedOut,
        3 => BoundedBody::Complete(Bytes::from(format!("token={}", pick(u, &[FIRST_CODE, WRONG_CODE, "654321"])?))),
        _ => BoundedBody::Complete(Bytes::copy_from_slice(u.arbitrary::<&[u8]>()?)),
    };
    Ok(Request { method, path, headers, valid_token, body })
}

/// Returns whether the guard of a server on [`LISTEN`] should let the
/// request in. That needs a `Host` naming one of its addresses (with no
/// port, port 80 or port 45000) and no header that only browsers send.
fn passes_guard(headers: &HeaderMap) -> bool {
    let browser = headers.contains_key(header::ORIGIN)
        || headers.keys().any(|name| name.as_str().starts_with("sec-fetch-"));
    let host_ok = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| {
            let host = host.trim().to_ascii_lowercase();
            let (name, port) = match host.strip_prefix('[') {
                Some(_) => match host.find(']') {
                    Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':')),
                    None => (host.as_str(), None),
                },
                None => match host.rsplit_once(':') {
                    Some((name, port)) => (name, Some(port)),
                    None => (host.as_str(), None),
                },
            };
            let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|p| p == 80 || p == 45000));
            port_ok && ["127.0.0.1", "localhost", "169.254.169.254", "[::1]"].contains(&name)
        });
    host_ok && !browser
}

fn check_path(raw: &str) {
    let normal = normalize_path(raw);
    assert!(normal.starts_with('/'), "{raw:?} -> {normal:?}");
    assert!(!normal.contains("//"), "{raw:?} -> {normal:?}");
    assert!(normal == "/" || !normal.ends_with('/'), "{raw:?} -> {normal:?}");
    assert_eq!(normalize_path(&normal), normal, "not idempotent for {raw:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(allow_imdsv1) = u.ratio(1, 10) else {
        return;
    };
    let mut requests = Vec::new();
    while !u.is_empty() && requests.len() < 4 {
        match request(&mut u) {
            Ok(request) => requests.push(request),
            Err(_) => break,
        }
    }
    if requests.is_empty() {
        return;
    }
    runtime().block_on(async {
        let state = state(allow_imdsv1).await;
        for request in requests {
            check_path(&request.path);
            let guarded = passes_guard(&request.headers);
            let response = server::handle(
                &state,
                &request.method,
                &request.path,
                &request.headers,
                request.body,
            )
            .await;
            let status = response.status();
            let body = String::from_utf8_lossy(response.body());
            assert!(
                !status.is_server_error(),
                "{status} for {} {:?}: {body}",
                request.method,
                request.path
            );
            if !guarded {
                assert!(
                    status.is_client_error(),
                    "{status} past the guard for {} {:?} {:?}",
                    request.method,
                    request.path,
                    request.headers
                );
            }
            if !request.valid_token && !allow_imdsv1 {
                assert!(
                    !body.contains("AccessKeyId"),
                    "credentials without a token for {} {:?}",
                    request.method,
                    request.path
                );
            }
        }
    });
});
