//! The menu-bar icon of aws-mock-metadata, built as a shared library
//! (`libaws_mock_metadata_tray.so`, `.dylib` on macOS).
//!
//! The executable loads it at run time, only when it shows the tray, so
//! that headless runs never map GTK, AppIndicator and their libraries, and
//! run on machines without them. The exported `amm_tray_*` functions
//! implement the C ABI of `aws-mock-metadata-tray-abi`. Every one that can
//! panic catches the panic, because unwinding out of an `extern "C"`
//! function aborts the process.

mod event_loop;
mod host_log;
pub mod icons;
pub mod menu;

use std::any::Any;
use std::convert::Infallible;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::null_mut;
use std::sync::{Mutex, MutexGuard};

use aws_mock_metadata_tray_abi::{
    self as abi, ABI_VERSION, CommandFn, ErrorBuffer, EventLoopHandle, LogFn, ProxyHandle,
    RawStatus,
};
use tao::event_loop::{EventLoop, EventLoopProxy};

use event_loop::UserEvent;

/// The value behind a `ProxyHandle`. The executable posts through it from
/// its runtime threads, so it must be `Send` and `Sync`.
type Proxy = Mutex<EventLoopProxy<UserEvent>>;

// The exported functions must have the types that the executable reads
// them as.
const _: abi::AbiVersionFn = amm_tray_abi_version;
const _: abi::OpenFn = amm_tray_open;
const _: abi::EventLoopFreeFn = amm_tray_event_loop_free;
const _: abi::ProxyNewFn = amm_tray_proxy_new;
const _: abi::ProxyPostStatusFn = amm_tray_proxy_post_status;
const _: abi::ProxyPostRuntimeStoppedFn = amm_tray_proxy_post_runtime_stopped;
const _: abi::ProxyFreeFn = amm_tray_proxy_free;
const _: abi::RunFn = amm_tray_run;
const _: () = assert_send_sync::<Proxy>();

const fn assert_send_sync<T: Send + Sync>() {}

/// Returns [`ABI_VERSION`].
#[unsafe(no_mangle)]
pub extern "C" fn amm_tray_abi_version() -> u32 {
    ABI_VERSION
}

/// Creates the event loop; see [`abi::OpenFn`].
///
/// # Safety
/// Call it on the main thread. `log` must stay callable from any thread
/// until the process exits, and `error` must be null or point to a valid
/// [`ErrorBuffer`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn amm_tray_open(
    log: LogFn,
    error: *mut ErrorBuffer<'_>,
) -> *mut EventLoopHandle {
    let opened = catch_unwind(|| {
        host_log::install(log);
        event_loop::open()
    });
    let message = match opened {
        Ok(Ok(event_loop)) => return Box::into_raw(Box::new(event_loop)).cast(),
        Ok(Err(message)) => message,
        Err(panic) => panic_message(&*panic),
    };
    // SAFETY: the caller passes a valid buffer or null.
    unsafe { report(error, &message) };
    null_mut()
}

/// Frees an event loop that [`amm_tray_open`] returned and that was not run.
///
/// # Safety
/// `event_loop` must be null or a handle from [`amm_tray_open`] that was
/// neither run nor freed. Call it on the main thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn amm_tray_event_loop_free(event_loop: *mut EventLoopHandle) {
    if event_loop.is_null() {
        return;
    }
    // SAFETY: the caller passes a live handle from `amm_tray_open`, which
    // boxed an `EventLoop<UserEvent>`.
    let event_loop = unsafe { Box::from_raw(event_loop.cast::<EventLoop<UserEvent>>()) };
    let _ = catch_unwind(AssertUnwindSafe(|| drop(event_loop)));
}

/// Creates a proxy handle for posting to the event loop from any thread.
///
/// # Safety
/// `event_loop` must be null or a live handle from [`amm_tray_open`]. Call
/// it on the main thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn amm_tray_proxy_new(
    event_loop: *const EventLoopHandle,
) -> *mut ProxyHandle {
    // SAFETY: the caller passes null or a live handle, which points to an
    // `EventLoop<UserEvent>`.
    let Some(event_loop) = (unsafe { event_loop.cast::<EventLoop<UserEvent>>().as_ref() }) else {
        return null_mut();
    };
    catch_unwind(AssertUnwindSafe(|| {
        let proxy: Proxy = Mutex::new(event_loop.create_proxy());
        Box::into_raw(Box::new(proxy)).cast()
    }))
    .unwrap_or(null_mut())
}

/// Posts a status to the event loop. Returns false once the loop has
/// stopped. An invalid status is logged and dropped.
///
/// # Safety
/// `proxy` must be null or a live handle from [`amm_tray_proxy_new`], and
/// `status` null or a valid [`RawStatus`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn amm_tray_proxy_post_status(
    proxy: *const ProxyHandle,
    status: *const RawStatus<'_>,
) -> bool {
    // SAFETY: the caller passes null or valid pointers.
    let (Some(proxy), Some(status)) = (unsafe { proxy.cast::<Proxy>().as_ref() }, unsafe {
        status.as_ref()
    }) else {
        return false;
    };
    catch_unwind(|| {
        // SAFETY: the caller passes a valid record.
        match unsafe { status.to_status() } {
            Ok(status) => lock(proxy).send_event(UserEvent::Status(status)).is_ok(),
            Err(err) => {
                host_log::warn(&format!("the tray ignored an invalid status: {err}"));
                true
            }
        }
    })
    .unwrap_or(false)
}

