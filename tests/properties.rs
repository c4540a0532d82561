//! Property tests for the parsers that read request data: the IMDSv2 TTL
//! header and token, the path normalizer, the MFA code in management
//! bodies, and the whole request router. They run with `cargo test`, and
//! each property uses a moderate number of cases so the file takes seconds.
//! `fuzz/` covers the same parsers with libFuzzer for longer runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_mock_metadata::clock::{Clock, ManualClock};
use aws_mock_metadata::config::ProfileConfig;
use aws_mock_metadata::keychain::MemoryKeyStore;
use aws_mock_metadata::secret::{
    AccessKeyId, LongTermKeys, MfaCode, MfaCodeError, Secret, SessionCredentials,
};
use aws_mock_metadata::server::guard::Guard;
use aws_mock_metadata::server::manage::parse_code;
use aws_mock_metadata::server::token::{
    TOKEN_HEADER, TTL_HEADER, TTL_RANGE, TokenSigner, TtlError, parse_ttl,
};
use aws_mock_metadata::server::{self, AppState, BoundedBody, normalize_path};
use aws_mock_metadata::session::SessionCache;
use aws_mock_metadata::sts::{BoxFuture, SessionIssuer, StsError};
use bytes::Bytes;
use proptest::prelude::*;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, header};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their input, so no regression files
        // are written next to this test.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

const KEY: [u8; 32] = [0x5a; 32];
const OTHER_KEY: [u8; 32] = [0xa5; 32];

/// Whole seconds from 2001 to 2100, and any fraction of a second.
fn wall_time() -> impl Strategy<Value = SystemTime> {
    (1_000_000_000u64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(s, n)| at(s, n))
}

fn ttl_secs() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(21_600u64), TTL_RANGE]
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------
// parse_ttl

/// White space that may surround the value: what HTTP allows (space and
/// tab) plus what `str::trim` also removes.
fn padding() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just(' '), Just('\t'), Just('\u{a0}'), Just('\u{3000}')],
        0..3,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn ttl_accepts_every_value_in_range(
        secs in TTL_RANGE,
        zeros in 0usize..3,
        before in padding(),
        after in padding(),
    ) {
        let text = format!("{before}{}{secs}{after}", "0".repeat(zeros));
        prop_assert_eq!(parse_ttl(Some(text.as_bytes())), Ok(Duration::from_secs(secs)));
    }

    #[test]
    fn ttl_rejects_numbers_outside_range(
        secs in prop_oneof![Just(0u64), 21_601u64..=u64::MAX],
    ) {
        let text = secs.to_string();
        prop_assert_eq!(parse_ttl(Some(text.as_bytes())), Err(TtlError::Invalid));
        let signed = format!("-{secs}");
        prop_assert_eq!(parse_ttl(Some(signed.as_bytes())), Err(TtlError::Invalid));
    }

    #[test]
    fn ttl_accepts_only_padded_digits(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        // An accepted value is in range, and the input is that number in
        // decimal (leading zeros allowed) with white space around it.
        if let Ok(ttl) = parse_ttl(Some(&bytes)) {
            prop_assert!(TTL_RANGE.contains(&ttl.as_secs()));
            let text = std::str::from_utf8(&bytes).unwrap().trim();
            prop_assert!(text.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(text.trim_start_matches('0'), ttl.as_secs().to_string());
        }
    }

    #[test]
    fn ttl_rejects_non_digit_text(
        prefix in "[0-9]{0,3}",
        junk in "[^0-9\\s]",
        suffix in "[0-9]{0,3}",
    ) {
        let text = format!("{prefix}{junk}{suffix}");
        prop_assert_eq!(parse_ttl(Some(text.as_bytes())), Err(TtlError::Invalid));
    }
}

#[test]
fn ttl_missing_header_error() {
    assert_eq!(parse_ttl(None), Err(TtlError::Missing));
}

