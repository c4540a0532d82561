//! The menu-bar icon, loaded at run time from the tray library
//! (`libaws_mock_metadata_tray.so`, `.dylib` on macOS, built from tray/).
//!
//! The tray links GTK and AppIndicator on Linux, about 60 shared libraries
//! that a headless run has no use for. Keeping them in a library that is
//! loaded only when the icon is shown lets the executable start, and run
//! headless, on machines without them. The two talk through the C ABI of
//! `aws-mock-metadata-tray-abi`: tao's event loop still runs on the main
//! thread, the runtime posts to it through proxy handles, and menu choices
//! come back through [`forward_command`].
//!
//! The library is looked up at the path in `AWS_MOCK_METADATA_TRAY_LIB`,
//! else next to the executable and, on macOS, in `../Frameworks` inside
//! the app bundle. It is loaded once and never unloaded, because GTK
//! cannot be unloaded safely and the proxies use it until the process exits.

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use aws_mock_metadata_tray_abi::{
    self as abi, ABI_VERSION, Command, ErrorBuffer, EventLoopHandle, LogLevel, ProxyHandle, symbols,
};
use libloading::Library;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info, trace, warn};

use crate::gui::{GuiCommand, GuiEvents};
use crate::session::{Phase, Status};

/// Environment variable with the path of the tray library, which replaces
/// the search next to the executable.
pub const LIBRARY_PATH_ENV: &str = "AWS_MOCK_METADATA_TRAY_LIB";

/// File name of the tray library, as cargo builds it.
pub const LIBRARY_FILE_NAME: &str = if cfg!(target_os = "macos") {
    "libaws_mock_metadata_tray.dylib"
} else {
    "libaws_mock_metadata_tray.so"
};

const BUILD_HINT: &str = "build it next to the executable with `cargo build --release --workspace` \
     (scripts/run does), or set AWS_MOCK_METADATA_TRAY_LIB to its path";

/// Room for an error message from the library, in bytes.
const ERROR_CAPACITY: usize = 1024;

/// An error that keeps the tray from being shown.
#[derive(Debug, thiserror::Error)]
pub enum TrayError {
    #[error("tray library not found ({}); {BUILD_HINT}", searched_text(.searched))]
    NotFound { searched: Vec<PathBuf> },
    /// `detail` is the loader's message, such as "libgtk-3.so.0: cannot
    /// open shared object file".
    #[error("cannot load the tray library {}: {detail}; {}", .path.display(), load_hint(.path, .detail))]
    Load { path: PathBuf, detail: String },
    /// The file is cut short or is not a shared library for this machine.
    /// Loading such a file can kill the process (SIGBUS), so it is checked
    /// before it is passed to the dynamic loader.
    #[error("the tray library {} is damaged: {detail}; {BUILD_HINT}", .path.display())]
    Damaged { path: PathBuf, detail: String },
    /// GTK loaded but AppIndicator, which the tray loads at run time, is missing.
    #[error(
        "AppIndicator is not installed ({detail}); install it (on Debian and Ubuntu: \
         libayatana-appindicator3-1), or run with --headless"
    )]
    NoAppIndicator { detail: String },
    #[error(
        "{} is not a tray library of aws-mock-metadata: symbol {symbol} not found; {BUILD_HINT}",
        .path.display()
    )]
    MissingSymbol { path: PathBuf, symbol: String },
    #[error(
        "the tray library {} has ABI version {found}, but this executable needs version {expected}; \
         rebuild both with `cargo build --release --workspace`",
        .path.display()
    )]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The library could not create its event loop, for example because
    /// the display cannot be opened. The value is the library's message.
    #[error("{0}")]
    Open(String),
    #[error("the tray library could not create a proxy for its event loop")]
    Proxy,
    /// The event loop could not run. The value is the library's message.
    #[error("the tray stopped: {0}")]
    Stopped(String),
}

fn searched_text(searched: &[PathBuf]) -> String {
    if searched.is_empty() {
        return "the path of the executable is unknown".to_owned();
    }
    let paths: Vec<String> = searched
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    format!("looked for {}", paths.join(" and "))
}

