//! The C ABI between the `aws-mock-metadata` executable and its tray library
//! (`libaws_mock_metadata_tray.so`, `.dylib` on macOS), which the executable
//! loads at run time only when it shows the menu-bar icon.
//!
//! The library exports the functions named in [`symbols`], with the types
//! below. Both sides compile this crate, so the definitions match as long
//! as both come from the same source tree. [`ABI_VERSION`] catches a
//! library from another build: the executable refuses a library whose
//! `amm_tray_abi_version` returns another number. Any change to a symbol,
//! a function type or a `#[repr(C)]` type here must raise it.
//!
//! Ownership crosses the boundary only through the opaque handles: the
//! library allocates them and frees them in its own functions. Strings and
//! status records are borrowed for the length of one call.

use std::ffi::c_void;
use std::fmt;
use std::marker::{PhantomData, PhantomPinned};
use std::time::{Duration, SystemTime};

/// Version of the ABI described in this crate.
pub const ABI_VERSION: u32 = 1;

/// Names of the exported functions, NUL-terminated for `dlsym`.
pub mod symbols {
    pub const ABI_VERSION: &[u8] = b"amm_tray_abi_version\0";
    pub const OPEN: &[u8] = b"amm_tray_open\0";
    pub const EVENT_LOOP_FREE: &[u8] = b"amm_tray_event_loop_free\0";
    pub const PROXY_NEW: &[u8] = b"amm_tray_proxy_new\0";
    pub const PROXY_POST_STATUS: &[u8] = b"amm_tray_proxy_post_status\0";
    pub const PROXY_POST_RUNTIME_STOPPED: &[u8] = b"amm_tray_proxy_post_runtime_stopped\0";
    pub const PROXY_FREE: &[u8] = b"amm_tray_proxy_free\0";
    pub const RUN: &[u8] = b"amm_tray_run\0";
}

/// `amm_tray_abi_version`: returns the library's [`ABI_VERSION`]. It is
/// the only function the executable calls before it checks the version.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;

/// `amm_tray_open`: creates the GUI event loop on the calling thread,
/// which must be the main thread, and installs `log` as the destination of
/// the library's log lines. Returns null when the display cannot be opened
/// or the library panicked, with the reason written to `error`.
pub type OpenFn =
    unsafe extern "C" fn(log: LogFn, error: *mut ErrorBuffer<'_>) -> *mut EventLoopHandle;

/// `amm_tray_event_loop_free`: frees an event loop that will not be run.
pub type EventLoopFreeFn = unsafe extern "C" fn(event_loop: *mut EventLoopHandle);

/// `amm_tray_proxy_new`: creates a handle through which any thread can post
/// to the event loop. Returns null if the library panicked.
pub type ProxyNewFn = unsafe extern "C" fn(event_loop: *const EventLoopHandle) -> *mut ProxyHandle;

/// `amm_tray_proxy_post_status`: sends a status for the icon and menu.
/// Returns false once the event loop has stopped.
pub type ProxyPostStatusFn =
    unsafe extern "C" fn(proxy: *const ProxyHandle, status: *const RawStatus<'_>) -> bool;

/// `amm_tray_proxy_post_runtime_stopped`: posts that the runtime has
/// stopped, so the event loop removes the icon and exits the process.
pub type ProxyPostRuntimeStoppedFn = unsafe extern "C" fn(proxy: *const ProxyHandle);

/// `amm_tray_proxy_free`: frees a proxy handle.
pub type ProxyFreeFn = unsafe extern "C" fn(proxy: *mut ProxyHandle);

/// `amm_tray_run`: shows the icon with the `initial` status and runs the
/// event loop, consuming `event_loop`. Menu choices go to `on_command`
/// with `context` on the main thread. It exits the process (status 0) after
/// a runtime-stopped post. It returns only when the loop could not run,
/// with the reason in `error`, and then it no longer uses `context`.
pub type RunFn = unsafe extern "C" fn(
    event_loop: *mut EventLoopHandle,
    initial: *const RawStatus<'_>,
    on_command: CommandFn,
    context: *mut c_void,
    error: *mut ErrorBuffer<'_>,
);

/// The executable's log function: `level` is a [`LogLevel`] code and
/// `message` is UTF-8, borrowed for the call. Any thread may call it.
pub type LogFn = unsafe extern "C" fn(level: u32, message: *const u8, message_len: usize);

/// The executable's handler for menu choices: `command` is a [`Command`]
/// code. Returns false once the runtime has stopped.
pub type CommandFn = unsafe extern "C" fn(context: *mut c_void, command: u32) -> bool;

/// The library's event loop, opaque to the executable.
#[repr(C)]
pub struct EventLoopHandle {
    _opaque: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// A thread-safe handle to post events to the library's event loop, opaque
/// to the executable.
#[repr(C)]
pub struct ProxyHandle {
    _opaque: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// The session phase that picks the icon and the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    NoSession = 0,
    /// No session, and an MFA request is open.
    WaitingForCode = 1,
    Valid = 2,
    /// Valid, but inside the renewal window.
    ExpiringSoon = 3,
}

impl Phase {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::NoSession),
            1 => Some(Self::WaitingForCode),
            2 => Some(Self::Valid),
            3 => Some(Self::ExpiringSoon),
            _ => None,
        }
    }
}

