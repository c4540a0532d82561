//! The wall clock, behind a trait so that tests can move time by hand.
//!
//! Session expiry is compared against wall-clock time (not a monotonic
//! clock), because STS expiry is a wall-clock instant and a laptop that
//! sleeps must see its session as expired when it wakes.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that changes only when a test sets or advances it.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock mutex poisoned") += by;
    }

    pub fn set(&self, to: SystemTime) {
        *self.0.lock().expect("clock mutex poisoned") = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().expect("clock mutex poisoned")
    }
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SSZ` in UTC, dropping any fraction of a
/// second. botocore parses exactly this pattern, and the Rust and
/// JavaScript SDKs reject numeric offsets.
pub fn format_utc_seconds(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let at =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("the format description only names fields an OffsetDateTime has")
}

/// Truncates `t` to whole seconds since the Unix epoch.
pub fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_without_fraction_or_offset() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_860_400_750);
        assert_eq!(format_utc_seconds(t), "2025-12-04T15:00:00Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        assert_eq!(clock.now(), SystemTime::UNIX_EPOCH);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(5));
    }
}
