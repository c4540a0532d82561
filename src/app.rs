//! Wires the parts together: the tokio runtime on a background thread runs
//! the server, the expiry watch and the prompt, and the main thread is kept
//! for the GUI event loop.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use aws_types::os_shim_internal::{Env, Fs};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{KeysCommand, LoginItemCommand, RunArgs};
use crate::clock::SystemClock;
use crate::config::{self, ProfileConfig};
use crate::gui::{GuiCommand, GuiEvents};
use crate::keychain::{KEYCHAIN_SERVICE, KeyStore, KeychainError, OsKeychain, resolve_keys};
use crate::login_item;
use crate::notify;
use crate::prompt::{self, PromptMode};
use crate::secret::{AccessKeyId, LongTermKeys, Secret};
use crate::server::guard::{Guard, is_local};
use crate::server::{self, AppState, token::TokenSigner};
use crate::session::{SessionCache, SessionEvent};
use crate::sts::StsClient;
#[cfg(feature = "tray")]
use crate::tray::Gui;

/// File name of the IMDSv2 token signing key inside the state directory.
pub const TOKEN_KEY_FILE: &str = "imds-token-key";

/// Settings for one run of the server, resolved from the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: String,
    pub listen: Vec<SocketAddr>,
    pub headless: bool,
    pub role_name: String,
    pub allow_imdsv1: bool,
    pub state_dir: PathBuf,
    pub sts_timeout: Duration,
    pub prompt: PromptMode,
    pub allowed_hosts: Vec<String>,
}

impl Settings {
    pub fn from_args(profile: String, args: RunArgs) -> anyhow::Result<Self> {
        let mut listen = Vec::with_capacity(args.listen.len());
        for addr in args.listen {
            if listen.contains(&addr) {
                bail!("--listen {addr} is given twice; give each address once");
            }
            listen.push(addr);
        }
        let state_dir = match args.state_dir {
            Some(dir) => dir,
            None => default_state_dir().context(
                "cannot find a per-user state directory (is HOME set?); choose one with --state-dir",
            )?,
        };
        Ok(Self {
            profile,
            listen,
            headless: args.headless,
            role_name: args.role_name,
            allow_imdsv1: args.allow_imdsv1,
            state_dir,
            sts_timeout: Duration::from_secs(args.sts_timeout),
            prompt: args.prompt,
            allowed_hosts: args.allow_host,
        })
    }
}

/// `~/.local/state/aws-mock-metadata` on Linux, `~/Library/Application
/// Support/aws-mock-metadata` on macOS.
fn default_state_dir() -> Option<PathBuf> {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|dir| dir.join("aws-mock-metadata"))
}

/// Runs the app until SIGINT, SIGTERM or Quit in the tray menu.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    raise_open_file_limit();
    let (gui, events) = match open_gui(&settings) {
        Some((gui, events)) => (Some(gui), Some(events)),
        None => (None, None),
    };
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Arc<SessionCache>>>();

    let runtime_settings = settings.clone();
    let runtime_thread = std::thread::Builder::new()
        .name("runtime".into())
        .spawn(move || -> anyhow::Result<()> {
            // Tells the GUI that the runtime is gone, even after a panic.
            let _stopped = RuntimeStoppedGuard(events.clone());
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("runtime-worker")
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                match start(&runtime_settings).await {
                    Ok((listeners, state)) => {
                        let _ = ready_tx.send(Ok(Arc::clone(&state.cache)));
                        let desktop = events.map(|events| Desktop {
                            events,
                            commands: command_rx,
                        });
                        run_services(listeners, state, &runtime_settings, desktop, shutdown).await;
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            });
            // Blocking threads stuck on a hung notification server or
            // keychain must not hold up the exit.
            runtime.shutdown_timeout(Duration::from_secs(1));
            Ok(())
        })
        .context("cannot start the runtime thread")?;

    let cache = match ready_rx.recv() {
        Ok(Ok(cache)) => cache,
        Ok(Err(err)) => {
            let _ = runtime_thread.join();
            return Err(err);
        }
        Err(_) => return join_runtime(runtime_thread),
    };
    match gui {
        Some(gui) => {
            let err = gui.run(&cache.status(), command_tx);
            warn!("{err}; running without the tray icon until SIGINT or SIGTERM");
            join_runtime(runtime_thread)
        }
        None => {
            info!(
                "running headless: MFA requests are logged, and read from standard input when it is a terminal"
            );
            join_runtime(runtime_thread)
        }
    }
}