/// Returns the advice for a library the dynamic loader rejected. The
/// loader names the file that failed. When it is another file, a dependency
/// is missing or broken, so GTK needs installing. When it is the tray
/// library itself, the library needs a rebuild.
fn load_hint(path: &Path, detail: &str) -> &'static str {
    let dependency_failed = !detail.contains(&format!("{}:", path.display()));
    if cfg!(target_os = "linux") && dependency_failed {
        "install GTK 3 and AppIndicator (on Debian: libgtk-3-0 and libayatana-appindicator3-1), \
         or run with --headless"
    } else {
        "rebuild it with `cargo build --release --workspace`, or run with --headless"
    }
}

/// The library's functions, valid for the life of the process.
struct Api {
    open: abi::OpenFn,
    event_loop_free: abi::EventLoopFreeFn,
    proxy_new: abi::ProxyNewFn,
    proxy_post_status: abi::ProxyPostStatusFn,
    proxy_post_runtime_stopped: abi::ProxyPostRuntimeStoppedFn,
    proxy_free: abi::ProxyFreeFn,
    run: abi::RunFn,
}

/// Returns where to look for the tray library, in order: only the path
/// from the environment when it is set, else next to `executable` and, in
/// a macOS bundle, in `Contents/Frameworks`.
fn candidate_paths(
    executable: Option<&Path>,
    from_env: Option<PathBuf>,
    in_app_bundle: bool,
) -> Vec<PathBuf> {
    if let Some(path) = from_env {
        return vec![path];
    }
    let Some(directory) = executable.and_then(Path::parent) else {
        return Vec::new();
    };
    let mut paths = vec![directory.join(LIBRARY_FILE_NAME)];
    if in_app_bundle {
        paths.push(directory.join("../Frameworks").join(LIBRARY_FILE_NAME));
    }
    paths
}

/// Finds and loads the tray library.
fn load() -> Result<&'static Api, TrayError> {
    let executable = std::env::current_exe().ok();
    let from_env = std::env::var_os(LIBRARY_PATH_ENV)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let candidates = candidate_paths(executable.as_deref(), from_env, cfg!(target_os = "macos"));
    load_first(&candidates)
}

/// Loads the first of `candidates` that exists.
fn load_first(candidates: &[PathBuf]) -> Result<&'static Api, TrayError> {
    let path = candidates
        .iter()
        .find(|path| path.is_file())
        .ok_or_else(|| TrayError::NotFound {
            searched: candidates.to_vec(),
        })?;
    load_from(path)
}

fn load_from(path: &Path) -> Result<&'static Api, TrayError> {
    debug!(path = %path.display(), "loading the tray library");
    #[cfg(target_os = "linux")]
    {
        let bytes = std::fs::read(path).map_err(|err| TrayError::Load {
            path: path.to_owned(),
            detail: err.to_string(),
        })?;
        check_elf_complete(&bytes).map_err(|detail| TrayError::Damaged {
            path: path.to_owned(),
            detail,
        })?;
    }
    // SAFETY: loading runs the initialisers of the library and of what it
    // links (GTK and friends on Linux), which are made to be loaded into
    // any process.
    let library = unsafe { Library::new(path) }.map_err(|err| TrayError::Load {
        path: path.to_owned(),
        detail: error_chain(&err),
    })?;
    // Never unloaded, not even after an error below: see the module
    // documentation.
    let library: &'static Library = Box::leak(Box::new(library));

    // SAFETY: every ABI version gives this symbol this type.
    let abi_version: abi::AbiVersionFn = unsafe { symbol(library, path, symbols::ABI_VERSION)? };
    // SAFETY: the function takes no arguments and only returns a number.
    check_abi_version(path, unsafe { abi_version() })?;
    // SAFETY: the library implements ABI_VERSION, which gives each symbol
    // the type it is read as here.
    let api = unsafe {
        Api {
            open: symbol(library, path, symbols::OPEN)?,
            event_loop_free: symbol(library, path, symbols::EVENT_LOOP_FREE)?,
            proxy_new: symbol(library, path, symbols::PROXY_NEW)?,
            proxy_post_status: symbol(library, path, symbols::PROXY_POST_STATUS)?,
            proxy_post_runtime_stopped: symbol(library, path, symbols::PROXY_POST_RUNTIME_STOPPED)?,
            proxy_free: symbol(library, path, symbols::PROXY_FREE)?,
            run: symbol(library, path, symbols::RUN)?,
        }
    };
    info!(path = %path.display(), "tray library loaded");
    Ok(Box::leak(Box::new(api)))
}

