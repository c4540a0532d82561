//! The session cache: one MFA session per profile, shared by every caller.
//!
//! Callers that find no valid session never wait: they get `None` at once
//! and the cache raises one MFA request, however many callers arrive, which
//! a prompt (tray dialog, terminal, `POST /manage/session`) answers with a
//! code. A code leads to exactly one STS call. A failed call never removes
//! a session that is still valid.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_types::os_shim_internal::{Env, Fs};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::clock::{Clock, format_utc_seconds};
use crate::config::{self, ProfileConfig};
use crate::keychain::{KeyStore, KeysError, resolve_keys};
use crate::secret::{MfaCode, SessionCredentials};
use crate::sts::{SessionIssuer, StsError};

/// How long an unanswered MFA request stays pending before the next caller
/// raises it again (the first notification may have been missed).
pub const REQUEST_REPEAT_AFTER: Duration = Duration::from_secs(300);

/// How long a cancelled prompt keeps new requests quiet.
pub const QUIET_AFTER_CANCEL: Duration = Duration::from_secs(60);

/// STS rejects a code that it accepted within the last 30 s window. This
/// app does not send such a code again for a little longer.
pub const CODE_REUSE_WINDOW: Duration = Duration::from_secs(90);

/// At most this many codes go to STS within [`ATTEMPT_WINDOW`], so a local
/// process cannot burn codes or get the MFA device locked.
pub const MAX_ATTEMPTS: usize = 5;

/// The sliding window for [`MAX_ATTEMPTS`].
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// Upper bound on a keychain look-up, which can hang on a stuck D-Bus.
pub const KEYCHAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// When a session stops being served and when renewal is requested,
/// measured back from its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryWindows {
    /// Credentials closer than this to expiry are no longer served.
    pub serve_margin: Duration,
    /// An MFA request is raised this long before `serve_margin` begins.
    pub renew_lead: Duration,
}

impl ExpiryWindows {
    /// Windows for sessions of length `duration`.
    ///
    /// botocore treats credentials that expire within 12 to 20 minutes as
    /// still usable for that long ("static stability"), so serving them with
    /// less than 25 minutes left can make it sign with expired keys. Short
    /// sessions cannot afford 25 minutes, so the margin is capped at a third
    /// of the session, and the renewal lead at a sixth.
    pub fn for_duration(duration: Duration) -> Self {
        Self {
            serve_margin: Duration::from_secs(25 * 60).min(duration / 3),
            renew_lead: Duration::from_secs(15 * 60).min(duration / 6),
        }
    }
}

/// A session and when it was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub credentials: SessionCredentials,
    pub obtained_at: SystemTime,
}

impl Session {
    pub fn expiration(&self) -> SystemTime {
        self.credentials.expiration
    }

    /// Windows for the session STS actually granted, which can be shorter
    /// than the one requested (root keys get at most an hour).
    pub fn windows(&self) -> ExpiryWindows {
        ExpiryWindows::for_duration(
            self.expiration()
                .duration_since(self.obtained_at)
                .unwrap_or_default(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaReason {
    /// No valid session: callers are failing now.
    NoSession,
    /// The session expires soon; renewing now avoids failures.
    ExpiringSoon,
}

/// A request for a person to enter an MFA code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRequest {
    pub id: u64,
    pub profile: String,
    pub mfa_serial: String,
    pub reason: MfaReason,
}

/// An event the cache sends to prompts, notifications and the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    MfaNeeded(MfaRequest),
    SessionStarted {
        expiration: SystemTime,
    },
    SessionCleared,
    SessionExpired,
    /// STS rejected a code as wrong; the pending request stays open.
    CodeRejected {
        message: String,
    },
    /// A code could not be used for another reason (keys, network, clock).
    SubmitFailed {
        message: String,
    },
}

/// The state of the session, for the tray icon and menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    NoSession,
    /// No session, and an MFA request is open.
    WaitingForCode,
    Valid,
    /// Valid, but inside the renewal window.
    ExpiringSoon,
}

/// A snapshot for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub profile: String,
    pub mfa_serial: String,
    pub phase: Phase,
    pub expiration: Option<SystemTime>,
    pub pending: Option<MfaRequest>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error("the keychain did not answer within {} s; unlock it or check that its service is running", KEYCHAIN_TIMEOUT.as_secs())]
    KeychainTimeout,
    #[error(transparent)]
    Sts(#[from] StsError),
    #[error("this code was accepted a moment ago and cannot be used twice; wait for the next code")]
    CodeReused,
    #[error(
        "too many MFA codes sent in the last minute; try again in {} s",
        retry_after.as_secs().max(1)
    )]
    RateLimited { retry_after: Duration },
    #[error(
        "STS returned credentials that expire at {expiration}, which is not in the future; check the system clock"
    )]
    AlreadyExpired { expiration: String },
}

