//! Log lines of the library, sent to the executable's log function.
//!
//! The library links its own copies of std and `log`, whose records never
//! reach the executable's `tracing` subscriber. So the library's own lines,
//! the warnings that tao writes through `log`, and panic messages all go
//! through the [`LogFn`] that `amm_tray_open` installs.

use std::panic::PanicHookInfo;
use std::sync::OnceLock;

use aws_mock_metadata_tray_abi::{LogFn, LogLevel};

static HOST_LOG: OnceLock<LogFn> = OnceLock::new();

/// Forwards `log` records of the dependencies (tao) at this level or above.
const DEPENDENCY_LEVEL: log::LevelFilter = log::LevelFilter::Warn;

static DEPENDENCY_LOGGER: DependencyLogger = DependencyLogger;

/// Makes `log` the destination of every line the library logs, of `log`
/// records and of panic messages. Only the first call has an effect.
pub fn install(log: LogFn) {
    if HOST_LOG.set(log).is_err() {
        return;
    }
    std::panic::set_hook(Box::new(forward_panic));
    if log::set_logger(&DEPENDENCY_LOGGER).is_ok() {
        log::set_max_level(DEPENDENCY_LEVEL);
    }
}

pub fn error(message: &str) {
    send(LogLevel::Error, message);
}

pub fn warn(message: &str) {
    send(LogLevel::Warn, message);
}

pub fn info(message: &str) {
    send(LogLevel::Info, message);
}

fn send(level: LogLevel, message: &str) {
    match HOST_LOG.get() {
        // SAFETY: `amm_tray_open` requires a log function that stays
        // callable from any thread, and `message` is valid for the call.
        Some(log) => unsafe { log(level.code(), message.as_ptr(), message.len()) },
        // Only the unit tests of this crate run without an executable.
        None => eprintln!("{level:?}: {message}"),
    }
}

fn forward_panic(info: &PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|location| format!(" at {location}"))
        .unwrap_or_default();
    let message = info.payload_as_str().unwrap_or("no message");
    error(&format!("the tray library panicked{location}: {message}"));
}

struct DependencyLogger;

impl log::Log for DependencyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= DEPENDENCY_LEVEL
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        };
        send(level, &format!("{}: {}", record.target(), record.args()));
    }

    fn flush(&self) {}
}