/// Checks that `bytes` is a 64-bit little-endian ELF file that contains
/// every segment its program headers name. glibc maps the segments of a cut-short
/// file past its end, and the first read there kills the process (SIGBUS).
#[cfg(target_os = "linux")]
fn check_elf_complete(bytes: &[u8]) -> Result<(), String> {
    const PT_LOAD: u32 = 1;
    let read_u16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let read_u32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let read_u64 = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };

    if !bytes.starts_with(b"\x7fELF") {
        return Err("not an ELF shared library".to_owned());
    }
    // EI_CLASS 2 is 64-bit, EI_DATA 1 little-endian.
    if bytes.get(4..6) != Some(&[2, 1]) {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }

    let too_short = || format!("the file is cut short at {} bytes", bytes.len());
    let header_table = read_u64(0x20).ok_or_else(too_short)?;
    let entry_size = u64::from(read_u16(0x36).ok_or_else(too_short)?);
    let entries = u64::from(read_u16(0x38).ok_or_else(too_short)?);
    let length = bytes.len() as u64;
    let table_end = entry_size
        .checked_mul(entries)
        .and_then(|size| size.checked_add(header_table));
    if entry_size < 56 || table_end.is_none_or(|end| end > length) {
        return Err(too_short());
    }

    for index in 0..entries {
        let entry = usize::try_from(header_table + index * entry_size).map_err(|_| too_short())?;
        if read_u32(entry) != Some(PT_LOAD) {
            continue;
        }
        let offset = read_u64(entry + 8).ok_or_else(too_short)?;
        let size = read_u64(entry + 32).ok_or_else(too_short)?;
        if offset.checked_add(size).is_none_or(|end| end > length) {
            return Err(too_short());
        }
    }
    Ok(())
}

/// Loads AppIndicator as the tray library would, under the same names. The
/// tray loads it only when it creates the icon, and panics there when it is
/// missing, so the check comes first.
#[cfg(target_os = "linux")]
fn check_app_indicator() -> Result<(), TrayError> {
    let mut failures = Vec::new();
    for name in ["libayatana-appindicator3.so.1", "libappindicator3.so.1"] {
        // SAFETY: AppIndicator's initialisers are made to run in any GTK
        // process, and the tray would load the same file next.
        match unsafe { Library::new(name) } {
            Ok(library) => {
                // Kept loaded, as the tray library is.
                std::mem::forget(library);
                return Ok(());
            }
            Err(err) => failures.push(error_chain(&err)),
        }
    }
    Err(TrayError::NoAppIndicator {
        detail: failures.join("; "),
    })
}

/// Joins an error and its sources: libloading's own message is only
/// "dlopen failed", and the reason is in its source.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads the function `name` (NUL-terminated) from `library`.
///
/// # Safety
/// `T` must be the function pointer type of the symbol.
unsafe fn symbol<T: Copy>(
    library: &'static Library,
    path: &Path,
    name: &[u8],
) -> Result<T, TrayError> {
    // SAFETY: the caller guarantees the type; the library stays loaded, so
    // the copied pointer never dangles.
    unsafe { library.get::<T>(name) }
        .map(|function| *function)
        .map_err(|_| TrayError::MissingSymbol {
            path: path.to_owned(),
            symbol: String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name)).into_owned(),
        })
}

fn check_abi_version(path: &Path, found: u32) -> Result<(), TrayError> {
    if found == ABI_VERSION {
        return Ok(());
    }
    Err(TrayError::AbiMismatch {
        path: path.to_owned(),
        found,
        expected: ABI_VERSION,
    })
}

/// The tray library's event loop, opened on the main thread and run there.
pub struct Gui {
    api: &'static Api,
    event_loop: NonNull<EventLoopHandle>,
}

impl Gui {
    /// Loads the tray library and creates its event loop on the calling
    /// thread, which must be the main thread.
    pub fn open() -> Result<Self, TrayError> {
        let api = load()?;
        #[cfg(target_os = "linux")]
        check_app_indicator()?;
        let mut storage = [0; ERROR_CAPACITY];
        let mut error = ErrorBuffer::new(&mut storage);
        // SAFETY: the caller is on the main thread, `forward_log` can be
        // called from any thread for the life of the process, and `error`
        // is a live buffer.
        let event_loop = unsafe { (api.open)(forward_log, &mut error) };
        match NonNull::new(event_loop) {
            Some(event_loop) => Ok(Self { api, event_loop }),
            None => Err(TrayError::Open(error.message())),
        }
    }