// ---------------------------------------------------------------------
// TokenSigner

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn token_valid_until_ttl_ends(
        now in wall_time(),
        ttl in ttl_secs(),
        offset in 0u64..21_600,
        nanos in 0u32..1_000_000_000,
    ) {
        let signer = TokenSigner::from_key(KEY);
        let token = signer.issue(Duration::from_secs(ttl), now);
        prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // The expiry is the issue time truncated to whole seconds plus the
        // TTL, so the token is good from `now` up to that instant.
        let expiry = unix_secs(now) + ttl;
        let later = now + Duration::new(offset, nanos);
        prop_assert_eq!(
            signer.verify(token.as_bytes(), later),
            unix_secs(later) < expiry,
            "ttl {} checked {:?} after issue",
            ttl,
            Duration::new(offset, nanos)
        );
        prop_assert!(signer.verify(token.as_bytes(), now));
        prop_assert!(!signer.verify(token.as_bytes(), at(expiry, 0)));
    }

    #[test]
    fn whole_second_token_lasts_ttl(
        secs in 1_000_000_000u64..4_102_444_800,
        ttl in ttl_secs(),
        offset in 0u64..21_600,
        nanos in 0u32..1_000_000_000,
    ) {
        let signer = TokenSigner::from_key(KEY);
        let now = at(secs, 0);
        let token = signer.issue(Duration::from_secs(ttl), now);
        let later = now + Duration::new(offset, nanos);
        prop_assert_eq!(signer.verify(token.as_bytes(), later), offset < ttl);
    }

    #[test]
    fn token_from_other_key_rejected(now in wall_time(), ttl in ttl_secs()) {
        let token = TokenSigner::from_key(OTHER_KEY).issue(Duration::from_secs(ttl), now);
        prop_assert!(!TokenSigner::from_key(KEY).verify(token.as_bytes(), now));
    }

    #[test]
    fn token_single_byte_change_rejected(
        now in wall_time(),
        ttl in ttl_secs(),
        index in any::<proptest::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let signer = TokenSigner::from_key(KEY);
        let mut token = signer.issue(Duration::from_secs(ttl), now).into_bytes();
        let i = index.index(token.len());
        prop_assume!(token[i] != replacement);
        token[i] = replacement;
        prop_assert!(!signer.verify(&token, now));
    }

    #[test]
    fn token_length_change_rejected(
        now in wall_time(),
        ttl in ttl_secs(),
        cut in 1usize..55,
        extra in "[A-Za-z0-9_=-]{1,8}",
    ) {
        let signer = TokenSigner::from_key(KEY);
        let token = signer.issue(Duration::from_secs(ttl), now);
        prop_assert!(!signer.verify(&token.as_bytes()[..token.len() - cut.min(token.len())], now));
        let longer = format!("{token}{extra}");
        prop_assert!(!signer.verify(longer.as_bytes(), now));
        let padded = format!(" {token}");
        prop_assert!(!signer.verify(padded.as_bytes(), now));
    }

    #[test]
    fn token_arbitrary_bytes_rejected(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "[A-Za-z0-9_-]{55}".prop_map(String::into_bytes),
            // The version byte that real tokens start with ("AQ" in base64).
            "AQ[A-Za-z0-9_-]{53}".prop_map(String::into_bytes),
        ],
        now in wall_time(),
    ) {
        prop_assert!(!TokenSigner::from_key(KEY).verify(&bytes, now));
    }
}