impl SubmitError {
    /// True when the code itself was the problem, so asking for another
    /// code is the right response.
    pub fn is_code_problem(&self) -> bool {
        match self {
            SubmitError::Sts(err) => err.is_wrong_code(),
            SubmitError::CodeReused => true,
            _ => false,
        }
    }
}

#[derive(Default)]
struct State {
    session: Option<Arc<Session>>,
    pending: Option<(MfaRequest, SystemTime)>,
    quiet_until: Option<SystemTime>,
    /// The last code STS accepted, and when.
    last_accepted: Option<(MfaCode, SystemTime)>,
    /// When codes were last sent to STS, oldest first.
    attempts: std::collections::VecDeque<SystemTime>,
    next_request_id: u64,
}

/// The cache for one profile.
pub struct SessionCache {
    profile: ProfileConfig,
    windows: ExpiryWindows,
    clock: Arc<dyn Clock>,
    issuer: Arc<dyn SessionIssuer>,
    keys: Arc<dyn KeyStore>,
    state: Mutex<State>,
    /// A copy of `state.session`, written under the lock and read without
    /// it, so that SDK reads of a valid session take no lock.
    serving: ArcSwapOption<Session>,
    /// Serializes STS calls, so concurrent submissions never race.
    sts_gate: tokio::sync::Mutex<()>,
    events: broadcast::Sender<SessionEvent>,
    reread_credentials_file: bool,
}

impl SessionCache {
    pub fn new(
        profile: ProfileConfig,
        clock: Arc<dyn Clock>,
        issuer: Arc<dyn SessionIssuer>,
        keys: Arc<dyn KeyStore>,
    ) -> Self {
        let (events, _) = broadcast::channel(64);
        Self {
            windows: ExpiryWindows::for_duration(profile.session_duration),
            profile,
            clock,
            issuer,
            keys,
            state: Mutex::new(State::default()),
            serving: ArcSwapOption::empty(),
            sts_gate: tokio::sync::Mutex::new(()),
            events,
            reread_credentials_file: false,
        }
    }

    /// Makes every code submission read the profile's keys from the
    /// credentials file again, as the app does. Tests leave it off, so they
    /// read no real file.
    pub fn rereading_credentials_file(mut self) -> Self {
        self.reread_credentials_file = true;
        self
    }

    pub fn profile(&self) -> &ProfileConfig {
        &self.profile
    }