    /// Returns the handle through which the runtime reaches this loop.
    pub fn events(&self) -> Result<Box<dyn GuiEvents>, TrayError> {
        // SAFETY: this is the main thread (`Gui` is not `Send`), and the
        // event loop handle is live until `run` or `drop`.
        let proxy = unsafe { (self.api.proxy_new)(self.event_loop.as_ptr()) };
        let proxy = NonNull::new(proxy).ok_or(TrayError::Proxy)?;
        Ok(Box::new(TrayProxy {
            api: self.api,
            proxy,
        }))
    }

    /// Runs the event loop; it exits the process (status 0) once the
    /// runtime reports that it has stopped. Returns only when the loop
    /// could not run.
    pub fn run(self, initial: &Status, commands: UnboundedSender<GuiCommand>) -> TrayError {
        // `amm_tray_run` consumes the event loop, so `drop` must not free it.
        let gui = ManuallyDrop::new(self);
        let status = abi_status(initial);
        let raw_status = status.to_raw();
        let context = Box::into_raw(Box::new(commands));
        let mut storage = [0; ERROR_CAPACITY];
        let mut error = ErrorBuffer::new(&mut storage);
        // SAFETY: this is the main thread, the event loop handle is live
        // and given up here, the status and buffer outlive the call, and
        // `context` is the sender that `forward_command` expects.
        unsafe {
            (gui.api.run)(
                gui.event_loop.as_ptr(),
                &raw_status,
                forward_command,
                context.cast(),
                &mut error,
            );
        }
        // SAFETY: `run` has returned, so the library no longer uses
        // `context`, which came from `Box::into_raw` above.
        drop(unsafe { Box::from_raw(context) });
        TrayError::Stopped(error.message())
    }
}

impl Drop for Gui {
    fn drop(&mut self) {
        // SAFETY: the handle was neither run (`run` skips this drop) nor
        // freed, and `Gui` stays on the main thread.
        unsafe { (self.api.event_loop_free)(self.event_loop.as_ptr()) };
    }
}

/// The runtime's handle to post to the library's event loop.
struct TrayProxy {
    api: &'static Api,
    proxy: NonNull<ProxyHandle>,
}

// SAFETY: the ABI lets any thread post through a proxy handle, and the
// library checks at compile time that what it points to is `Send + Sync`.
unsafe impl Send for TrayProxy {}
unsafe impl Sync for TrayProxy {}

impl GuiEvents for TrayProxy {
    fn status(&self, status: Status) -> bool {
        let status = abi_status(&status);
        let raw_status = status.to_raw();
        // SAFETY: the proxy handle is live until `drop`, and the record
        // borrows `status` for the call.
        unsafe { (self.api.proxy_post_status)(self.proxy.as_ptr(), &raw_status) }
    }

    fn runtime_stopped(&self) {
        // SAFETY: the proxy handle is live until `drop`.
        unsafe { (self.api.proxy_post_runtime_stopped)(self.proxy.as_ptr()) };
    }
}

impl Drop for TrayProxy {
    fn drop(&mut self) {
        // SAFETY: the handle came from `amm_tray_proxy_new` and is not used
        // after this.
        unsafe { (self.api.proxy_free)(self.proxy.as_ptr()) };
    }
}

/// Returns the part of `status` that the tray shows.
fn abi_status(status: &Status) -> abi::Status {
    abi::Status {
        profile: status.profile.clone(),
        phase: match status.phase {
            Phase::NoSession => abi::Phase::NoSession,
            Phase::WaitingForCode => abi::Phase::WaitingForCode,
            Phase::Valid => abi::Phase::Valid,
            Phase::ExpiringSoon => abi::Phase::ExpiringSoon,
        },
        expiration: status.expiration,
    }
}

/// Logs a line from the tray library through this app's subscriber, with
/// this module as the target.
unsafe extern "C" fn forward_log(level: u32, message: *const u8, message_len: usize) {
    let _ = catch_unwind(|| {
        let bytes = if message.is_null() || message_len == 0 {
            &[][..]
        } else {
            // SAFETY: the ABI passes `message_len` bytes, valid for the call.
            unsafe { std::slice::from_raw_parts(message, message_len) }
        };
        let message = String::from_utf8_lossy(bytes);
        match LogLevel::from_code(level) {
            Some(LogLevel::Error) => error!("{message}"),
            Some(LogLevel::Warn) => warn!("{message}"),
            Some(LogLevel::Info) => info!("{message}"),
            Some(LogLevel::Debug) => debug!("{message}"),
            Some(LogLevel::Trace) => trace!("{message}"),
            None => warn!(level, "{message}"),
        }
    });
}