#[test]
fn token_every_byte_checked() {
    // Tries every position and byte value for a few tokens, because base64
    // leaves two spare bits in the last character and those must count too.
    let signer = TokenSigner::from_key(KEY);
    for (secs, ttl) in [
        (1_000_000_000, 1),
        (1_800_000_000, 21_600),
        (4_000_000_000, 300),
    ] {
        let now = at(secs, 0);
        let token = signer.issue(Duration::from_secs(ttl), now).into_bytes();
        assert_eq!(token.len(), 55);
        for i in 0..token.len() {
            for b in 0..=255u8 {
                if b == token[i] {
                    continue;
                }
                let mut changed = token.clone();
                changed[i] = b;
                assert!(
                    !signer.verify(&changed, now),
                    "byte {i} changed to {b:#04x} still verifies"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------
// normalize_path

fn path_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[/a-z.%-]{0,40}",
        proptest::collection::vec(
            prop_oneof![Just("/"), Just("//"), Just("a"), Just(".."), Just("")],
            0..12
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn normalized_paths_are_canonical(path in path_like()) {
        let normal = normalize_path(&path);
        prop_assert!(normal.starts_with('/'));
        prop_assert!(!normal.contains("//"), "{:?}", normal);
        prop_assert!(normal == "/" || !normal.ends_with('/'), "{:?}", normal);
        prop_assert_eq!(normalize_path(&normal), normal.clone());
        // Only slashes are dropped, so the segments stay as they were.
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let kept: Vec<&str> = normal.split('/').filter(|s| !s.is_empty()).collect();
        prop_assert_eq!(segments, kept);
    }

    #[test]
    fn extra_slashes_keep_path(
        segments in proptest::collection::vec("[a-z0-9-]{1,8}", 0..6),
        slashes in proptest::collection::vec(1usize..4, 7),
        trailing in 0usize..3,
    ) {
        let plain = format!("/{}", segments.join("/"));
        let mut noisy = String::new();
        for (segment, n) in segments.iter().zip(&slashes) {
            noisy.push_str(&"/".repeat(*n));
            noisy.push_str(segment);
        }
        noisy.push_str(&"/".repeat(trailing));
        prop_assert_eq!(normalize_path(&noisy), plain);
    }
}

// ---------------------------------------------------------------------
// MfaCode and parse_code

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn mfa_code_six_digits_without_spaces(input in prop_oneof![
        any::<String>(),
        "[0-9 ]{0,10}",
        "\\s{0,2}[0-9]{3} ?[0-9]{3}\\s{0,2}",
        "[0-9\\s٣１]{4,8}",
    ]) {
        let without_spaces: String = input.chars().filter(|c| *c != ' ').collect();
        let expected = without_spaces.trim();
        match MfaCode::parse(&input) {
            Ok(code) => {
                prop_assert_eq!(code.expose(), expected);
                prop_assert!(expected.len() == 6 && expected.bytes().all(|b| b.is_ascii_digit()));
                let debug = format!("{code:?}");
                prop_assert!(!debug.bytes().any(|b| b.is_ascii_digit()), "{}", debug);
            }
            Err(MfaCodeError::Missing) => prop_assert!(expected.is_empty()),
            Err(MfaCodeError::NotSixDigits) => {
                let six_digits = expected.len() == 6 && expected.bytes().all(|b| b.is_ascii_digit());
                prop_assert!(!expected.is_empty());
                prop_assert!(!six_digits);
            }
        }
    }
}

const JSON_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/vnd.api+json",
];
const FORM_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "text/plain",
    "multipart/form-data; boundary=x",
];

fn with_content_type(value: Option<&[u8]>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers
}

/// Every message `parse_code` returns. None of them repeats the input.
const PARSE_CODE_MESSAGES: &[&str] = &[
    "body is not a JSON object; send {\"token\": \"123456\"}",
    "token must be a JSON string of 6 digits, such as \"012345\"",
    "body is not form data; send token=123456",
    "missing MFA code; send token=123456 or {\"token\": \"123456\"}",
    "the MFA code must be exactly 6 digits",
];

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(JSON_TYPES).prop_map(|t| Some(t.as_bytes().to_vec())),
        proptest::sample::select(FORM_TYPES).prop_map(|t| Some(t.as_bytes().to_vec())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ ]*\\{\"token\" ?: ?(\"[0-9 ]{0,8}\"|[0-9]{1,7}|null|true|\\[\\]|\\{\\})\\}"
            .prop_map(String::into_bytes),
        "(token|x|tok%65n)=[0-9+%2 ]{0,9}(&token=[0-9]{0,7})?".prop_map(String::into_bytes),
        any::<String>().prop_map(|s| format!("token={s}").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn parse_code_digits_or_fixed_message(
        content_type in content_type(),
        body in body(),
    ) {
        let headers = with_content_type(content_type.as_deref());
        match parse_code(&headers, &body) {
            Ok(code) => {
                let digits = code.expose();
                prop_assert!(digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()), "{:?}", digits);
            }
            Err(message) => prop_assert!(
                PARSE_CODE_MESSAGES.contains(&message.as_str()),
                "unexpected message {:?}",
                message
            ),
        }
    }

    #[test]
    fn parse_code_form_and_json_codes(
        code in "[0-9]{6}",
        json_type in proptest::sample::select(JSON_TYPES),
        form_type in proptest::sample::select(FORM_TYPES),
    ) {
        let form = format!("token={code}");
        let json = format!("{{\"token\":\"{code}\"}}");
        for (headers, body) in [
            (with_content_type(Some(form_type.as_bytes())), form.as_bytes()),
            (with_content_type(None), form.as_bytes()),
            (with_content_type(Some(json_type.as_bytes())), json.as_bytes()),
            (with_content_type(None), json.as_bytes()),
        ] {
            let parsed = parse_code(&headers, body);
            prop_assert_eq!(parsed.as_ref().map(|c| c.expose()), Ok(code.as_str()), "{:?}", String::from_utf8_lossy(body));
        }
        // Authenticator apps show "123 456", and both encodings accept that.
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        let form = format!("token={}", spaced.replace(' ', "+"));
        let json = format!("{{\"token\": \"{spaced}\"}}");
        prop_assert_eq!(
            parse_code(&with_content_type(Some(form_type.as_bytes())), form.as_bytes()).map(|c| c.expose().to_owned()),
            Ok(code.clone())
        );
        prop_assert_eq!(
            parse_code(&with_content_type(Some(json_type.as_bytes())), json.as_bytes()).map(|c| c.expose().to_owned()),
            Ok(code.clone())
        );
    }
}

// ---------------------------------------------------------------------
// The request router, with a session in the cache

const SESSION_KEY_ID: &str = "ASIAPROPERTYSESSION1";
const SESSION_SECRET: &str = "property-session-secret";
const ROLE: &str = "local-credentials";
const START: u64 = 1_800_000_000;
/// The listen address of the state's guard, which decides the `Host` values it accepts.
const LISTEN: &str = "127.0.0.1:45000";
/// The code that started the session. Submitting it again is rejected.
const FIRST_CODE: &str = "123456";
/// A code the fake issuer rejects as STS does a wrong code.
const WRONG_CODE: &str = "000000";

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
    ) -> BoxFuture<'a, Result<SessionCredentials, StsError>> {
        let result = if code.expose() == WRONG_CODE {
            Err(StsError::WrongCode)
        } else {
            Ok(SessionCredentials {
                access_key_id: AccessKeyId::new(SESSION_KEY_ID),
                secret_access_key: Secret::new(SESSION_SECRET),
                session_token: Secret::new("property-session-token"),
                expiration: self.clock.now() + Duration::from_secs(43_200),
            })
        };
        Box::pin(async move { result })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Builds a fresh server state whose cache contains a valid session, as
/// after a person entered a code.
async fn state_with_session(allow_imdsv1: bool) -> AppState {
    let clock = Arc::new(ManualClock::new(at(START, 0)));
    let profile = ProfileConfig {
        name: "dev".into(),
        mfa_serial: "arn:aws:iam::123456789012:mfa/dev".into(),
        region: "eu-central-1".into(),
        session_duration: Duration::from_secs(43_200),
        account_id: Some("123456789012".into()),
        file_keys: Some(LongTermKeys {
            access_key_id: AccessKeyId::new("AKIAPROPERTYTEST0001"),
            secret_access_key: Secret::new("long-term-secret"),
        }),
    };
    let cache = Arc::new(SessionCache::new(
        profile,
        clock.clone(),
        Arc::new(FakeIssuer {
            clock: clock.clone(),
        }),
        Arc::new(MemoryKeyStore::default()),
    ));
    cache
        .submit_code(MfaCode::parse(FIRST_CODE).unwrap())
        .await
        .expect("the fake issuer accepts the first code");
    AppState {
        cache,
        tokens: TokenSigner::from_key(KEY),
        role_name: ROLE.into(),
        allow_imdsv1,
        clock,
        started_at: at(START, 0),
        guard: Guard::new(&[LISTEN.parse().unwrap()], &[]),
        credentials_document: Default::default(),
    }
}

/// The token header of a generated request.
#[derive(Debug, Clone)]
enum TokenChoice {
    Absent,
    Valid,
    Expired,
    OtherKey,
    Bytes(Vec<u8>),
}

impl TokenChoice {
    fn value(&self) -> Option<Vec<u8>> {
        let now = at(START, 0);
        match self {
            TokenChoice::Absent => None,
            TokenChoice::Valid => Some(
                TokenSigner::from_key(KEY)
                    .issue(Duration::from_secs(60), now)
                    .into_bytes(),
            ),
            TokenChoice::Expired => Some(
                TokenSigner::from_key(KEY)
                    .issue(Duration::from_secs(60), now - Duration::from_secs(61))
                    .into_bytes(),
            ),
            TokenChoice::OtherKey => Some(
                TokenSigner::from_key(OTHER_KEY)
                    .issue(Duration::from_secs(60), now)
                    .into_bytes(),
            ),
            TokenChoice::Bytes(bytes) => Some(bytes.clone()),
        }
    }
}

/// The body of a generated request, or how reading it failed.
#[derive(Debug, Clone)]
enum BodyChoice {
    Complete(Vec<u8>),
    TooLarge,
    Failed,
    TimedOut,
}

#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    /// The `Host` header; `None` sends none.
    host: Option<Vec<u8>>,
    token: TokenChoice,
    /// Extra headers. Names and values that `http` rejects are skipped.
    headers: Vec<(String, Vec<u8>)>,
    body: BodyChoice,
}