    pub fn windows(&self) -> ExpiryWindows {
        self.windows
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only plain data behind, so
        // the state is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the session; every change goes through here so that the
    /// lock-free copy follows.
    fn set_session(&self, state: &mut State, session: Option<Arc<Session>>) {
        self.serving.store(session.clone());
        state.session = session;
    }

    fn emit(&self, event: SessionEvent) {
        // No subscriber is a normal state (headless without a prompt).
        let _ = self.events.send(event);
    }

    /// Returns the session to hand to an SDK, or `None` when there is no
    /// session that is safe to serve. Never waits: a missing or expiring
    /// session raises an MFA request in the background.
    pub fn credentials_for_caller(&self) -> Option<Arc<Session>> {
        self.credentials_at(self.clock.now())
    }

    /// Calls `serve` with the session to hand to an SDK, as
    /// [`Self::credentials_for_caller`] decides it. A session that is neither
    /// near its end nor expired is read without taking the lock, which is
    /// what every SDK read hits while a session is valid.
    pub fn serve_caller<R>(&self, serve: impl FnOnce(&Arc<Session>) -> R) -> Option<R> {
        let now = self.clock.now();
        {
            let serving = self.serving.load();
            if let Some(session) = serving.as_ref() {
                let windows = session.windows();
                if now + windows.serve_margin + windows.renew_lead < session.expiration() {
                    return Some(serve(session));
                }
            }
        }
        self.credentials_at(now).map(|session| serve(&session))
    }

    fn credentials_at(&self, now: SystemTime) -> Option<Arc<Session>> {
        let mut state = self.lock();
        match state.session.clone() {
            Some(session) if now + session.windows().serve_margin < session.expiration() => {
                let windows = session.windows();
                if now + windows.serve_margin + windows.renew_lead >= session.expiration() {
                    self.raise_request(&mut state, now, MfaReason::ExpiringSoon);
                }
                Some(session)
            }
            _ => {
                self.raise_request(&mut state, now, MfaReason::NoSession);
                None
            }
        }
    }

    /// Returns the session until it expires, including its last minutes
    /// when it is no longer served to SDKs.
    pub fn current(&self) -> Option<Arc<Session>> {
        let now = self.clock.now();
        self.lock().session.clone().filter(|s| now < s.expiration())
    }

    pub fn status(&self) -> Status {
        let now = self.clock.now();
        let state = self.lock();
        let current = state.session.as_ref().filter(|s| now < s.expiration());
        let expiration = current.map(|s| s.expiration());
        let pending = state.pending.as_ref().map(|(request, _)| request.clone());
        let renewal_window = current
            .map(|s| s.windows().serve_margin + s.windows().renew_lead)
            .unwrap_or_default();
        let phase = match expiration {
            Some(expiration) if now + renewal_window >= expiration => Phase::ExpiringSoon,
            Some(_) => Phase::Valid,
            None if pending.is_some() => Phase::WaitingForCode,
            None => Phase::NoSession,
        };
        Status {
            profile: self.profile.name.clone(),
            mfa_serial: self.profile.mfa_serial.clone(),
            phase,
            expiration,
            pending,
        }
    }

    fn raise_request(&self, state: &mut State, now: SystemTime, reason: MfaReason) {
        if let Some((_, raised_at)) = &state.pending {
            let age = now.duration_since(*raised_at).unwrap_or_default();
            if age < REQUEST_REPEAT_AFTER {
                return;
            }
        }
        if state.quiet_until.is_some_and(|until| now < until) {
            return;
        }
        state.next_request_id += 1;
        let request = MfaRequest {
            id: state.next_request_id,
            profile: self.profile.name.clone(),
            mfa_serial: self.profile.mfa_serial.clone(),
            reason,
        };
        info!(
            profile = %request.profile,
            request_id = request.id,
            reason = ?reason,
            "MFA code needed for profile \"{}\"",
            request.profile
        );
        state.pending = Some((request.clone(), now));
        self.emit(SessionEvent::MfaNeeded(request));
    }

    /// Marks the pending request as cancelled by the person, so callers do
    /// not reopen a prompt at once.
    pub fn cancel_request(&self, id: u64) {
        let now = self.clock.now();
        let mut state = self.lock();
        if state
            .pending
            .as_ref()
            .is_some_and(|(request, _)| request.id == id)
        {
            state.pending = None;
            state.quiet_until = Some(now + QUIET_AFTER_CANCEL);
            info!(request_id = id, "MFA prompt cancelled");
        }
    }

    /// Removes the session. Returns whether one existed.
    pub fn clear(&self) -> bool {
        let mut state = self.lock();
        let existed = state.session.is_some();
        self.set_session(&mut state, None);
        state.pending = None;
        state.quiet_until = None;
        drop(state);
        info!(existed, "session cleared");
        self.emit(SessionEvent::SessionCleared);
        existed
    }

    /// Exchanges `code` for a new session through one STS call. On failure
    /// the current session, if any, stays in place.
    pub async fn submit_code(&self, code: MfaCode) -> Result<Arc<Session>, SubmitError> {
        let _gate = self.sts_gate.lock().await;
        let result = self.exchange_code(code).await;
        match &result {
            Ok(session) => {
                info!(
                    profile = %self.profile.name,
                    expiration = %format_utc_seconds(session.expiration()),
                    "STS GetSessionToken succeeded; session started"
                );
                self.emit(SessionEvent::SessionStarted {
                    expiration: session.expiration(),
                });
            }
            Err(err) => {
                warn!(profile = %self.profile.name, error = %err, "MFA code not accepted");
                let message = err.to_string();
                self.emit(if err.is_code_problem() {
                    SessionEvent::CodeRejected { message }
                } else {
                    SessionEvent::SubmitFailed { message }
                });
            }
        }
        result
    }

    async fn exchange_code(&self, code: MfaCode) -> Result<Arc<Session>, SubmitError> {
        let now = self.clock.now();
        if let Some((accepted, at)) = &self.lock().last_accepted
            && *accepted == code
            && now.duration_since(*at).unwrap_or_default() < CODE_REUSE_WINDOW
        {
            return Err(SubmitError::CodeReused);
        }

        let store = Arc::clone(&self.keys);
        let mut profile = self.profile.clone();
        if self.reread_credentials_file {
            // Keys added to the credentials file while the app runs count,
            // like keys stored in the keychain.
            match config::load_profile(&profile.name, &Env::real(), &Fs::real()).await {
                Ok(fresh) => profile.file_keys = fresh.file_keys,
                Err(err) => debug!("keeping the credentials-file keys read at start-up: {err}"),
            }
        }
        let lookup = tokio::task::spawn_blocking(move || resolve_keys(store.as_ref(), &profile));
        let (keys, source) = match tokio::time::timeout(KEYCHAIN_TIMEOUT, lookup).await {
            Ok(Ok(found)) => found?,
            Ok(Err(join_error)) => std::panic::resume_unwind(join_error.into_panic()),
            Err(_) => return Err(SubmitError::KeychainTimeout),
        };
        // Counted only now, so attempts that never reach STS do not use up
        // the limit.
        self.take_attempt(now)?;
        info!(
            profile = %self.profile.name,
            key_source = %source,
            access_key_id = %keys.access_key_id.masked(),
            "calling STS GetSessionToken"
        );

        let credentials = self
            .issuer
            .get_session_token(keys, &self.profile, code.clone())
            .await?;
        let now = self.clock.now();
        if credentials.expiration <= now {
            return Err(SubmitError::AlreadyExpired {
                expiration: format_utc_seconds(credentials.expiration),
            });
        }
        let session = Arc::new(Session {
            credentials,
            obtained_at: now,
        });
        let mut state = self.lock();
        self.set_session(&mut state, Some(Arc::clone(&session)));
        state.pending = None;
        state.quiet_until = None;
        state.last_accepted = Some((code, now));
        Ok(session)
    }

    /// Records an STS attempt at `now`, or returns how long to wait when
    /// the window is full.
    fn take_attempt(&self, now: SystemTime) -> Result<(), SubmitError> {
        let mut state = self.lock();
        while state
            .attempts
            .front()
            .is_some_and(|at| now.duration_since(*at).unwrap_or_default() >= ATTEMPT_WINDOW)
        {
            state.attempts.pop_front();
        }
        if state.attempts.len() >= MAX_ATTEMPTS {
            let oldest = state.attempts[0];
            let retry_after = (oldest + ATTEMPT_WINDOW)
                .duration_since(now)
                .unwrap_or_default();
            return Err(SubmitError::RateLimited { retry_after });
        }
        state.attempts.push_back(now);
        Ok(())
    }

    /// Re-evaluates expiry without waiting for a caller: drops an expired
    /// session and raises the renewal request when it is due. Returns how
    /// long until the next moment this needs to run again.
    pub fn tick(&self) -> Duration {
        let now = self.clock.now();
        let mut state = self.lock();
        let Some(session) = state.session.clone() else {
            return Duration::MAX;
        };
        if now >= session.expiration() {
            self.set_session(&mut state, None);
            drop(state);
            info!(profile = %self.profile.name, "session expired");
            self.emit(SessionEvent::SessionExpired);
            return Duration::MAX;
        }
        let windows = session.windows();
        let renew_at = session.expiration() - windows.serve_margin - windows.renew_lead;
        if now >= renew_at {
            self.raise_request(&mut state, now, MfaReason::ExpiringSoon);
            let pending_repeat = state
                .pending
                .as_ref()
                .map(|(_, raised)| {
                    (*raised + REQUEST_REPEAT_AFTER)
                        .duration_since(now)
                        .unwrap_or_default()
                })
                .unwrap_or(Duration::MAX);
            session
                .expiration()
                .duration_since(now)
                .unwrap_or_default()
                .min(pending_repeat)
        } else {
            renew_at.duration_since(now).unwrap_or_default()
        }
    }

    /// Runs [`tick`](Self::tick) until `shutdown` fires. Sleeps are capped
    /// at 30 s so that a jump of the wall clock (sleep and wake) is noticed
    /// soon after it happens.
    pub async fn watch_expiry(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let wait = self
                .tick()
                .min(Duration::from_secs(30))
                .max(Duration::from_millis(100));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::keychain::{KeychainError, MemoryKeyStore};
    use crate::secret::{AccessKeyId, LongTermKeys, Secret};
    use crate::sts::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const HOUR: Duration = Duration::from_secs(3600);

    /// Issues sessions of a fixed length, or a scripted error.
    struct ScriptedIssuer {
        clock: Arc<ManualClock>,
        calls: AtomicUsize,
        next_error: Mutex<Option<StsError>>,
        length: Duration,
    }

    impl SessionIssuer for ScriptedIssuer {
        fn get_session_token<'a>(
            &'a self,
            _keys: LongTermKeys,
            _profile: &'a ProfileConfig,
            _code: MfaCode,
        ) -> BoxFuture<'a, Result<SessionCredentials, StsError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let result = match self.next_error.lock().unwrap().take() {
                Some(err) => Err(err),
                None => Ok(SessionCredentials {
                    access_key_id: AccessKeyId::new(format!("ASIASESSION{n}")),
                    secret_access_key: Secret::new("secret"),
                    session_token: Secret::new("token"),
                    expiration: self.clock.now() + self.length,
                }),
            };
            Box::pin(async move { result })
        }
    }

    struct Fixture {
        clock: Arc<ManualClock>,
        issuer: Arc<ScriptedIssuer>,
        store: Arc<MemoryKeyStore>,
        cache: Arc<SessionCache>,
    }

    fn fixture(duration: Duration) -> Fixture {
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        let issuer = Arc::new(ScriptedIssuer {
            clock: Arc::clone(&clock),
            calls: AtomicUsize::new(0),
            next_error: Mutex::new(None),
            length: duration,
        });
        let profile = ProfileConfig {
            name: "dev".into(),
            mfa_serial: "arn:aws:iam::123456789012:mfa/dev".into(),
            region: "us-east-1".into(),
            session_duration: duration,
            account_id: Some("123456789012".into()),
            file_keys: Some(LongTermKeys {
                access_key_id: AccessKeyId::new("AKIAFILE"),
                secret_access_key: Secret::new("s"),
            }),
        };
        let store = Arc::new(MemoryKeyStore::default());
        let cache = Arc::new(SessionCache::new(
            profile,
            clock.clone(),
            issuer.clone(),
            store.clone(),
        ));
        Fixture {
            clock,
            issuer,
            store,
            cache,
        }
    }

    fn code(s: &str) -> MfaCode {
        MfaCode::parse(s).unwrap()
    }

    fn drain(rx: &mut broadcast::Receiver<SessionEvent>) -> Vec<SessionEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn mfa_requests(events: &[SessionEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, SessionEvent::MfaNeeded(_)))
            .count()
    }

    #[tokio::test]
    async fn many_callers_without_session_raise_one_request_and_code_makes_one_call() {
        let f = fixture(12 * HOUR);
        let mut events = f.cache.subscribe();
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let cache = Arc::clone(&f.cache);
                tokio::spawn(async move { cache.credentials_for_caller() })
            })
            .collect();
        for caller in callers {
            assert!(caller.await.unwrap().is_none());
        }
        assert_eq!(mfa_requests(&drain(&mut events)), 1);

        f.cache.submit_code(code("123456")).await.unwrap();
        assert_eq!(f.issuer.calls.load(Ordering::SeqCst), 1);
        assert!(f.cache.credentials_for_caller().is_some());
        assert_eq!(f.cache.status().pending, None);
    }

    #[tokio::test]
    async fn stops_serving_before_expiry_and_never_serves_expired_keys() {
        let f = fixture(12 * HOUR);
        f.cache.submit_code(code("123456")).await.unwrap();
        let windows = f.cache.windows();
        assert_eq!(windows.serve_margin, Duration::from_secs(25 * 60));

        f.clock
            .advance(12 * HOUR - windows.serve_margin - Duration::from_secs(1));
        assert!(f.cache.credentials_for_caller().is_some());
        f.clock.advance(Duration::from_secs(1));
        assert!(f.cache.credentials_for_caller().is_none());
        assert!(
            f.cache.current().is_some(),
            "the session exists until it expires"
        );
        f.clock.advance(windows.serve_margin);
        assert!(f.cache.current().is_none());
        assert!(f.cache.credentials_for_caller().is_none());
    }

    #[tokio::test]
    async fn renewal_is_requested_ahead_of_expiry_without_any_caller() {
        let f = fixture(12 * HOUR);
        f.cache.submit_code(code("123456")).await.unwrap();
        let mut events = f.cache.subscribe();
        let windows = f.cache.windows();
        let until_renewal = 12 * HOUR - windows.serve_margin - windows.renew_lead;
        assert_eq!(f.cache.tick(), until_renewal);
        assert!(drain(&mut events).is_empty());

        f.clock.advance(until_renewal);
        f.cache.tick();
        let raised = drain(&mut events);
        assert!(matches!(
            raised.as_slice(),
            [SessionEvent::MfaNeeded(MfaRequest {
                reason: MfaReason::ExpiringSoon,
                ..
            })]
        ));
        assert!(
            f.cache.credentials_for_caller().is_some(),
            "still served during renewal"
        );
    }

    #[tokio::test]
    async fn failed_renewal_keeps_valid_session() {
        let f = fixture(12 * HOUR);
        let first = f.cache.submit_code(code("111111")).await.unwrap();
        *f.issuer.next_error.lock().unwrap() = Some(StsError::WrongCode);
        let err = f.cache.submit_code(code("222222")).await.unwrap_err();
        assert!(err.is_code_problem());
        assert_eq!(f.cache.credentials_for_caller().unwrap(), first);

        f.store
            .set_failure(Some(KeychainError::Failed("broken".into())));
        assert!(matches!(
            f.cache.submit_code(code("333333")).await,
            Err(SubmitError::Keys(_))
        ));
        assert_eq!(f.cache.credentials_for_caller().unwrap(), first);
    }

    #[tokio::test]
    async fn accepted_code_is_not_sent_again() {
        let f = fixture(12 * HOUR);
        f.cache.submit_code(code("123456")).await.unwrap();
        let err = f.cache.submit_code(code("123456")).await.unwrap_err();
        assert!(matches!(err, SubmitError::CodeReused));
        assert_eq!(f.issuer.calls.load(Ordering::SeqCst), 1);
        f.clock.advance(CODE_REUSE_WINDOW);
        f.cache.submit_code(code("123456")).await.unwrap();
    }

    #[tokio::test]
    async fn sts_attempts_are_rate_limited() {
        let f = fixture(12 * HOUR);
        for i in 0..MAX_ATTEMPTS {
            *f.issuer.next_error.lock().unwrap() = Some(StsError::WrongCode);
            let err = f
                .cache
                .submit_code(code(&format!("{:06}", 100_000 + i)))
                .await
                .unwrap_err();
            assert!(matches!(err, SubmitError::Sts(StsError::WrongCode)));
        }
        f.clock.advance(Duration::from_secs(10));
        let err = f.cache.submit_code(code("999999")).await.unwrap_err();
        let SubmitError::RateLimited { retry_after } = err else {
            panic!("{err:?}")
        };
        assert_eq!(retry_after, ATTEMPT_WINDOW - Duration::from_secs(10));
        assert_eq!(f.issuer.calls.load(Ordering::SeqCst), MAX_ATTEMPTS);
        f.clock.advance(retry_after);
        f.cache.submit_code(code("999999")).await.unwrap();
    }

    #[tokio::test]
    async fn clock_jump_past_expiry_drops_session() {
        let f = fixture(HOUR);
        f.cache.submit_code(code("123456")).await.unwrap();
        let mut events = f.cache.subscribe();
        f.clock.advance(2 * HOUR);
        assert!(f.cache.credentials_for_caller().is_none());
        f.cache.tick();
        let seen = drain(&mut events);
        assert!(seen.contains(&SessionEvent::SessionExpired));
        assert!(f.cache.current().is_none());
    }

    /// `serve_caller` skips the lock for a plainly valid session; at every
    /// moment it must decide as `credentials_for_caller` does.
    #[tokio::test]
    async fn serve_caller_agrees_with_credentials_for_caller() {
        let f = fixture(HOUR);
        let mut events = f.cache.subscribe();
        let served = |cache: &SessionCache| cache.serve_caller(|s| s.expiration());
        assert_eq!(served(&f.cache), None);
        assert_eq!(mfa_requests(&drain(&mut events)), 1);

        f.cache.submit_code(code("123456")).await.unwrap();
        drain(&mut events);
        let expiration = f.cache.current().unwrap().expiration();
        let windows = f.cache.current().unwrap().windows();
        let renew_at = expiration - windows.serve_margin - windows.renew_lead;
        assert_eq!(served(&f.cache), Some(expiration));
        assert_eq!(mfa_requests(&drain(&mut events)), 0);

        // In the renewal lead it still serves, and raises an MFA request.
        f.clock.set(renew_at);
        assert_eq!(served(&f.cache), Some(expiration));
        assert_eq!(mfa_requests(&drain(&mut events)), 1);
        assert_eq!(
            served(&f.cache).is_some(),
            f.cache.credentials_for_caller().is_some()
        );

        // In the last minutes, and after a jump past expiry, it serves nothing.
        f.clock.set(expiration - windows.serve_margin);
        assert_eq!(served(&f.cache), None);
        f.clock.set(expiration + HOUR);
        assert_eq!(served(&f.cache), None);

        // A cleared session is gone at once.
        f.clock.set(renew_at - HOUR / 10);
        assert_eq!(served(&f.cache), Some(expiration));
        f.cache.clear();
        assert_eq!(served(&f.cache), None);
    }

    #[tokio::test]
    async fn unanswered_request_is_raised_again_after_a_while() {
        let f = fixture(HOUR);
        let mut events = f.cache.subscribe();
        f.cache.credentials_for_caller();
        f.clock
            .advance(REQUEST_REPEAT_AFTER - Duration::from_secs(1));
        f.cache.credentials_for_caller();
        assert_eq!(mfa_requests(&drain(&mut events)), 1);
        f.clock.advance(Duration::from_secs(1));
        f.cache.credentials_for_caller();
        assert_eq!(mfa_requests(&drain(&mut events)), 1);
    }

    #[tokio::test]
    async fn cancelled_prompt_stays_quiet_for_a_minute() {
        let f = fixture(HOUR);
        let mut events = f.cache.subscribe();
        f.cache.credentials_for_caller();
        let id = f.cache.status().pending.unwrap().id;
        f.cache.cancel_request(id);
        f.cache.credentials_for_caller();
        assert_eq!(mfa_requests(&drain(&mut events)), 1);
        f.clock.advance(QUIET_AFTER_CANCEL);
        f.cache.credentials_for_caller();
        assert_eq!(mfa_requests(&drain(&mut events)), 1);
    }

    #[tokio::test]
    async fn status_phase_follows_the_session() {
        let f = fixture(12 * HOUR);
        assert_eq!(f.cache.status().phase, Phase::NoSession);
        f.cache.credentials_for_caller();
        assert_eq!(f.cache.status().phase, Phase::WaitingForCode);
        f.cache.submit_code(code("123456")).await.unwrap();
        assert_eq!(f.cache.status().phase, Phase::Valid);
        let windows = f.cache.windows();
        f.clock
            .advance(12 * HOUR - windows.serve_margin - windows.renew_lead);
        assert_eq!(f.cache.status().phase, Phase::ExpiringSoon);
        f.clock.advance(windows.serve_margin + windows.renew_lead);
        assert_eq!(f.cache.status().phase, Phase::NoSession);
    }

    #[tokio::test]
    async fn clear_removes_session() {
        let f = fixture(HOUR);
        f.cache.submit_code(code("123456")).await.unwrap();
        assert!(f.cache.clear());
        assert!(f.cache.current().is_none());
        assert!(!f.cache.clear());
    }

    #[test]
    fn short_sessions_get_proportional_windows() {
        let w = ExpiryWindows::for_duration(Duration::from_secs(900));
        assert_eq!(w.serve_margin, Duration::from_secs(300));
        assert_eq!(w.renew_lead, Duration::from_secs(150));
    }
}
