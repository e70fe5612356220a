//! The store's wall clock, injected through [`crate::DbOptions::clock`] so tests can fake it.
//!
//! Time is the clock's, never the newest sample's: the future bound of the appender, the
//! out-of-order window, the head cut and retention are all measured from [`Clock::now_ms`],
//! so one sample stamped far in the future cannot make the store reject later writes or
//! delete data younger than its retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The oldest timestamp the store accepts: -2^62 ms (about 146 million years before 1970).
/// It keeps every window computation (block ranges, retention, the out-of-order window) far
/// from `i64::MIN`, which the head also uses as "no sample yet".
pub const MIN_TIMESTAMP: i64 = i64::MIN / 2;

/// A source of the current time in milliseconds since the Unix epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Arc::new(system_now_ms))
    }

    /// A clock answering `f()`.
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// A clock that answers what the returned cell holds (for tests: set it to move time).
    pub fn manual(start_ms: i64) -> (Clock, Arc<AtomicI64>) {
        let cell = Arc::new(AtomicI64::new(start_ms));
        let c = cell.clone();
        (Clock(Arc::new(move || c.load(Ordering::Relaxed))), cell)
    }

    /// Now, in ms since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(now = {} ms)", self.now_ms())
    }
}

fn system_now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_manual() {
        let now = Clock::system().now_ms();
        assert!(now > 1_700_000_000_000, "{now}");
        let (c, cell) = Clock::manual(5);
        assert_eq!(c.now_ms(), 5);
        cell.store(7, Ordering::Relaxed);
        assert_eq!(c.clone().now_ms(), 7);
    }
}
