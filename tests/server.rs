//! The server over real HTTP on an ephemeral port, with a fake STS for the
//! faults that a real STS implementation cannot produce.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_mock_metadata::keychain::{KeyStore, KeychainError};
use aws_mock_metadata::secret::{AccessKeyId, LongTermKeys, Secret};
use aws_mock_metadata::server::{self, BindError};
use aws_mock_metadata::session::SessionEvent;
use common::{LONG_TERM_KEY_ID, MFA_SERIAL, Options, StsReply, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/local-credentials";

async fn started() -> TestServer {
    TestServer::start(Options::default()).await
}

/// Sends raw bytes and returns the whole response as text.
async fn raw_request(server: &TestServer, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn is_utc_seconds(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 20
        && value.ends_with('Z')
        && bytes[10] == b'T'
        && time::PrimitiveDateTime::parse(
            &value[..19],
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .is_ok()
}

#[tokio::test]
async fn token_ttl_outside_range_or_missing_is_rejected() {
    let server = started().await;
    for ttl in [Some("0"), Some("21601"), Some("abc"), Some("-1"), None] {
        let mut request = server.http.put(server.url("/latest/api/token"));
        if let Some(ttl) = ttl {
            request = request.header("x-aws-ec2-metadata-token-ttl-seconds", ttl);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "TTL {ttl:?}");
    }
}

#[tokio::test]
async fn token_ttl_is_echoed_at_both_bounds() {
    let server = started().await;
    for ttl in ["1", "21600"] {
        let response = server
            .http
            .put(server.url("/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", ttl)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-aws-ec2-metadata-token-ttl-seconds"],
            ttl
        );
        let token = response.text().await.unwrap();
        assert!(
            !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
            "{token:?}"
        );
    }
}

#[tokio::test]
async fn token_put_through_a_proxy_is_forbidden() {
    let server = started().await;
    let response = server
        .http
        .put(server.url("/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(!response.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn token_put_works_without_content_length_and_with_expect_continue() {
    let server = started().await;
    let plain = raw_request(
        &server,
        b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    let expect = raw_request(
        &server,
        b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(expect.contains("HTTP/1.1 200"), "{expect}");
}

#[tokio::test]
async fn metadata_requires_a_valid_token_by_default() {
    let server = started().await;
    let without = server
        .http
        .get(server.url("/latest/meta-data/"))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401);
    let bogus = server
        .http
        .get(server.url("/latest/meta-data/"))
        .header("x-aws-ec2-metadata-token", "bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 401);
    assert_eq!(
        server.get_with_token("/latest/meta-data/").await.status(),
        200
    );
}

#[tokio::test]
async fn imdsv1_opt_in_serves_tokenless_requests_but_still_rejects_bad_tokens() {
    let server = TestServer::start(Options {
        allow_imdsv1: true,
        ..Options::default()
    })
    .await;
    let without = server
        .http
        .get(server.url("/latest/meta-data/iam/security-credentials/"))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 200);
    let bogus = server
        .http
        .get(server.url("/latest/meta-data/"))
        .header("x-aws-ec2-metadata-token", "bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 401);
}

#[tokio::test]
async fn role_list_is_the_bare_name_with_and_without_slash() {
    let server = started().await;
    for path in [
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam/security-credentials",
    ] {
        let response = server.get_with_token(path).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "local-credentials");
    }
}

#[tokio::test]
async fn credentials_without_session_fail_at_once_and_raise_one_request() {
    let server = started().await;
    let mut events = server.cache.subscribe();
    let token = server.token().await;
    let requests = (0..50).map(|_| {
        server
            .http
            .get(server.url(CREDENTIALS_PATH))
            .header("x-aws-ec2-metadata-token", &token)
            .send()
    });
    for response in futures_util::future::join_all(requests).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 404);
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("AccessKeyId") && !body.contains("Token\""),
            "{body}"
        );
        assert!(body.contains("MFA"), "{body}");
    }
    let raised: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(e, SessionEvent::MfaNeeded(_)))
        .collect();
    assert_eq!(raised.len(), 1);
    assert!(
        server.sts.calls().is_empty(),
        "no STS call before a code arrives"
    );
}

#[tokio::test]
async fn management_api_round_trip() {
    let server = started().await;
    let get = server
        .http
        .get(server.url("/manage/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
    assert!(get.json::<Value>().await.unwrap()["message"].is_string());

    let short = server.post_code("12345").await;
    assert_eq!(short.status(), 400);
    assert!(
        server.sts.calls().is_empty(),
        "a malformed code never reaches STS"
    );

    let posted = server
        .http
        .post(server.url("/manage/session"))
        .json(&serde_json::json!({ "token": "123456" }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let body: Value = posted.json().await.unwrap();
    let session = &body["session"];
    assert_eq!(session["accessKey"], "ASIAFAKESTSSESSION01");
    assert_eq!(session["secretKey"], "fake-session-secret-key");
    assert_eq!(session["sessionToken"], "fake-session-token-value");
    assert!(
        is_utc_seconds(session["expiration"].as_str().unwrap()),
        "{session}"
    );

    let get = server
        .http
        .get(server.url("/manage/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.json::<Value>().await.unwrap(), body);

    for _ in 0..2 {
        let deleted = server
            .http
            .delete(server.url("/manage/session"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 200);
    }
    let get = server
        .http
        .get(server.url("/manage/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
}

#[tokio::test]
async fn sts_receives_serial_code_duration_and_long_term_key() {
    let server = started().await;
    assert_eq!(server.post_code("654321").await.status(), 200);
    let calls = server.sts.calls();
    assert_eq!(calls.len(), 1);
    let params = &calls[0].params;
    assert_eq!(params["Action"], "GetSessionToken");
    assert_eq!(params["SerialNumber"], MFA_SERIAL);
    assert_eq!(params["TokenCode"], "654321");
    assert_eq!(params["DurationSeconds"], "43200");
    assert!(
        calls[0].authorization.contains(LONG_TERM_KEY_ID),
        "signed with the credentials-file key"
    );
}

#[tokio::test]
async fn keychain_keys_are_preferred_and_a_locked_keychain_falls_back_to_the_file() {
    let server = started().await;
    let keychain_keys = LongTermKeys {
        access_key_id: AccessKeyId::new("AKIAFROMTHEKEYCHAIN1"),
        secret_access_key: Secret::new("keychain-secret"),
    };
    server.keys.store("dev", &keychain_keys).unwrap();
    assert_eq!(server.post_code("111111").await.status(), 200);
    server.keys.set_failure(Some(KeychainError::Unavailable(
        "collection is locked".into(),
    )));
    assert_eq!(server.post_code("222222").await.status(), 200);
    let calls = server.sts.calls();
    assert!(calls[0].authorization.contains("AKIAFROMTHEKEYCHAIN1"));
    assert!(calls[1].authorization.contains(LONG_TERM_KEY_ID));
}

#[tokio::test]
async fn credentials_document_has_the_fields_sdks_parse() {
    let server = started().await;
    assert_eq!(server.post_code("123456").await.status(), 200);
    for path in [
        CREDENTIALS_PATH.to_owned(),
        format!("{CREDENTIALS_PATH}/"),
        "/latest/meta-data/iam/security-credentials-extended/local-credentials".to_owned(),
        "/latest//meta-data//iam/security-credentials/local-credentials".to_owned(),
    ] {
        let response = server.get_with_token(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["Code"], "Success");
        assert_eq!(doc["Type"], "AWS-HMAC");
        assert_eq!(doc["AccessKeyId"], "ASIAFAKESTSSESSION01");
        assert_eq!(doc["SecretAccessKey"], "fake-session-secret-key");
        assert_eq!(doc["Token"], "fake-session-token-value");
        assert_eq!(doc["AccountId"], "123456789012");
        assert!(is_utc_seconds(doc["Expiration"].as_str().unwrap()), "{doc}");
        assert!(
            is_utc_seconds(doc["LastUpdated"].as_str().unwrap()),
            "{doc}"
        );
    }
    let unknown = server
        .get_with_token("/latest/meta-data/iam/security-credentials/other-role")
        .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn other_metadata_paths() {
    let server = started().await;
    let text = |path: &'static str| {
        let server = &server;
        async move {
            let response = server.get_with_token(path).await;
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(
        text("/latest/meta-data/placement/region").await,
        (200, "eu-central-1".into())
    );
    assert_eq!(
        text("/latest/meta-data/placement/availability-zone/").await,
        (200, "eu-central-1a".into())
    );
    let (status, id) = text("/latest/meta-data/instance-id").await;
    assert_eq!(status, 200);
    assert!(id.starts_with("i-"), "{id}");
    assert!(!id.ends_with('\n'), "{id:?}");
    let (status, doc) = text("/latest/dynamic/instance-identity/document").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["region"], "eu-central-1");
    assert_eq!(doc["accountId"], "123456789012");
    assert!(
        doc["pendingTime"].is_string()
            && doc["instanceId"].is_string()
            && doc["availabilityZone"].is_string()
    );
    let (status, info) = text("/latest/meta-data/iam/info").await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Code"], "Success");
    assert!(
        info["InstanceProfileArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::123456789012:instance-profile/")
    );
    assert_eq!(text("/latest/meta-data/nothing-here").await.0, 404);
    assert_eq!(text("/latest/user-data").await.0, 404);
}

#[tokio::test]
async fn wrong_code_is_401_and_keeps_the_valid_session() {
    let server = started().await;
    assert_eq!(server.post_code("111111").await.status(), 200);
    server.sts.push(StsReply::wrong_code());
    let rejected = server.post_code("222222").await;
    assert_eq!(rejected.status(), 401);
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["error"], "wrong_code");
    assert!(body["message"].as_str().unwrap().contains("next code"));
    assert_eq!(
        server
            .http
            .get(server.url("/manage/session"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.get_with_token(CREDENTIALS_PATH).await.status(), 200);
}

#[tokio::test]
async fn code_accepted_a_moment_ago_is_not_sent_again() {
    let server = started().await;
    assert_eq!(server.post_code("123456").await.status(), 200);
    let again = server.post_code("123456").await;
    assert_eq!(again.status(), 401);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "code_reused");
    assert_eq!(server.sts.calls().len(), 1);
}

/// Each STS fault maps to its own status and message, and leaves the
/// server serving.
#[tokio::test]
async fn sts_faults_are_reported_for_what_they_are() {
    let cases = [
        (
            StsReply::Error {
                status: 400,
                code: "Throttling",
                message: "Rate exceeded",
            },
            503,
            "sts_throttled",
            "wait",
        ),
        (
            StsReply::Error {
                status: 403,
                code: "SignatureDoesNotMatch",
                message: "Signature expired: 20261204T100000Z is now earlier than 20261204T101500Z",
            },
            502,
            "clock_skew",
            "clock",
        ),
        (
            StsReply::Error {
                status: 403,
                code: "InvalidClientTokenId",
                message: "The security token included in the request is invalid.",
            },
            502,
            "sts_error",
            "keys store --profile dev",
        ),
        (
            StsReply::Error {
                status: 403,
                code: "AccessDenied",
                message: "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA serial number is valid and associated with this user.",
            },
            502,
            "sts_error",
            "mfa_serial",
        ),
        (
            StsReply::Error {
                status: 500,
                code: "InternalFailure",
                message: "internal error",
            },
            502,
            "sts_error",
            "InternalFailure",
        ),
    ];
    // The clock moves a minute per case, so the MFA rate limit never applies.
    let clock = Arc::new(aws_mock_metadata::clock::ManualClock::new(
        std::time::SystemTime::now(),
    ));
    let server = TestServer::start(Options {
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    assert_eq!(server.post_code("100000").await.status(), 200);
    for (i, (reply, status, code, hint)) in cases.into_iter().enumerate() {
        clock.advance(aws_mock_metadata::session::ATTEMPT_WINDOW);
        server.sts.push(reply);
        let response = server.post_code(&format!("{:06}", 200_000 + i)).await;
        assert_eq!(response.status(), status, "{code}");
        if code == "sts_throttled" {
            assert!(response.headers().contains_key("retry-after"));
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(hint), "{message}");
        assert!(
            !message.contains(LONG_TERM_KEY_ID),
            "key IDs are masked: {message}"
        );
        assert_eq!(
            server.get_with_token(CREDENTIALS_PATH).await.status(),
            200,
            "session kept after {code}"
        );
    }
}

#[tokio::test]
async fn sts_time_out_is_reported_and_serving_continues() {
    let server = TestServer::start(Options {
        sts_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    server.sts.push(StsReply::Hang(Duration::from_secs(5)));
    let response = server.post_code("123456").await;
    assert_eq!(response.status(), 504);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("did not answer within 1 s")
    );
    assert_eq!(
        server
            .get_with_token("/latest/meta-data/iam/security-credentials/")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unreachable_sts_is_reported() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let profile = common::profile(Duration::from_secs(3600));
    let client = aws_mock_metadata::sts::StsClient::with_endpoint(
        &profile,
        &dead_url,
        Duration::from_secs(2),
    )
    .await;
    let cache = aws_mock_metadata::session::SessionCache::new(
        profile,
        Arc::new(aws_mock_metadata::clock::SystemClock),
        Arc::new(client),
        Arc::new(aws_mock_metadata::keychain::MemoryKeyStore::default()),
    );
    let err = cache
        .submit_code(aws_mock_metadata::secret::MfaCode::parse("123456").unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot reach STS"), "{err}");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_rejected_without_losing_the_session() {
    let server = started().await;
    assert_eq!(server.post_code("123456").await.status(), 200);
    let big = server
        .http
        .post(server.url("/manage/session"))
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let garbage = server
        .http
        .post(server.url("/manage/session"))
        .header("content-type", "application/json")
        .body("{\"token\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(
        server
            .http
            .get(server.url("/manage/session"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn rust_sdk_imds_provider_fetches_the_session() {
    use aws_credential_types::provider::ProvideCredentials;
    let server = started().await;
    assert_eq!(server.post_code("123456").await.status(), 200);
    let client = aws_config::imds::Client::builder()
        .endpoint(format!("{}/", server.base))
        .unwrap()
        .build();
    let provider = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build();
    let credentials = provider.provide_credentials().await.unwrap();
    assert_eq!(credentials.access_key_id(), "ASIAFAKESTSSESSION01");
    assert_eq!(credentials.secret_access_key(), "fake-session-secret-key");
    assert_eq!(
        credentials.session_token(),
        Some("fake-session-token-value")
    );
    assert!(credentials.expiry().is_some());
}

#[tokio::test]
async fn rust_sdk_imds_provider_fails_fast_without_session() {
    use aws_credential_types::provider::ProvideCredentials;
    let server = started().await;
    let client = aws_config::imds::Client::builder()
        .endpoint(format!("{}/", server.base))
        .unwrap()
        .build();
    let provider = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build();
    assert!(provider.provide_credentials().await.is_err());
    assert!(
        server.cache.status().pending.is_some(),
        "the failed fetch raised an MFA request"
    );
}

#[tokio::test]
async fn tokens_stay_valid_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("imds-token-key");
    let signer = || aws_mock_metadata::server::token::TokenSigner::load_or_create(&key).unwrap();
    let first = TestServer::start(Options {
        tokens: Some(signer()),
        ..Options::default()
    })
    .await;
    let token = first.token().await;
    first.stop().await;
    let second = TestServer::start(Options {
        tokens: Some(signer()),
        ..Options::default()
    })
    .await;
    let response = second
        .http
        .get(second.url("/latest/meta-data/"))
        .header("x-aws-ec2-metadata-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn stopping_releases_the_port_and_a_taken_port_is_named() {
    let server = started().await;
    let addr = server.addr;
    let err = server::bind(&[addr]).await.unwrap_err();
    assert!(matches!(err, BindError::InUse { .. }));
    assert!(
        err.to_string().contains(&addr.to_string()) && err.to_string().contains("already in use")
    );
    server.stop().await;
    let rebound = server::bind(&[addr]).await.unwrap();
    drop(rebound);
}

#[tokio::test]
async fn unknown_manage_paths_and_methods() {
    let server = started().await;
    assert_eq!(
        server
            .http
            .get(server.url("/manage/other"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        server
            .http
            .put(server.url("/manage/session"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_eq!(
        server
            .http
            .post(server.url("/latest/meta-data/"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
}

#[tokio::test]
async fn repeated_codes_are_rate_limited_with_retry_after() {
    let server = started().await;
    for i in 0..aws_mock_metadata::session::MAX_ATTEMPTS {
        server.sts.push(StsReply::wrong_code());
        assert_eq!(
            server
                .post_code(&format!("{:06}", 300_000 + i))
                .await
                .status(),
            401
        );
    }
    let limited = server.post_code("399999").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"],
        "rate_limited"
    );
    assert_eq!(
        server.sts.calls().len(),
        aws_mock_metadata::session::MAX_ATTEMPTS
    );
}

#[tokio::test]
async fn foreign_host_headers_are_rejected_before_the_session() {
    let server = started().await;
    let mut events = server.cache.subscribe();
    let token = server.token().await;
    for host in [
        "attacker.example",
        format!("attacker.example:{}", server.addr.port()).as_str(),
        "127.0.0.1:1",
    ] {
        let request = format!(
            "GET {CREDENTIALS_PATH} HTTP/1.1\r\nHost: {host}\r\nX-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
        );
        let response = raw_request(&server, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 403"), "{host}: {response}");
    }
    let post = raw_request(
        &server,
        b"POST /manage/session HTTP/1.1\r\nHost: attacker.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\nConnection: close\r\n\r\ntoken=123456",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 403"), "{post}");
    assert!(
        events.try_recv().is_err(),
        "rejected requests never reach the session"
    );
    assert!(server.sts.calls().is_empty());
}

#[tokio::test]
async fn browser_requests_are_rejected_on_every_endpoint() {
    let server = started().await;
    assert_eq!(server.post_code("123456").await.status(), 200);
    let token = server.token().await;
    for (name, value) in [
        ("origin", "https://attacker.example"),
        ("sec-fetch-mode", "no-cors"),
        ("sec-fetch-site", "cross-site"),
    ] {
        for (method, path) in [
            (reqwest::Method::GET, CREDENTIALS_PATH),
            (reqwest::Method::PUT, "/latest/api/token"),
            (reqwest::Method::GET, "/manage/session"),
            (reqwest::Method::DELETE, "/manage/session"),
        ] {
            let response = server
                .http
                .request(method.clone(), server.url(path))
                .header("x-aws-ec2-metadata-token", &token)
                .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{method} {path} with {name}");
            let body = response.text().await.unwrap();
            assert!(
                !body.contains("AccessKeyId") && !body.contains("secretKey"),
                "{body}"
            );
        }
    }
    assert_eq!(
        server
            .http
            .get(server.url("/manage/session"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "session kept"
    );
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    let server = started().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    // The server closes the connection once its header time-out passes.
    let read = tokio::time::timeout(
        aws_mock_metadata::server::READ_TIMEOUT + Duration::from_secs(5),
        stream.read_to_end(&mut response),
    )
    .await;
    assert!(
        read.is_ok(),
        "connection still open after the header time-out"
    );
}

#[tokio::test]
async fn slow_second_request_headers_cut_off() {
    let server = started().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 401");
    // The same connection starts a second request and stalls in its headers.
    stream
        .write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        aws_mock_metadata::server::READ_TIMEOUT + Duration::from_secs(5),
        stream.read_to_end(&mut rest),
    )
    .await;
    assert!(
        read.is_ok(),
        "connection still open after the header time-out"
    );
}

#[tokio::test]
async fn slow_request_outlives_header_timeout() {
    let wait = aws_mock_metadata::server::READ_TIMEOUT + Duration::from_secs(3);
    let server = TestServer::start(Options {
        sts_timeout: wait + Duration::from_secs(5),
        ..Options::default()
    })
    .await;
    server.sts.push(StsReply::Hang(wait));
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /manage/session HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\n\
              token=123456",
        )
        .await
        .unwrap();
    // The fake STS returns 500 after `wait`, which the server reports as 502.
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 502");
}

#[tokio::test]
async fn absent_keychain_without_file_keys_says_how_to_add_keys() {
    let server = TestServer::start(Options {
        file_keys: false,
        ..Options::default()
    })
    .await;
    server.keys.set_failure(Some(KeychainError::Unavailable(
        "no keychain service is reachable".into(),
    )));
    let response = server.post_code("123456").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "no_long_term_keys");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("keys store --profile dev"), "{message}");
    assert!(
        message.contains("no keychain service is reachable"),
        "{message}"
    );
    assert!(server.sts.calls().is_empty());

    // Storing keys while the server runs is enough; no restart is needed.
    server.keys.set_failure(None);
    let keys = LongTermKeys {
        access_key_id: AccessKeyId::new("AKIASTOREDLATER00001"),
        secret_access_key: Secret::new("s"),
    };
    server.keys.store("dev", &keys).unwrap();
    assert_eq!(server.post_code("234567").await.status(), 200);
}

#[tokio::test]
async fn locked_keychain_without_file_keys_is_reported() {
    let server = TestServer::start(Options {
        file_keys: false,
        ..Options::default()
    })
    .await;
    server.keys.set_failure(Some(KeychainError::Unavailable(
        "locked or access denied: collection is locked".into(),
    )));
    let response = server.post_code("123456").await;
    assert_eq!(response.status(), 503);
    let message = response.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("locked"), "{message}");
}

#[tokio::test]
async fn wall_clock_jump_past_expiry_stops_serving_the_session() {
    let clock = Arc::new(aws_mock_metadata::clock::ManualClock::new(
        std::time::SystemTime::now(),
    ));
    let server = TestServer::start(Options {
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    assert_eq!(server.post_code("123456").await.status(), 200);
    assert_eq!(server.get_with_token(CREDENTIALS_PATH).await.status(), 200);

    // A laptop that sleeps through the night wakes past the 12-hour expiry.
    clock.advance(Duration::from_secs(13 * 3600));
    let response = server.get_with_token(CREDENTIALS_PATH).await;
    assert_eq!(response.status(), 404);
    assert!(!response.text().await.unwrap().contains("AccessKeyId"));
    assert_eq!(
        server
            .http
            .get(server.url("/manage/session"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(
        server.cache.status().pending.is_some(),
        "the stale session raised a new MFA request"
    );
}

#[tokio::test]
async fn session_api_rejects_forwarded_requests() {
    let server = started().await;
    assert_eq!(server.post_code("123456").await.status(), 200);
    let forwarded = server
        .http
        .get(server.url("/manage/session"))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 403);
    assert!(!forwarded.text().await.unwrap().contains("secretKey"));
}