/// Raises the soft limit on open files to the hard limit. Every waiting SDK
/// connection takes a descriptor, and the usual soft limits (1024 on Linux,
/// 256 on macOS) are lower than the connection limit.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        // macOS rejects soft limits above OPEN_MAX (10240) even when the
        // hard limit is unlimited.
        let ceiling: libc::rlim_t = if cfg!(target_os = "macos") {
            10_240
        } else {
            1 << 20
        };
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return;
        }
        let wanted = limit.rlim_max.min(ceiling);
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit that outlives the call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                warn!("cannot raise the open-file limit from {}", limit.rlim_cur);
            }
        }
    }
}

fn join_runtime(thread: std::thread::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The GUI of a build without the tray feature: it never exists.
#[cfg(not(feature = "tray"))]
enum Gui {}

#[cfg(not(feature = "tray"))]
impl Gui {
    fn run(
        self,
        _initial: &crate::session::Status,
        _commands: mpsc::UnboundedSender<GuiCommand>,
    ) -> String {
        match self {}
    }
}

#[cfg(not(feature = "tray"))]
fn open_gui(settings: &Settings) -> Option<(Gui, Arc<dyn GuiEvents>)> {
    if !settings.headless {
        info!("built without the tray feature; running headless");
    }
    None
}

/// Loads the tray library and opens its event loop, with the handle the
/// runtime posts to it through, unless the app is to run headless.
#[cfg(feature = "tray")]
fn open_gui(settings: &Settings) -> Option<(Gui, Arc<dyn GuiEvents>)> {
    if settings.headless {
        return None;
    }
    if !display_available() {
        info!("no display found (DISPLAY and WAYLAND_DISPLAY are unset); running headless");
        return None;
    }
    let opened = Gui::open().and_then(|gui| {
        let events = gui.events()?;
        Ok((gui, Arc::from(events)))
    });
    match opened {
        Ok(opened) => Some(opened),
        Err(err) => {
            warn!("{err}; running headless");
            None
        }
    }
}

/// Tells the GUI that the runtime has stopped, when dropped.
struct RuntimeStoppedGuard(Option<Arc<dyn GuiEvents>>);

impl Drop for RuntimeStoppedGuard {
    fn drop(&mut self) {
        if let Some(events) = &self.0 {
            events.runtime_stopped();
        }
    }
}

/// The runtime's side of the GUI.
struct Desktop {
    events: Arc<dyn GuiEvents>,
    commands: mpsc::UnboundedReceiver<GuiCommand>,
}

/// Returns whether a GUI can be shown. macOS always has one; elsewhere an
/// X11 or Wayland display must be named.
pub fn display_available() -> bool {
    if cfg!(target_os = "macos") {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// Loads and checks everything, then binds the listeners. Any error here
/// stops the app before it serves a request.
async fn start(
    settings: &Settings,
) -> anyhow::Result<(Vec<tokio::net::TcpListener>, Arc<AppState>)> {
    let profile = config::load_profile(&settings.profile, &Env::real(), &Fs::real()).await?;
    info!(
        profile = %profile.name,
        mfa_serial = %profile.mfa_serial,
        region = %profile.region,
        session_seconds = profile.session_duration.as_secs(),
        "profile loaded"
    );
    report_key_source(&profile).await;

    let key_path = settings.state_dir.join(TOKEN_KEY_FILE);
    let tokens = TokenSigner::load_or_create(&key_path).with_context(|| {
        format!(
            "cannot read or create the token key {}; choose another directory with --state-dir",
            key_path.display()
        )
    })?;

    for name in ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"] {
        if let Ok(url) = std::env::var(name)
            && !url.is_empty()
        {
            crate::sts::validate_endpoint(&url).map_err(|problem| {
                anyhow::anyhow!("{name}: {problem}; give a URL such as http://127.0.0.1:5000")
            })?;
        }
    }
    let sts = StsClient::from_environment(&profile, settings.sts_timeout).await;
    if let Some(endpoint) = sts.endpoint_url() {
        info!(endpoint, "STS endpoint set by the AWS endpoint settings");
    }
    let clock = Arc::new(SystemClock);
    let cache = Arc::new(
        SessionCache::new(profile, clock.clone(), Arc::new(sts), Arc::new(OsKeychain))
            .rereading_credentials_file(),
    );
    let listeners = server::bind(&settings.listen).await?;
    let mut guard = Guard::new(&settings.listen, &settings.allowed_hosts);
    guard.allow_ports(
        listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.port()),
    );
    if settings.listen.iter().any(|addr| !is_local(addr.ip())) {
        warn!(
            "listening beyond loopback: any machine that can reach this port can ask for credentials"
        );
    }
    let state = Arc::new(AppState {
        cache,
        tokens,
        role_name: settings.role_name.clone(),
        allow_imdsv1: settings.allow_imdsv1,
        clock,
        started_at: SystemTime::now(),
        guard,
        credentials_document: Default::default(),
    });
    Ok((listeners, state))
}

/// Logs where the long-term keys will come from, or how to add them. The
/// app starts either way, so keys can be stored while it runs.
async fn report_key_source(profile: &ProfileConfig) {
    let profile = profile.clone();
    let lookup = tokio::task::spawn_blocking(move || resolve_keys(&OsKeychain, &profile));
    match tokio::time::timeout(Duration::from_secs(10), lookup).await {
        Ok(Ok(Ok((keys, source)))) => {
            info!(key_source = %source, access_key_id = %keys.access_key_id.masked(), "long-term keys found");
        }
        Ok(Ok(Err(err))) => warn!("{err}"),
        Ok(Err(join_error)) => warn!("keychain look-up failed: {join_error}"),
        Err(_) => warn!(
            "the OS keychain did not answer within 10 s; keys are looked up again when a code is entered"
        ),
    }
}

/// Upper bound on a graceful shutdown of the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the tray's countdown is refreshed.
const STATUS_REFRESH: Duration = Duration::from_secs(60);

async fn run_services(
    listeners: Vec<tokio::net::TcpListener>,
    state: Arc<AppState>,
    settings: &Settings,
    desktop: Option<Desktop>,
    shutdown: CancellationToken,
) {
    tokio::spawn(wait_for_signal(shutdown.clone()));
    tokio::spawn(Arc::clone(&state.cache).watch_expiry(shutdown.clone()));
    let cache = Arc::clone(&state.cache);
    let manage_url = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|addr| format!("http://{}{}", reachable(addr), server::manage::SESSION_PATH))
        .unwrap_or_default();

    // Kept alive for the whole run, so that the dialog task's request
    // channel never closes.
    let (open_dialog_tx, open_dialog_rx) = mpsc::unbounded_channel();
    let has_gui = desktop.is_some();
    let prompt = match settings.prompt {
        PromptMode::Auto if has_gui => PromptMode::Dialog,
        PromptMode::Auto => PromptMode::Terminal,
        other => other,
    };
    info!(?prompt, "MFA prompt chosen");
    match prompt {
        PromptMode::Dialog => {
            tokio::spawn(prompt::run_dialogs(
                Arc::clone(&cache),
                open_dialog_rx,
                has_gui,
                shutdown.clone(),
            ));
        }
        PromptMode::Terminal => {
            tokio::spawn(prompt::terminal::run(Arc::clone(&cache), shutdown.clone()));
        }
        PromptMode::None | PromptMode::Auto => {}
    }
    // Whatever the prompt, the log shows how to enter a code over HTTP.
    tokio::spawn(log_manage_hint(
        Arc::clone(&cache),
        manage_url,
        shutdown.clone(),
    ));

    if let Some(desktop) = desktop {
        notify::init();
        tokio::spawn(notify::run(cache.subscribe(), shutdown.clone()));
        tokio::spawn(publish_status(
            Arc::clone(&cache),
            desktop.events,
            shutdown.clone(),
        ));
        tokio::spawn(handle_gui_commands(
            Arc::clone(&cache),
            desktop.commands,
            open_dialog_tx.clone(),
            shutdown.clone(),
        ));
    }

    info!(profile = %cache.profile().name, "aws-mock-metadata started");
    let serving = server::serve(listeners, state, shutdown.clone());
    let grace_expired = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = serving => {}
        () = grace_expired => warn!("connections still open {} s after shutdown began; stopping anyway", SHUTDOWN_GRACE.as_secs()),
    }
    drop(open_dialog_tx);
    info!("aws-mock-metadata stopped");
}

