//! A testing aid: a clock that runs `OUTFLOW_CLOCK_FILE` seconds ahead of
//! the system clock, so tests of the real binary (crash and multi-process
//! tests) can make flow delays due without sleeping. Not for production:
//! `outflow serve` logs a warning when it is on.
//!
//! The file holds one number, an offset in seconds (may be fractional or
//! negative); a missing or unreadable file means 0. It is re-read at most
//! every [`REREAD`], so moving time takes effect within that interval.

use chrono::{DateTime, Duration, Utc};
use outflow_core::Clock;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The environment variable naming the offset file.
pub const ENV: &str = "OUTFLOW_CLOCK_FILE";

/// How often the offset file is read again.
pub const REREAD: std::time::Duration = std::time::Duration::from_millis(50);

pub struct OffsetFileClock {
    path: PathBuf,
    cached: Mutex<Option<(Instant, Duration)>>,
}

impl OffsetFileClock {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cached: Mutex::new(None),
        }
    }

    /// The clock named by `OUTFLOW_CLOCK_FILE`, if set.
    pub fn from_env() -> Option<Self> {
        std::env::var_os(ENV)
            .filter(|v| !v.is_empty())
            .map(Self::new)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Duration {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite())
            .map(|s| Duration::microseconds((s * 1e6) as i64))
            .unwrap_or_else(Duration::zero)
    }

    fn offset(&self) -> Duration {
        let Ok(mut c) = self.cached.lock() else {
            return self.read();
        };
        match *c {
            Some((at, off)) if at.elapsed() < REREAD => off,
            _ => {
                let off = self.read();
                *c = Some((Instant::now(), off));
                off
            }
        }
    }
}

impl Clock for OffsetFileClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_offset_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("offset");
        let clock = OffsetFileClock::new(&path);
        let d = clock.now() - Utc::now();
        assert!(d.num_seconds().abs() < 2, "no file means no offset");
        std::fs::write(&path, "3600\n").expect("write");
        std::thread::sleep(REREAD * 2);
        let d = clock.now() - Utc::now();
        assert!((3598..=3601).contains(&d.num_seconds()), "{d}");
    }
}