impl Request {
    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(host) = &self.host
            && let Ok(value) = HeaderValue::from_bytes(host)
        {
            map.insert(header::HOST, value);
        }
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        if let Some(token) = self.token.value()
            && let Ok(value) = HeaderValue::from_bytes(&token)
        {
            map.insert(TOKEN_HEADER, value);
        }
        map
    }

    fn has_valid_token(&self) -> bool {
        matches!(self.token, TokenChoice::Valid)
    }

    /// Returns whether the guard should let the request in, which needs an
    /// allowed `Host` and no header that only browsers send.
    fn passes_guard(&self) -> bool {
        let headers = self.header_map();
        let browser = headers.contains_key(header::ORIGIN)
            || headers
                .keys()
                .any(|name| name.as_str().starts_with("sec-fetch-"));
        let host_ok = headers.get(header::HOST).is_some_and(|host| {
            let host = host.as_bytes().trim_ascii();
            ALLOWED_HOSTS
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(host))
        });
        host_ok && !browser
    }

    fn body(&self) -> BoundedBody {
        match &self.body {
            BodyChoice::Complete(bytes) => BoundedBody::Complete(Bytes::from(bytes.clone())),
            BodyChoice::TooLarge => BoundedBody::TooLarge,
            BodyChoice::Failed => BoundedBody::Failed,
            BodyChoice::TimedOut => BoundedBody::TimedOut,
        }
    }
}