/// Tells the event loop that the runtime has stopped, so the app exits.
///
/// # Safety
/// `proxy` must be null or a live handle from [`amm_tray_proxy_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn amm_tray_proxy_post_runtime_stopped(proxy: *const ProxyHandle) {
    // SAFETY: the caller passes null or a live handle.
    if let Some(proxy) = unsafe { proxy.cast::<Proxy>().as_ref() } {
        let _ = catch_unwind(|| lock(proxy).send_event(UserEvent::RuntimeStopped));
    }
}

/// Frees a proxy handle.
///
/// # Safety
/// `proxy` must be null or a handle from [`amm_tray_proxy_new`] that is not
/// used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn amm_tray_proxy_free(proxy: *mut ProxyHandle) {
    if proxy.is_null() {
        return;
    }
    // SAFETY: the caller passes a handle from `amm_tray_proxy_new`, which
    // boxed a `Proxy`, and gives up its use.
    let proxy = unsafe { Box::from_raw(proxy.cast::<Proxy>()) };
    let _ = catch_unwind(AssertUnwindSafe(|| drop(proxy)));
}

/// Runs the event loop; see [`abi::RunFn`]. Returns only when the loop
/// could not run.
///
/// # Safety
/// Call it on the main thread. `event_loop` must be a handle from
/// [`amm_tray_open`] that was neither run nor freed. This call consumes it.
/// `initial` must be a valid [`RawStatus`], `on_command` must accept
/// `context` on the main thread until the process exits, and `error` must be
/// null or point to a valid [`ErrorBuffer`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn amm_tray_run(
    event_loop: *mut EventLoopHandle,
    initial: *const RawStatus<'_>,
    on_command: CommandFn,
    context: *mut c_void,
    error: *mut ErrorBuffer<'_>,
) {
    let ran = catch_unwind(AssertUnwindSafe(|| -> Result<Infallible, String> {
        if event_loop.is_null() {
            return Err("the tray was given no event loop".to_owned());
        }
        // SAFETY: the caller passes a live handle from `amm_tray_open` and
        // gives up its ownership.
        let event_loop = unsafe { *Box::from_raw(event_loop.cast::<EventLoop<UserEvent>>()) };
        // SAFETY: the caller passes a valid record.
        let initial = match unsafe { initial.as_ref() } {
            Some(raw) => unsafe { raw.to_status() }
                .map_err(|err| format!("the tray was given an invalid status: {err}"))?,
            None => return Err("the tray was given no initial status".to_owned()),
        };
        // SAFETY: the caller keeps `on_command` and `context` valid on
        // this thread for as long as the loop runs.
        let commands = move |command: abi::Command| unsafe { on_command(context, command.code()) };
        event_loop::run(event_loop, initial, commands)
    }));
    let message = match ran {
        Ok(Err(message)) => message,
        Err(panic) => panic_message(&*panic),
    };
    // SAFETY: the caller passes a valid buffer or null.
    unsafe { report(error, &message) };
}

/// Writes `message` into the caller's error buffer, if there is one.
///
/// # Safety
/// `error` must be null or point to a valid [`ErrorBuffer`].
unsafe fn report(error: *mut ErrorBuffer<'_>, message: &str) {
    // SAFETY: guaranteed by the caller.
    if let Some(error) = unsafe { error.as_mut() } {
        error.write(message);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("the tray library panicked: {detail}")
}

/// Locks a proxy. A poisoned lock is still usable, because sending an
/// event leaves the proxy consistent.
fn lock(proxy: &Proxy) -> MutexGuard<'_, EventLoopProxy<UserEvent>> {
    proxy
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::SystemTime;

    use aws_mock_metadata_tray_abi::{Phase, Status};

    #[test]
    fn abi_version_matches_the_abi_crate() {
        assert_eq!(amm_tray_abi_version(), ABI_VERSION);
    }

    #[test]
    fn null_handles_are_rejected() {
        let status = Status {
            profile: "dev".to_owned(),
            phase: Phase::Valid,
            expiration: Some(SystemTime::now()),
        };
        let raw = status.to_raw();
        // SAFETY: null handles and a live record are valid arguments.
        unsafe {
            assert!(amm_tray_proxy_new(std::ptr::null()).is_null());
            assert!(!amm_tray_proxy_post_status(std::ptr::null(), &raw));
            amm_tray_proxy_post_runtime_stopped(std::ptr::null());
            amm_tray_proxy_free(null_mut());
            amm_tray_event_loop_free(null_mut());
        }
    }

    #[test]
    fn run_without_event_loop_reports_error() {
        unsafe extern "C" fn never_called(_context: *mut c_void, _command: u32) -> bool {
            unreachable!("no loop runs, so no command is sent")
        }
        let status = Status {
            profile: "dev".to_owned(),
            phase: Phase::NoSession,
            expiration: None,
        };
        let raw = status.to_raw();
        let mut storage = [0; 128];
        let mut error = ErrorBuffer::new(&mut storage);
        // SAFETY: a null event loop is rejected before anything else is used.
        unsafe { amm_tray_run(null_mut(), &raw, never_called, null_mut(), &mut error) };
        assert_eq!(error.message(), "the tray was given no event loop");
    }

    #[test]
    fn panic_message_reads_payload() {
        let from_str: Box<dyn Any + Send> = Box::new("boom");
        let from_string: Box<dyn Any + Send> = Box::new(String::from("bang"));
        let other: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(&*from_str), "the tray library panicked: boom");
        assert_eq!(
            panic_message(&*from_string),
            "the tray library panicked: bang"
        );
        assert_eq!(
            panic_message(&*other),
            "the tray library panicked: no message"
        );
    }
}