/// A menu choice sent to the executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Command {
    EnterCode = 1,
    ClearSession = 2,
    Quit = 3,
}

impl Command {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::EnterCode),
            2 => Some(Self::ClearSession),
            3 => Some(Self::Quit),
            _ => None,
        }
    }
}

/// Severity of a log line from the library, numbered as in the `log` crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl LogLevel {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Error),
            2 => Some(Self::Warn),
            3 => Some(Self::Info),
            4 => Some(Self::Debug),
            5 => Some(Self::Trace),
            _ => None,
        }
    }
}

/// The session state behind the tray's profile line, icon and status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub profile: String,
    pub phase: Phase,
    pub expiration: Option<SystemTime>,
}

impl Status {
    /// Returns the C form of this status, borrowing the profile name.
    pub fn to_raw(&self) -> RawStatus<'_> {
        // A time before 1970 is never a real expiry, so it becomes the
        // epoch and shows as expired.
        let since_epoch = self
            .expiration
            .map(|time| {
                time.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        RawStatus {
            profile: self.profile.as_ptr(),
            profile_len: self.profile.len(),
            phase: self.phase.code(),
            has_expiration: self.expiration.is_some(),
            expiration_secs: since_epoch.as_secs(),
            expiration_nanos: since_epoch.subsec_nanos(),
            _profile: PhantomData,
        }
    }
}

/// The C form of [`Status`]. The expiry is a time since the Unix epoch, and
/// is only meaningful when `has_expiration` is true.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawStatus<'a> {
    /// UTF-8 bytes of the profile name.
    pub profile: *const u8,
    pub profile_len: usize,
    /// A [`Phase`] code.
    pub phase: u32,
    pub has_expiration: bool,
    pub expiration_secs: u64,
    pub expiration_nanos: u32,
    _profile: PhantomData<&'a str>,
}

impl RawStatus<'_> {
    /// Copies the record into a [`Status`], checking every field.
    ///
    /// # Safety
    /// Unless `profile_len` is 0, `profile` must point to `profile_len`
    /// readable bytes, which [`Status::to_raw`] guarantees while its status
    /// is borrowed.
    pub unsafe fn to_status(&self) -> Result<Status, StatusError> {
        let profile = if self.profile_len == 0 {
            String::new()
        } else if self.profile.is_null() {
            return Err(StatusError::NullProfile);
        } else {
            // SAFETY: the caller guarantees `profile_len` readable bytes.
            let bytes = unsafe { std::slice::from_raw_parts(self.profile, self.profile_len) };
            String::from_utf8(bytes.to_vec()).map_err(|_| StatusError::ProfileNotUtf8)?
        };
        let phase = Phase::from_code(self.phase).ok_or(StatusError::UnknownPhase(self.phase))?;
        let expiration = if self.has_expiration {
            if self.expiration_nanos >= 1_000_000_000 {
                return Err(StatusError::InvalidExpiration);
            }
            let since_epoch = Duration::new(self.expiration_secs, self.expiration_nanos);
            let time = SystemTime::UNIX_EPOCH
                .checked_add(since_epoch)
                .ok_or(StatusError::InvalidExpiration)?;
            Some(time)
        } else {
            None
        };
        Ok(Status {
            profile,
            phase,
            expiration,
        })
    }
}

/// A field of a [`RawStatus`] that does not form a valid [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusError {
    NullProfile,
    ProfileNotUtf8,
    UnknownPhase(u32),
    InvalidExpiration,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NullProfile => f.write_str("the profile name is a null pointer"),
            Self::ProfileNotUtf8 => f.write_str("the profile name is not UTF-8"),
            Self::UnknownPhase(code) => write!(f, "unknown session phase code {code}"),
            Self::InvalidExpiration => f.write_str("the expiry time is out of range"),
        }
    }
}

impl std::error::Error for StatusError {}

/// A caller-owned buffer that a library function fills with an error
/// message, truncated to the buffer's capacity at a character boundary.
#[repr(C)]
pub struct ErrorBuffer<'a> {
    data: *mut u8,
    capacity: usize,
    len: usize,
    _storage: PhantomData<&'a mut [u8]>,
}

impl<'a> ErrorBuffer<'a> {
    /// Creates an empty buffer that writes into `storage`.
    pub fn new(storage: &'a mut [u8]) -> Self {
        Self {
            data: storage.as_mut_ptr(),
            capacity: storage.len(),
            len: 0,
            _storage: PhantomData,
        }
    }

