//! A per-level circuit breaker on the perf-core clock: after repeated failures the manager stops
//! calling a level for a backoff period (doubling up to a ceiling), then lets one call probe it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use perf_core::clock::SharedClock;

/// When a level is skipped and for how long.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::tiered::BreakerConfig;
///
/// let b = BreakerConfig::default();
/// assert_eq!((b.failures_to_open, b.min_backoff, b.max_backoff),
///            (3, Duration::from_millis(100), Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that mark a level down.
    pub failures_to_open: u32,
    /// First backoff period.
    pub min_backoff: Duration,
    /// Longest backoff period; it doubles from `min_backoff` on every failed probe.
    ///
    /// It bounds how long a level that is back stays unused: at most one period until the next
    /// probe, and one more if that probe meets a connection the outage broke. The default,
    /// 250 ms, keeps that well within a second (the `cache_redis_restart` benchmark: Redis
    /// killed and restarted under load); with 1 s, the default until 2026-12, L2 came back
    /// 0.95–0.99 s after the server did. A probe of a level that is still down costs one failed
    /// call per period.
    pub max_backoff: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
        }
    }
}

impl BreakerConfig {
    /// A breaker that opens after `failures` consecutive failures and backs off from `min` to
    /// `max`.
    pub fn new(failures: u32, min: Duration, max: Duration) -> Self {
        Self {
            failures_to_open: failures.max(1),
            min_backoff: min,
            max_backoff: max.max(min),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    /// While set and in the future, calls are refused.
    open_until: Option<Instant>,
    /// The backoff used at the last opening (doubles on each failed probe).
    backoff: Duration,
}

/// The breaker of one level.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    clock: SharedClock,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig, clock: SharedClock) -> Self {
        Self {
            config,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok(())` when the level may be called now; otherwise the time until it may.
    ///
    /// Once a backoff period has passed, the first caller gets through as a probe and the level
    /// stays closed to others for another period unless the probe succeeds.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let mut s = self.lock();
        let Some(until) = s.open_until else {
            return Ok(());
        };
        let now = self.clock.now();
        if now < until {
            return Err(until - now);
        }
        // Probe: keep the others out while it runs.
        s.open_until = Some(now + s.backoff);
        Ok(())
    }

    pub(crate) fn on_success(&self) {
        let mut s = self.lock();
        if s.consecutive_failures != 0 || s.open_until.is_some() {
            *s = State::default();
        }
    }

    pub(crate) fn on_failure(&self) {
        let mut s = self.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        if s.open_until.is_some() {
            // A failed probe: back off longer.
            s.backoff = (s.backoff * 2).min(self.config.max_backoff);
            s.open_until = Some(self.clock.now() + s.backoff);
        } else if s.consecutive_failures >= self.config.failures_to_open {
            s.backoff = self.config.min_backoff;
            s.open_until = Some(self.clock.now() + s.backoff);
        }
    }

    /// Whether the level is being skipped now.
    pub(crate) fn is_open(&self) -> bool {
        self.lock()
            .open_until
            .is_some_and(|until| self.clock.now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::clock::ManualClock;

    #[test]
    fn opens_after_failures_backs_off_and_probes() {
        let clock = ManualClock::new();
        let b = Breaker::new(
            BreakerConfig::new(2, Duration::from_millis(100), Duration::from_millis(300)),
            clock.shared(),
        );
        assert!(b.admit().is_ok());
        b.on_failure();
        assert!(b.admit().is_ok(), "one failure does not open");
        b.on_failure();
        assert_eq!(b.admit(), Err(Duration::from_millis(100)));
        clock.advance(Duration::from_millis(99));
        assert!(b.admit().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(b.admit().is_ok(), "the probe gets through");
        assert!(b.admit().is_err(), "others wait while it runs");
        b.on_failure();
        assert_eq!(
            b.admit(),
            Err(Duration::from_millis(200)),
            "backoff doubled"
        );
        clock.advance(Duration::from_millis(200));
        assert!(b.admit().is_ok());
        b.on_failure();
        assert_eq!(b.admit(), Err(Duration::from_millis(300)), "capped");
        clock.advance(Duration::from_millis(300));
        assert!(b.admit().is_ok());
        b.on_success();
        assert!(!b.is_open());
        assert!(b.admit().is_ok() && b.admit().is_ok());
    }
}
