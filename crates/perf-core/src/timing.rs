//! Timing of operations: a guard for a scope and wrappers for futures and closures that record
//! each call's duration and whether it succeeded (the plan's `track_performance`).
//!
//! An operation called `name` records into three metrics of a [`MetricsRegistry`]: the histogram
//! `name` (nanoseconds), and the counters `name_success_total` and `name_failure_total`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::clock::SharedClock;
use crate::metrics::{Counter, LatencyHistogram, MetricsRegistry};

/// The metrics of one named operation. Look it up once with [`Operation::new`] and reuse it on
/// the hot path.
#[derive(Debug, Clone)]
pub struct Operation {
    latency: Arc<LatencyHistogram>,
    success: Arc<Counter>,
    failure: Arc<Counter>,
}

impl Operation {
    /// The operation `name` in `registry`.
    pub fn new(registry: &MetricsRegistry, name: &str) -> Self {
        Self {
            latency: registry.histogram(name),
            success: registry.counter(&format!("{name}_success_total")),
            failure: registry.counter(&format!("{name}_failure_total")),
        }
    }

    /// Starts timing one call with the real clock.
    pub fn start(&self) -> TimingGuard {
        TimingGuard {
            operation: self.clone(),
            clock: None,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Starts timing one call with `clock`, so tests can control the measured duration.
    pub fn start_with(&self, clock: &SharedClock) -> TimingGuard {
        TimingGuard {
            operation: self.clone(),
            started: clock.now(),
            clock: Some(clock.clone()),
            finished: false,
        }
    }

    /// Runs `future` and records its duration and outcome. A future dropped before it completes
    /// (cancelled) counts as a failure.
    pub async fn track<F>(&self, future: F) -> F::Output
    where
        F: Future,
        F::Output: Outcome,
    {
        let guard = self.start();
        let output = future.await;
        guard.finish(output.is_success());
        output
    }

    /// Runs `f` and records its duration and outcome.
    pub fn track_sync<T: Outcome>(&self, f: impl FnOnce() -> T) -> T {
        let guard = self.start();
        let output = f();
        guard.finish(output.is_success());
        output
    }
}

/// Records the time from its creation to [`finish`](TimingGuard::finish).
///
/// A guard dropped without `finish` (an early return through `?`, a panic, a cancelled future)
/// records its duration as a failure, so error paths cannot go unmeasured.
///
/// ```
/// use perf_core::metrics::MetricsRegistry;
/// use perf_core::timing::Operation;
///
/// let registry = MetricsRegistry::new();
/// let op = Operation::new(&registry, "parse");
/// let guard = op.start();
/// let parsed: Result<u32, _> = "42".parse();
/// guard.finish(parsed.is_ok());
/// {
///     let _guard = op.start(); // dropped without finish: a failure
/// }
/// let s = registry.snapshot();
/// assert_eq!(s.histograms["parse"].count, 2);
/// assert_eq!(s.counters["parse_success_total"], 1);
/// assert_eq!(s.counters["parse_failure_total"], 1);
/// ```
#[derive(Debug)]
#[must_use = "a guard measures until it is finished or dropped"]
pub struct TimingGuard {
    operation: Operation,
    clock: Option<SharedClock>,
    started: Instant,
    finished: bool,
}

impl TimingGuard {
    /// Records the duration and the outcome.
    pub fn finish(mut self, success: bool) {
        self.record(success);
    }

    /// Records the duration as a success.
    pub fn success(self) {
        self.finish(true);
    }

    /// Records the duration as a failure.
    pub fn failure(self) {
        self.finish(false);
    }

    fn record(&mut self, success: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = match &self.clock {
            Some(clock) => clock.now(),
            None => Instant::now(),
        };
        self.operation
            .latency
            .record(now.saturating_duration_since(self.started));
        if success {
            self.operation.success.inc();
        } else {
            self.operation.failure.inc();
        }
    }
}

impl Drop for TimingGuard {
    fn drop(&mut self) {
        self.record(false);
    }
}

/// Whether an operation's output counts as a success.
pub trait Outcome {
    /// `true` for a success.
    fn is_success(&self) -> bool;
}

impl<T, E> Outcome for Result<T, E> {
    fn is_success(&self) -> bool {
        self.is_ok()
    }
}

impl<T> Outcome for Option<T> {
    fn is_success(&self) -> bool {
        self.is_some()
    }
}

impl Outcome for () {
    fn is_success(&self) -> bool {
        true
    }
}

impl Outcome for bool {
    fn is_success(&self) -> bool {
        *self
    }
}

/// Times `future` as operation `name` in the process-wide [`MetricsRegistry::global`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let answer: Result<u32, std::io::Error> = perf_core::timing::track("fetch_answer", async {
///     Ok(42)
/// })
/// .await;
/// assert_eq!(answer.unwrap(), 42);
/// let s = perf_core::metrics::MetricsRegistry::global().snapshot();
/// assert!(s.counters["fetch_answer_success_total"] >= 1);
/// # });
/// ```
pub async fn track<F>(name: &str, future: F) -> F::Output
where
    F: Future,
    F::Output: Outcome,
{
    Operation::new(MetricsRegistry::global(), name)
        .track(future)
        .await
}

/// Times `f` as operation `name` in the process-wide [`MetricsRegistry::global`].
///
/// ```
/// let n = perf_core::timing::track_sync("count_words", || Some("a b c".split(' ').count()));
/// assert_eq!(n, Some(3));
/// ```
pub fn track_sync<T: Outcome>(name: &str, f: impl FnOnce() -> T) -> T {
    Operation::new(MetricsRegistry::global(), name).track_sync(f)
}