/// Sends a menu choice to the runtime. Returns false once the runtime has
/// stopped.
unsafe extern "C" fn forward_command(context: *mut c_void, command: u32) -> bool {
    catch_unwind(|| {
        // SAFETY: `Gui::run` passes a boxed sender as `context` and keeps it
        // alive while the loop runs.
        let Some(commands) = (unsafe { context.cast::<UnboundedSender<GuiCommand>>().as_ref() })
        else {
            return false;
        };
        let command = match Command::from_code(command) {
            Some(Command::EnterCode) => GuiCommand::EnterCode,
            Some(Command::ClearSession) => GuiCommand::ClearSession,
            Some(Command::Quit) => GuiCommand::Quit,
            None => {
                warn!(
                    code = command,
                    "ignored an unknown menu command from the tray library"
                );
                return true;
            }
        };
        commands.send(command).is_ok()
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::{Duration, SystemTime};

    use tokio::sync::mpsc;

    /// Returns the path of the libc this process has mapped, a real shared
    /// library without the tray's symbols.
    fn mapped_libc() -> PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("Linux has /proc/self/maps");
        let libc = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.contains("/libc.so") || path.contains("/libc-"))
            .expect("libc is mapped");
        PathBuf::from(libc)
    }

    #[test]
    fn library_path_from_environment_wins() {
        let paths = candidate_paths(
            Some(Path::new("/opt/amm/aws-mock-metadata")),
            Some(PathBuf::from("/elsewhere/tray.so")),
            true,
        );
        assert_eq!(paths, [PathBuf::from("/elsewhere/tray.so")]);
    }

    #[test]
    fn library_next_to_executable() {
        let paths = candidate_paths(Some(Path::new("/opt/amm/aws-mock-metadata")), None, false);
        assert_eq!(paths, [Path::new("/opt/amm").join(LIBRARY_FILE_NAME)]);
    }

    #[test]
    fn library_in_bundle_frameworks() {
        let executable =
            Path::new("/Applications/aws-mock-metadata.app/Contents/MacOS/aws-mock-metadata");
        let paths = candidate_paths(Some(executable), None, true);
        assert_eq!(
            paths,
            [
                Path::new("/Applications/aws-mock-metadata.app/Contents/MacOS")
                    .join(LIBRARY_FILE_NAME),
                Path::new("/Applications/aws-mock-metadata.app/Contents/MacOS/../Frameworks")
                    .join(LIBRARY_FILE_NAME),
            ]
        );
    }

    #[test]
    fn missing_library_says_how_to_build_it() {
        let missing = PathBuf::from("/nonexistent/aws-mock-metadata/libaws_mock_metadata_tray.so");
        let Err(err) = load_first(std::slice::from_ref(&missing)) else {
            panic!("a missing library was loaded");
        };
        assert!(matches!(err, TrayError::NotFound { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("cargo build --release --workspace"),
            "{message}"
        );
        assert!(message.contains(LIBRARY_PATH_ENV), "{message}");
    }

    #[test]
    fn unknown_executable_path_is_reported() {
        let err = load_first(&[]).err().expect("nothing to load");
        assert!(
            err.to_string()
                .starts_with("tray library not found (the path of the executable is unknown)"),
            "{err}"
        );
    }

    #[test]
    fn other_library_is_rejected() {
        let libc = mapped_libc();
        let Err(err) = load_from(&libc) else {
            panic!("libc was accepted as the tray library");
        };
        assert!(
            matches!(&err, TrayError::MissingSymbol { symbol, .. } if symbol == "amm_tray_abi_version"),
            "{err:?}"
        );
        assert!(err.to_string().contains("not a tray library"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn text_file_is_reported_as_damaged() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join(LIBRARY_FILE_NAME);
        std::fs::write(&path, b"not a shared library").expect("write the file");
        let Err(err) = load_first(std::slice::from_ref(&path)) else {
            panic!("a text file was loaded as the tray library");
        };
        assert!(matches!(err, TrayError::Damaged { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("not an ELF shared library"), "{message}");
        assert!(
            message.contains("cargo build --release --workspace"),
            "{message}"
        );
    }

    /// A cut-short copy would make the dynamic loader map pages past the
    /// end of the file, and the process would die of SIGBUS.
    #[cfg(target_os = "linux")]
    #[test]
    fn truncated_library_is_rejected_before_loading() {
        let whole = std::fs::read(mapped_libc()).expect("read libc");
        assert_eq!(check_elf_complete(&whole), Ok(()));

        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join(LIBRARY_FILE_NAME);
        std::fs::write(&path, &whole[..whole.len() / 3]).expect("write the cut copy");
        let Err(err) = load_first(std::slice::from_ref(&path)) else {
            panic!("a truncated library was loaded");
        };
        assert!(matches!(err, TrayError::Damaged { .. }), "{err:?}");
        assert!(
            err.to_string().contains("the file is cut short at"),
            "{err}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn unloadable_library_names_the_reason() {
        // A position-independent executable is a complete ELF file that
        // glibc refuses to load as a library.
        let executable = std::env::current_exe().expect("the test binary has a path");
        let Err(err) = load_from(&executable) else {
            panic!("an executable was loaded as the tray library");
        };
        assert!(matches!(err, TrayError::Load { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot load the tray library {}: dlopen failed: ",
                executable.display()
            )),
            "{message}"
        );
        assert!(message.contains("rebuild it"), "{message}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn missing_dependency_advises_installing_gtk() {
        let path = Path::new("/opt/amm/libaws_mock_metadata_tray.so");
        let missing = "libgtk-3.so.0: cannot open shared object file: No such file or directory";
        assert!(load_hint(path, missing).contains("install GTK 3"));
        let empty = "dlopen failed: libgtk-3.so.0: file too short";
        assert!(load_hint(path, empty).contains("install GTK 3"));
        let damaged = "dlopen failed: /opt/amm/libaws_mock_metadata_tray.so: invalid ELF header";
        assert!(load_hint(path, damaged).contains("rebuild it"));
    }

    #[test]
    fn abi_version_mismatch_is_rejected() {
        let path = Path::new("/opt/amm/libaws_mock_metadata_tray.so");
        assert!(check_abi_version(path, ABI_VERSION).is_ok());
        let err = check_abi_version(path, ABI_VERSION + 1).expect_err("another version");
        let message = err.to_string();
        assert!(
            message.contains(&format!("has ABI version {}", ABI_VERSION + 1)),
            "{message}"
        );
        assert!(
            message.contains(&format!("needs version {ABI_VERSION}")),
            "{message}"
        );
        assert!(
            message.contains("cargo build --release --workspace"),
            "{message}"
        );
    }

    #[test]
    fn status_keeps_what_the_tray_shows() {
        let expiration = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cases = [
            (Phase::NoSession, abi::Phase::NoSession),
            (Phase::WaitingForCode, abi::Phase::WaitingForCode),
            (Phase::Valid, abi::Phase::Valid),
            (Phase::ExpiringSoon, abi::Phase::ExpiringSoon),
        ];
        for (phase, expected) in cases {
            let status = Status {
                profile: "dev".to_owned(),
                mfa_serial: "arn:aws:iam::123456789012:mfa/dev".to_owned(),
                phase,
                expiration: Some(expiration),
                pending: None,
            };
            let tray_status = abi_status(&status);
            assert_eq!(tray_status.profile, "dev");
            assert_eq!(tray_status.phase, expected);
            assert_eq!(tray_status.expiration, Some(expiration));
        }
    }

    #[test]
    fn menu_commands_reach_the_runtime() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let context: *mut c_void = (&raw const sender).cast_mut().cast();
        let cases = [
            (Command::EnterCode, GuiCommand::EnterCode),
            (Command::ClearSession, GuiCommand::ClearSession),
            (Command::Quit, GuiCommand::Quit),
        ];
        for (command, expected) in cases {
            // SAFETY: `context` points to a live sender.
            assert!(unsafe { forward_command(context, command.code()) });
            assert_eq!(receiver.try_recv(), Ok(expected));
        }
        // SAFETY: as above.
        assert!(unsafe { forward_command(context, 99) });
        assert!(receiver.try_recv().is_err());

        drop(receiver);
        // SAFETY: as above.
        assert!(!unsafe { forward_command(context, Command::Quit.code()) });
        // SAFETY: a null context is rejected.
        assert!(!unsafe { forward_command(std::ptr::null_mut(), Command::Quit.code()) });
    }
}