/// `Host` values that the guard of a server on [`LISTEN`] accepts.
const ALLOWED_HOSTS: &[&str] = &[
    "127.0.0.1:45000",
    "127.0.0.1",
    "localhost:45000",
    "LOCALHOST",
    "169.254.169.254",
    "169.254.169.254:80",
    "[::1]:45000",
];

const KNOWN_PATHS: &[&str] = &[
    "/",
    "/latest",
    "/latest/api/token",
    "/latest/meta-data/",
    "/latest/meta-data/iam/info",
    "/latest/meta-data/iam/security-credentials/",
    "/latest/meta-data/iam/security-credentials/local-credentials",
    "/latest/meta-data/iam/security-credentials-extended/local-credentials",
    "/latest/meta-data/placement/region",
    "/latest/meta-data/instance-id",
    "/latest/dynamic/instance-identity/document",
    "/manage",
    "/manage/session",
    "/manage/session/",
];

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
        ]),
        1 => proptest::sample::select(vec![
            Method::HEAD,
            Method::OPTIONS,
            Method::PATCH,
            Method::TRACE,
            Method::CONNECT,
        ]),
        1 => "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn request_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KNOWN_PATHS).prop_map(str::to_owned),
        // A known path with doubled slashes, as the Java SDK sends.
        2 => proptest::sample::select(KNOWN_PATHS).prop_map(|p| p.replace('/', "//")),
        // A known path with something appended or a character changed.
        2 => (proptest::sample::select(KNOWN_PATHS), "[a-zA-Z0-9./%?#-]{0,12}")
            .prop_map(|(p, tail)| format!("{p}{tail}")),
        1 => (proptest::sample::select(KNOWN_PATHS), any::<proptest::sample::Index>(), any::<char>())
            .prop_map(|(p, i, c)| {
                let mut chars: Vec<char> = p.chars().collect();
                let i = i.index(chars.len());
                chars[i] = c;
                chars.into_iter().collect()
            }),
        1 => path_like(),
    ]
}