/// Logs how to answer each MFA request, for prompts that do not print it.
async fn log_manage_hint(
    cache: Arc<SessionCache>,
    manage_url: String,
    shutdown: CancellationToken,
) {
    let mut events = cache.subscribe();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(SessionEvent::MfaNeeded(_)) => {
                    info!("to enter the code, run: curl -fsS -X POST --data token=CODE {manage_url}");
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Sends the session status to the GUI on every session event and once a
/// minute, for the countdown.
async fn publish_status(
    cache: Arc<SessionCache>,
    gui: Arc<dyn GuiEvents>,
    shutdown: CancellationToken,
) {
    let mut events = cache.subscribe();
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = refresh.tick() => {}
            event = events.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = event {
                    return;
                }
            }
        }
        if !gui.status(cache.status()) {
            return;
        }
    }
}

async fn handle_gui_commands(
    cache: Arc<SessionCache>,
    mut commands: mpsc::UnboundedReceiver<GuiCommand>,
    open_dialog: mpsc::UnboundedSender<()>,
    shutdown: CancellationToken,
) {
    while let Some(command) = commands.recv().await {
        match command {
            GuiCommand::EnterCode => {
                let _ = open_dialog.send(());
            }
            GuiCommand::ClearSession => {
                cache.clear();
            }
            GuiCommand::Quit => {
                info!("Quit chosen in the tray menu; shutting down");
                shutdown.cancel();
                return;
            }
        }
    }
}