    /// Replaces the contents with `message`, or as much of it as fits.
    pub fn write(&mut self, message: &str) {
        let mut end = message.len().min(self.capacity);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        // SAFETY: `new` took `data` and `capacity` from a slice that stays
        // mutably borrowed for 'a, and `end <= capacity`.
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), self.data, end) };
        self.len = end;
    }

    /// Returns the message written so far.
    pub fn message(&self) -> String {
        // SAFETY: the first `len` bytes of the storage were written by
        // `write`, and the storage is borrowed for 'a.
        let bytes = unsafe { std::slice::from_raw_parts(self.data, self.len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        let time = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_123, 456_789_012);
        let cases = [
            (Phase::NoSession, None),
            (Phase::WaitingForCode, None),
            (Phase::Valid, Some(time)),
            (Phase::ExpiringSoon, Some(time)),
            (Phase::Valid, Some(SystemTime::UNIX_EPOCH)),
        ];
        for (phase, expiration) in cases {
            let status = Status {
                profile: "dev-é".to_owned(),
                phase,
                expiration,
            };
            let raw = status.to_raw();
            // SAFETY: `raw` borrows `status`, which is alive.
            let back = unsafe { raw.to_status() };
            assert_eq!(back, Ok(status));
        }
    }

    #[test]
    fn status_empty_profile_round_trip() {
        let status = Status {
            profile: String::new(),
            phase: Phase::NoSession,
            expiration: None,
        };
        // SAFETY: the raw record borrows `status`, which is alive.
        assert_eq!(unsafe { status.to_raw().to_status() }, Ok(status.clone()));
    }

    #[test]
    fn raw_status_rejects_invalid_fields() {
        let status = Status {
            profile: "dev".to_owned(),
            phase: Phase::Valid,
            expiration: Some(SystemTime::UNIX_EPOCH),
        };

        let mut unknown_phase = status.to_raw();
        unknown_phase.phase = 4;
        // SAFETY: each raw record borrows `status`, which is alive.
        assert_eq!(
            unsafe { unknown_phase.to_status() },
            Err(StatusError::UnknownPhase(4))
        );

        let mut bad_nanos = status.to_raw();
        bad_nanos.expiration_nanos = 1_000_000_000;
        assert_eq!(
            unsafe { bad_nanos.to_status() },
            Err(StatusError::InvalidExpiration)
        );

        let mut null_profile = status.to_raw();
        null_profile.profile = std::ptr::null();
        assert_eq!(
            unsafe { null_profile.to_status() },
            Err(StatusError::NullProfile)
        );

        let latin1 = [0x64, 0xe9, 0x76];
        let mut not_utf8 = status.to_raw();
        not_utf8.profile = latin1.as_ptr();
        not_utf8.profile_len = latin1.len();
        assert_eq!(
            unsafe { not_utf8.to_status() },
            Err(StatusError::ProfileNotUtf8)
        );
    }

    #[test]
    fn codes_round_trip() {
        for phase in [
            Phase::NoSession,
            Phase::WaitingForCode,
            Phase::Valid,
            Phase::ExpiringSoon,
        ] {
            assert_eq!(Phase::from_code(phase.code()), Some(phase));
        }
        for command in [Command::EnterCode, Command::ClearSession, Command::Quit] {
            assert_eq!(Command::from_code(command.code()), Some(command));
        }
        for level in [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ] {
            assert_eq!(LogLevel::from_code(level.code()), Some(level));
        }
        assert_eq!(Phase::from_code(4), None);
        assert_eq!(Command::from_code(0), None);
        assert_eq!(LogLevel::from_code(0), None);
    }

    #[test]
    fn error_buffer_keeps_whole_message() {
        let mut storage = [0; 64];
        let mut buffer = ErrorBuffer::new(&mut storage);
        assert_eq!(buffer.message(), "");
        buffer.write("cannot open the display");
        assert_eq!(buffer.message(), "cannot open the display");
    }

    #[test]
    fn error_buffer_truncates_at_char_boundary() {
        let mut storage = [0; 4];
        let mut buffer = ErrorBuffer::new(&mut storage);
        // "é" is two bytes long, so four bytes hold only "abc".
        buffer.write("abcé");
        assert_eq!(buffer.message(), "abc");
    }

    #[test]
    fn symbols_are_nul_terminated() {
        for name in [
            symbols::ABI_VERSION,
            symbols::OPEN,
            symbols::EVENT_LOOP_FREE,
            symbols::PROXY_NEW,
            symbols::PROXY_POST_STATUS,
            symbols::PROXY_POST_RUNTIME_STOPPED,
            symbols::PROXY_FREE,
            symbols::RUN,
        ] {
            assert_eq!(name.last(), Some(&0));
            assert!(!name[..name.len() - 1].contains(&0));
        }
    }
}