fn host() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        6 => proptest::sample::select(ALLOWED_HOSTS).prop_map(|h| Some(h.as_bytes().to_vec())),
        1 => Just(None),
        1 => proptest::sample::select(vec![
            "attacker.example",
            "127.0.0.1.attacker.example:45000",
            "127.0.0.1:45001",
            "localhost:8080",
            "127.0.0.2",
            "[::1]:x",
            "",
        ])
        .prop_map(|h| Some(h.as_bytes().to_vec())),
        1 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Some),
    ]
}

fn token_choice() -> impl Strategy<Value = TokenChoice> {
    prop_oneof![
        3 => Just(TokenChoice::Absent),
        3 => Just(TokenChoice::Valid),
        1 => Just(TokenChoice::Expired),
        1 => Just(TokenChoice::OtherKey),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(TokenChoice::Bytes),
    ]
}

fn extra_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        3 => Just(TTL_HEADER.to_owned()),
        3 => Just("content-type".to_owned()),
        1 => Just("x-forwarded-for".to_owned()),
        1 => Just("origin".to_owned()),
        1 => Just("sec-fetch-mode".to_owned()),
        2 => "[a-z-]{1,12}",
    ];
    let value = prop_oneof![
        "[0-9]{1,6}".prop_map(String::into_bytes),
        Just(b"application/json".to_vec()),
        Just(b"null".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec((name, value), 0..4)
}

fn request_body() -> impl Strategy<Value = BodyChoice> {
    prop_oneof![
        3 => Just(BodyChoice::Complete(Vec::new())),
        2 => "token=[0-9]{6}".prop_map(|b| BodyChoice::Complete(b.into_bytes())),
        1 => Just(BodyChoice::Complete(format!("token={FIRST_CODE}").into_bytes())),
        1 => Just(BodyChoice::Complete(format!("{{\"token\":\"{WRONG_CODE}\"}}").into_bytes())),
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(BodyChoice::Complete),
        1 => proptest::sample::select(vec![
            BodyChoice::TooLarge,
            BodyChoice::Failed,
            BodyChoice::TimedOut,
        ]),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        method(),
        request_path(),
        host(),
        token_choice(),
        extra_headers(),
        request_body(),
    )
        .prop_map(|(method, path, host, token, headers, body)| Request {
            method,
            path,
            host,
            token,
            headers,
            body,
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn router_no_5xx_or_tokenless_credentials(
        requests in proptest::collection::vec(request(), 1..6),
        allow_imdsv1 in proptest::bool::weighted(0.1),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let state = state_with_session(allow_imdsv1).await;
            for request in &requests {
                let response = server::handle(
                    &state,
                    &request.method,
                    &request.path,
                    &request.header_map(),
                    request.body(),
                )
                .await;
                let status = response.status();
                let body = String::from_utf8_lossy(response.body());
                prop_assert!(
                    !status.is_server_error(),
                    "{} for {:?}: {}",
                    status,
                    request,
                    body
                );
                if !request.passes_guard() {
                    prop_assert!(
                        status.is_client_error(),
                        "{} past the guard for {:?}: {}",
                        status,
                        request,
                        body
                    );
                }
                if !request.has_valid_token() && !allow_imdsv1 {
                    prop_assert!(
                        !body.contains("AccessKeyId"),
                        "credentials without a token for {:?}",
                        request
                    );
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn credentials_path_any_slashes(
        slashes in proptest::collection::vec(1usize..4, 7),
        trailing in 0usize..3,
        host in proptest::sample::select(ALLOWED_HOSTS),
    ) {
        let segments = ["latest", "meta-data", "iam", "security-credentials", ROLE];
        let mut path = String::new();
        for (segment, n) in segments.iter().zip(&slashes) {
            path.push_str(&"/".repeat(*n));
            path.push_str(segment);
        }
        path.push_str(&"/".repeat(trailing));
        let rt = runtime();
        let request = Request {
            method: Method::GET,
            path,
            host: Some(host.as_bytes().to_vec()),
            token: TokenChoice::Valid,
            headers: Vec::new(),
            body: BodyChoice::Complete(Vec::new()),
        };
        let response = rt.block_on(async {
            let state = state_with_session(false).await;
            server::handle(&state, &request.method, &request.path, &request.header_map(), request.body()).await
        });
        prop_assert_eq!(response.status().as_u16(), 200, "{:?}", request);
        prop_assert!(String::from_utf8_lossy(response.body()).contains(SESSION_KEY_ID));
    }
}
