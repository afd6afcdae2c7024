//! Per-item retry policy: exponential backoff with jitter and a retry predicate.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Decides whether an error is worth another attempt.
pub type RetryPredicate<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;

/// How failed items are retried.
///
/// Attempt `n` (counting retries from 1) waits `min(max_delay, base_delay × 2^(n−1))`, reduced by a
/// random share of up to `jitter` (0 = no jitter, 1 = anywhere between 0 and the full delay), so
/// many failing items do not retry in lockstep. Waits go through the processor's
/// [`Clock`](perf_core::clock::Clock), so tests drive them with a manual clock. A panicking item is
/// never retried.
///
/// ```
/// use std::time::Duration;
/// use perf_batch::RetryPolicy;
///
/// let policy: RetryPolicy<std::io::Error> = RetryPolicy::new(3, Duration::from_millis(100))
///     .with_jitter(0.0)
///     .retry_if(|e: &std::io::Error| e.kind() == std::io::ErrorKind::TimedOut);
/// assert_eq!(policy.delay(1), Duration::from_millis(100));
/// assert_eq!(policy.delay(3), Duration::from_millis(400));
/// assert!(policy.should_retry(&std::io::ErrorKind::TimedOut.into()));
/// assert!(!policy.should_retry(&std::io::ErrorKind::NotFound.into()));
/// ```
pub struct RetryPolicy<E> {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Upper bound of any one delay.
    pub max_delay: Duration,
    /// Share of the delay that is randomized, from 0 to 1.
    pub jitter: f64,
    predicate: Option<RetryPredicate<E>>,
}

impl<E> RetryPolicy<E> {
    /// `max_retries` retries starting at `base_delay`, at most 30 s apart, with 50 % jitter,
    /// retrying every error.
    pub fn new(max_retries: u32, base_delay: Duration) -> Self {
        Self {
            max_retries,
            base_delay,
            max_delay: Duration::from_secs(30),
            jitter: 0.5,
            predicate: None,
        }
    }

    /// No retries.
    pub fn none() -> Self {
        Self::new(0, Duration::ZERO)
    }

    /// Sets the share of each delay that is randomized (clamped to 0..=1).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Sets the upper bound of one delay.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Retries only errors for which `predicate` returns true.
    pub fn retry_if(mut self, predicate: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether `error` may be retried (the predicate, or true without one).
    pub fn should_retry(&self, error: &E) -> bool {
        self.predicate.as_ref().is_none_or(|p| p(error))
    }

    /// The delay before retry number `retry` (1-based), jitter included.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(32);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max_delay);
        if self.jitter <= 0.0 {
            return full;
        }
        let cut = self.jitter * unit_random();
        full.mul_f64(1.0 - cut)
    }
}

impl<E> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        Self {
            max_retries: self.max_retries,
            base_delay: self.base_delay,
            max_delay: self.max_delay,
            jitter: self.jitter,
            predicate: self.predicate.clone(),
        }
    }
}

impl<E> Default for RetryPolicy<E> {
    fn default() -> Self {
        Self::new(3, Duration::from_millis(200))
    }
}

impl<E> fmt::Debug for RetryPolicy<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_retries", &self.max_retries)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

/// A uniform number in [0, 1) from a splitmix64 sequence; jitter needs spread, not secrecy.
fn unit_random() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut seed = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    if seed == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        STATE.store(nanos | 1, Ordering::Relaxed);
        seed = nanos;
    }
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_cap() {
        let p: RetryPolicy<()> = RetryPolicy::new(10, Duration::from_millis(10))
            .with_jitter(0.0)
            .with_max_delay(Duration::from_millis(50));
        assert_eq!(p.delay(1), Duration::from_millis(10));
        assert_eq!(p.delay(2), Duration::from_millis(20));
        assert_eq!(p.delay(3), Duration::from_millis(40));
        assert_eq!(p.delay(4), Duration::from_millis(50));
        assert_eq!(p.delay(40), Duration::from_millis(50));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let p: RetryPolicy<()> = RetryPolicy::new(3, Duration::from_millis(100)).with_jitter(1.0);
        let delays: Vec<_> = (0..64).map(|_| p.delay(1)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(100)));
        assert!(delays.iter().any(|d| *d != delays[0]));
    }
}
