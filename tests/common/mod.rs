//! Shared set-up for the integration tests: a fault-injecting fake STS and
//! a server on port 0 wired to it.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_mock_metadata::clock::{Clock, SystemClock};
use aws_mock_metadata::config::ProfileConfig;
use aws_mock_metadata::keychain::MemoryKeyStore;
use aws_mock_metadata::secret::{AccessKeyId, LongTermKeys, Secret};
use aws_mock_metadata::server::{self, AppState, guard::Guard, token::TokenSigner};
use aws_mock_metadata::session::SessionCache;
use aws_mock_metadata::sts::StsClient;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::{Response, StatusCode};

/// What the fake STS does with the next GetSessionToken call.
#[derive(Clone, Debug)]
pub enum StsReply {
    /// Credentials that expire this long after now.
    Success { lifetime: Duration },
    /// An STS error document with this status, code and message.
    Error {
        status: u16,
        code: &'static str,
        message: &'static str,
    },
    /// No response for this long.
    Hang(Duration),
}

impl StsReply {
    pub fn wrong_code() -> Self {
        StsReply::Error {
            status: 403,
            code: "AccessDenied",
            message: "MultiFactorAuthentication failed with invalid MFA one time pass code. ",
        }
    }
}

/// One GetSessionToken call as the fake STS received it.
#[derive(Clone, Debug)]
pub struct StsCall {
    pub params: HashMap<String, String>,
    pub authorization: String,
}

/// A local stand-in for STS that responds from a script, for the faults a
/// real STS implementation cannot be made to produce.
pub struct FakeSts {
    pub url: String,
    script: Arc<Mutex<VecDeque<StsReply>>>,
    calls: Arc<Mutex<Vec<StsCall>>>,
    shutdown: CancellationToken,
}

impl FakeSts {
    pub async fn start() -> Self {
        let script: Arc<Mutex<VecDeque<StsReply>>> = Arc::default();
        let calls: Arc<Mutex<Vec<StsCall>>> = Arc::default();
        let (s, c) = (Arc::clone(&script), Arc::clone(&calls));
        let route = warp::post()
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::form::<HashMap<String, String>>())
            .then(
                move |auth: Option<String>, params: HashMap<String, String>| {
                    let reply = s.lock().unwrap().pop_front().unwrap_or(StsReply::Success {
                        lifetime: Duration::from_secs(43_200),
                    });
                    c.lock().unwrap().push(StsCall {
                        params,
                        authorization: auth.unwrap_or_default(),
                    });
                    async move { respond(reply).await }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(
            warp::serve(route)
                .incoming(listener)
                .graceful(async move { stop.cancelled().await })
                .run(),
        );
        Self {
            url,
            script,
            calls,
            shutdown,
        }
    }

    pub fn push(&self, reply: StsReply) {
        self.script.lock().unwrap().push_back(reply);
    }

    pub fn calls(&self) -> Vec<StsCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn respond(reply: StsReply) -> Response<String> {
    match reply {
        StsReply::Success { lifetime } => {
            // STS (and moto) send fractions of a second; the server must drop them.
            let expiration = time::OffsetDateTime::from(SystemTime::now() + lifetime)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let body = format!(
                r#"<GetSessionTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetSessionTokenResult>
    <Credentials>
      <AccessKeyId>ASIAFAKESTSSESSION01</AccessKeyId>
      <SecretAccessKey>fake-session-secret-key</SecretAccessKey>
      <SessionToken>fake-session-token-value</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  </GetSessionTokenResult>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</GetSessionTokenResponse>"#
            );
            Response::builder()
                .status(200)
                .header("content-type", "text/xml")
                .body(body)
                .unwrap()
        }
        StsReply::Error {
            status,
            code,
            message,
        } => {
            let kind = if status >= 500 { "Receiver" } else { "Sender" };
            let body = format!(
                r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>"#
            );
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "text/xml")
                .body(body)
                .unwrap()
        }
        StsReply::Hang(duration) => {
            tokio::time::sleep(duration).await;
            Response::builder().status(500).body(String::new()).unwrap()
        }
    }
}

pub const MFA_SERIAL: &str = "arn:aws:iam::123456789012:mfa/dev";
pub const LONG_TERM_KEY_ID: &str = "AKIAINTEGRATIONTEST1";

pub fn profile(duration: Duration) -> ProfileConfig {
    ProfileConfig {
        name: "dev".into(),
        mfa_serial: MFA_SERIAL.into(),
        region: "eu-central-1".into(),
        session_duration: duration,
        account_id: Some("123456789012".into()),
        file_keys: Some(LongTermKeys {
            access_key_id: AccessKeyId::new(LONG_TERM_KEY_ID),
            secret_access_key: Secret::new("integration-test-secret"),
        }),
    }
}

/// Options for [`TestServer::start`].
pub struct Options {
    pub allow_imdsv1: bool,
    pub sts_timeout: Duration,
    pub clock: Arc<dyn Clock>,
    pub tokens: Option<TokenSigner>,
    /// Whether the profile has keys in the credentials file.
    pub file_keys: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_imdsv1: false,
            sts_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            tokens: None,
            file_keys: true,
        }
    }
}

/// The app's server on an ephemeral loopback port, backed by a fake STS
/// and an in-memory keychain.
pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub sts: FakeSts,
    pub keys: Arc<MemoryKeyStore>,
    pub cache: Arc<SessionCache>,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(options: Options) -> Self {
        let sts = FakeSts::start().await;
        let mut profile = profile(Duration::from_secs(43_200));
        if !options.file_keys {
            profile.file_keys = None;
        }
        let client = StsClient::with_endpoint(&profile, &sts.url, options.sts_timeout).await;
        let keys = Arc::new(MemoryKeyStore::default());
        let cache = Arc::new(SessionCache::new(
            profile,
            options.clock.clone(),
            Arc::new(client),
            keys.clone(),
        ));
        let listeners = server::bind(&["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        let addr = listeners[0].local_addr().unwrap();
        let mut guard = Guard::new(&[addr], &[]);
        guard.allow_ports([addr.port()]);
        let state = Arc::new(AppState {
            cache: Arc::clone(&cache),
            tokens: options.tokens.unwrap_or_else(TokenSigner::ephemeral),
            role_name: "local-credentials".into(),
            allow_imdsv1: options.allow_imdsv1,
            clock: options.clock,
            started_at: SystemTime::now(),
            guard,
            credentials_document: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::serve(listeners, state, shutdown.clone()));
        Self {
            base: format!("http://{addr}"),
            addr,
            sts,
            keys,
            cache,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn token(&self) -> String {
        let response = self
            .http
            .put(self.url("/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    pub async fn get_with_token(&self, path: &str) -> reqwest::Response {
        let token = self.token().await;
        self.http
            .get(self.url(path))
            .header("x-aws-ec2-metadata-token", token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_code(&self, code: &str) -> reqwest::Response {
        self.http
            .post(self.url("/manage/session"))
            .form(&[("token", code)])
            .send()
            .await
            .unwrap()
    }

    /// Stops the server and waits until it has released its port.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