/// Returns the address a local client uses to reach `addr`: an unspecified
/// address becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(err) => {
                warn!("cannot watch for SIGTERM: {err}");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT received; shutting down"),
            _ = term.recv() => info!("SIGTERM received; shutting down"),
            () = shutdown.cancelled() => return,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("Ctrl-C received; shutting down"),
            () = shutdown.cancelled() => return,
        }
    }
    shutdown.cancel();
}

/// Runs a `login-item` subcommand.
pub fn run_login_item_command(profile: &str, command: LoginItemCommand) -> anyhow::Result<()> {
    match command {
        LoginItemCommand::Install { args } => {
            let program =
                std::env::current_exe().context("cannot find the path of this program")?;
            let mut all_args = vec!["--profile".to_owned(), profile.to_owned()];
            all_args.extend(args);
            let path = login_item::install(&program, &all_args)?;
            println!(
                "The app now starts at login with profile \"{profile}\" ({}).",
                path.display()
            );
        }
        LoginItemCommand::Uninstall => {
            if login_item::uninstall()? {
                println!("The app no longer starts at login.");
            } else {
                println!("No login item was installed.");
            }
        }
    }
    Ok(())
}

/// Runs a `keys` subcommand against the OS keychain.
pub fn run_keys_command(profile: &str, command: KeysCommand) -> anyhow::Result<()> {
    let store = OsKeychain;
    match command {
        KeysCommand::Store {
            access_key_id,
            stdin,
        } => {
            // Found out before the secret is typed, not after.
            if let Err(err @ KeychainError::Unavailable(_)) = store.load(profile) {
                bail!(
                    "{err}; put aws_access_key_id and aws_secret_access_key in the [{profile}] section of \
                     the credentials file instead (readable only by you), or start a keychain service"
                );
            }
            let keys = read_keys(access_key_id, stdin)?;
            store
                .store(profile, &keys)
                .with_context(|| format!("cannot store the keys for profile \"{profile}\""))?;
            match store.load(profile) {
                Ok(Some(stored)) if stored == keys => {}
                _ => bail!("the keychain accepted the keys but did not return them when read back"),
            }
            println!(
                "Stored access key {} for profile \"{profile}\" in the OS keychain (service \"{KEYCHAIN_SERVICE}\", account \"{profile}\").",
                keys.access_key_id.masked()
            );
        }
        KeysCommand::Delete => {
            if store
                .delete(profile)
                .with_context(|| format!("cannot delete the keys for profile \"{profile}\""))?
            {
                println!("Deleted the keys for profile \"{profile}\" from the OS keychain.");
            } else {
                println!("The OS keychain has no keys for profile \"{profile}\".");
            }
        }
        KeysCommand::Status => match store.load(profile) {
            Ok(Some(keys)) => println!(
                "Profile \"{profile}\": access key {} in the OS keychain.",
                keys.access_key_id.masked()
            ),
            Ok(None) => println!(
                "Profile \"{profile}\": no keys in the OS keychain; the credentials file is used if it has them."
            ),
            Err(err) => println!(
                "Profile \"{profile}\": {err}; the credentials file is used if it has them."
            ),
        },
    }
    Ok(())
}

fn read_keys(access_key_id: Option<String>, from_stdin: bool) -> anyhow::Result<LongTermKeys> {
    let interactive = !from_stdin && std::io::stdin().is_terminal();
    let access_key_id = match access_key_id {
        Some(id) => id,
        None if interactive => {
            eprint!("AWS access key ID: ");
            std::io::stderr().flush()?;
            read_stdin_line()?
        }
        None => bail!("give --access-key-id when the secret comes from standard input"),
    };
    let access_key_id = access_key_id.trim().to_owned();
    if access_key_id.len() < 16 || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!(
            "the access key ID should be 16 or more letters and digits, such as AKIAIOSFODNN7EXAMPLE"
        );
    }
    let secret = if interactive {
        rpassword::prompt_password("AWS secret access key (not shown): ")
            .context("cannot read the secret access key")?
    } else {
        read_stdin_line()?
    };
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        bail!("the secret access key is empty");
    }
    Ok(LongTermKeys {
        access_key_id: AccessKeyId::new(access_key_id),
        secret_access_key: Secret::new(secret),
    })
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    Ok(line)
}
