//! Progress reports (done, total, rate, ETA) and the indicatif adapter (feature `progress`).

use std::sync::Arc;
use std::time::Duration;

/// A snapshot of a running batch, passed to the progress callback at every finished chunk and
/// once at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Items finished (succeeded, failed or restored from a checkpoint).
    pub done: usize,
    /// Of those, items that failed.
    pub failed: usize,
    /// Total items, when the input's length is known.
    pub total: Option<usize>,
    /// Time since the batch started.
    pub elapsed: Duration,
    /// Items finished per second so far.
    pub rate: f64,
    /// Estimated time left, when the total is known and the rate is positive.
    pub eta: Option<Duration>,
}

impl Progress {
    pub(crate) fn new(done: usize, failed: usize, total: Option<usize>, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = match total {
            Some(t) if rate > 0.0 => Some(Duration::from_secs_f64(
                t.saturating_sub(done) as f64 / rate,
            )),
            Some(t) if t <= done => Some(Duration::ZERO),
            _ => None,
        };
        Self {
            done,
            failed,
            total,
            elapsed,
            rate,
            eta,
        }
    }
}

/// A progress callback.
pub type ProgressCallback = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Drives an [`indicatif::ProgressBar`] from progress reports (feature `progress`).
///
/// ```
/// let bar = indicatif::ProgressBar::hidden();
/// let callback = perf_batch::progress_bar(bar.clone());
/// callback(&perf_batch::Progress {
///     done: 5, failed: 0, total: Some(10),
///     elapsed: std::time::Duration::from_secs(1), rate: 5.0, eta: None,
/// });
/// assert_eq!(bar.position(), 5);
/// assert_eq!(bar.length(), Some(10));
/// ```
#[cfg(feature = "progress")]
pub fn progress_bar(bar: indicatif::ProgressBar) -> ProgressCallback {
    Arc::new(move |p: &Progress| {
        if let Some(total) = p.total {
            bar.set_length(total as u64);
        }
        bar.set_position(p.done as u64);
        if p.failed > 0 {
            bar.set_message(format!("{} failed", p.failed));
        }
        if p.total.is_some_and(|t| p.done >= t) {
            bar.finish();
        }
    })
}
