//! The benchmark harness: the [`Bench`] context groups receive, [`Group`] registration, and
//! the measurement and report types.
//!
//! A group is a plain `fn(&mut Bench)`. It measures with [`Bench::compare_ns`] (subject and peer,
//! interleaved) or [`Bench::measure`], records [`Row`]s, sizes its workloads with
//! [`Bench::pick`] so `--quick` stays quick, and records a [`Skip`] (via
//! [`Bench::require_redis`], [`Bench::require_postgres`] or [`Bench::skip`]) when it cannot run.

mod measure;
mod report;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

pub use measure::{measure_interleaved, measure_ns_per_op, median, Sampling, Stats};
pub use report::{
    format_value, ratio, utc_now_iso8601, MachineInfo, Report, Row, Skip, NO_PEER, RATIO_LEGEND,
};

/// A named benchmark group: what it measures and the function that does it.
///
/// ```
/// use perfkit_benches::harness::{Bench, Group};
/// fn noop(_: &mut Bench) {}
/// let g = Group::new("cache_lru", "perf-cache LRU against the lru crate", noop);
/// assert!(g.matches(&["lru".into()]));
/// assert!(!g.matches(&["redis".into()]));
/// assert!(g.matches(&[]));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// Unique name, `crate_topic` style; filters match substrings of it.
    pub name: &'static str,
    /// One line on what it measures and against which peer.
    pub about: &'static str,
    /// The benchmark body.
    pub run: fn(&mut Bench),
}

impl Group {
    /// A group.
    pub const fn new(name: &'static str, about: &'static str, run: fn(&mut Bench)) -> Self {
        Group { name, about, run }
    }

    /// Whether the group is selected: no filters select everything, otherwise any filter that is
    /// a substring of the name does.
    pub fn matches(&self, filters: &[String]) -> bool {
        filters.is_empty() || filters.iter().any(|f| self.name.contains(f.as_str()))
    }
}

/// The context a group runs in: mode, sampling, and the collected rows and skips.
///
/// ```
/// use perfkit_benches::harness::{Bench, Row};
/// let mut bench = Bench::new(true);
/// assert!(bench.quick());
/// assert_eq!(bench.pick(10, 1000), 10);
/// bench.record(Row::new("nothing", "ns/op", false).subject("x", 1.0));
/// assert_eq!(bench.rows().len(), 1);
/// ```
#[derive(Debug)]
pub struct Bench {
    quick: bool,
    sampling: Sampling,
    group: String,
    group_started: Instant,
    rows: Vec<Row>,
    skips: Vec<Skip>,
    failed: Vec<String>,
}

impl Bench {
    /// A context for a quick (`--quick`) or full run, with the matching [`Sampling`].
    pub fn new(quick: bool) -> Self {
        Bench {
            quick,
            sampling: if quick {
                Sampling::quick()
            } else {
                Sampling::full()
            },
            group: String::new(),
            group_started: Instant::now(),
            rows: Vec::new(),
            skips: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Replaces the sampling parameters (tests use [`Sampling::smoke`]).
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Whether this is a `--quick` run. Groups should shrink workloads and counts then; the
    /// whole quick suite must finish within 3 minutes on 2 cores.
    pub fn quick(&self) -> bool {
        self.quick
    }

    /// `quick` in a quick run, `full` otherwise: `let n = bench.pick(1_000, 100_000);`.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// The sampling parameters in use.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// The time budget of one group: 15 s in a quick run, 120 s in a full run. Groups with many
    /// workloads check [`Bench::over_budget`] between them.
    pub fn budget(&self) -> Duration {
        Duration::from_secs(self.pick(15, 120))
    }

    /// Whether the current group has used up its [`budget`](Bench::budget). A group that stops
    /// early should say so with [`Bench::skip`].
    pub fn over_budget(&self) -> bool {
        self.group_started.elapsed() > self.budget()
    }

    /// The name of the group being run.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Measures `f(iters)` (which runs the workload `iters` times) in ns/op.
    ///
    /// ```
    /// use perfkit_benches::harness::{Bench, Sampling};
    /// let bench = Bench::new(true).with_sampling(Sampling::smoke());
    /// let stats = bench.measure(|iters| for i in 0..iters { std::hint::black_box(i); });
    /// assert!(stats.median_ns >= 0.0);
    /// ```
    pub fn measure<F: FnMut(u64)>(&self, f: F) -> Stats {
        measure_ns_per_op(&self.sampling, f)
    }

    /// Measures subject and peer interleaved, records an `ns/op` row (lower is better) with the
    /// spread of both in the note, and returns a copy of it.
    ///
    /// ```
    /// use perfkit_benches::harness::{Bench, Sampling};
    /// use std::hint::black_box;
    /// let mut bench = Bench::new(true).with_sampling(Sampling::smoke());
    /// let row = bench.compare_ns(
    ///     "add",
    ///     "wrapping_add", |iters| for i in 0..iters { black_box(black_box(i).wrapping_add(1)); },
    ///     "checked_add", |iters| for i in 0..iters { black_box(black_box(i).checked_add(1)); },
    /// );
    /// assert_eq!(row.metric, "ns/op");
    /// ```
    pub fn compare_ns<A: FnMut(u64), B: FnMut(u64)>(
        &mut self,
        workload: impl Into<String>,
        subject: impl Into<String>,
        subject_fn: A,
        peer: impl Into<String>,
        peer_fn: B,
    ) -> Row {
        let (s, p) = measure_interleaved(&self.sampling, subject_fn, peer_fn);
        let row = Row::new(workload, "ns/op", false)
            .subject(subject, s.median_ns)
            .peer(peer, p.median_ns)
            .note(format!(
                "median of {} interleaved samples; spread ±{:.1}% / ±{:.1}% (MAD)",
                s.samples,
                s.spread_pct(),
                p.spread_pct()
            ));
        self.record(row.clone());
        row
    }

    /// Measures `f` alone and records a reference `ns/op` row with no peer.
    pub fn reference_ns<F: FnMut(u64)>(
        &mut self,
        workload: impl Into<String>,
        subject: impl Into<String>,
        f: F,
    ) -> Row {
        let s = self.measure(f);
        let row = Row::new(workload, "ns/op", false)
            .subject(subject, s.median_ns)
            .note(format!(
                "median of {} samples; spread ±{:.1}% (MAD); no peer",
                s.samples,
                s.spread_pct()
            ));
        self.record(row.clone());
        row
    }

    /// Adds a row, stamping it with the current group's name.
    pub fn record(&mut self, mut row: Row) {
        row.group = self.group.clone();
        self.rows.push(row);
    }

    /// Records that the current group (or part of it) did not run, and why.
    pub fn skip(&mut self, reason: impl Into<String>) {
        self.skips.push(Skip {
            group: self.group.clone(),
            reason: reason.into(),
        });
    }

    /// `REDIS_URL` if set and reachable; otherwise records a skip and returns `None`:
    /// `let Some(url) = bench.require_redis() else { return };`.
    pub fn require_redis(&mut self) -> Option<String> {
        self.require_url(perf_testkit::REDIS_URL_VAR, "Redis")
    }

    /// `DATABASE_URL` if set and reachable; otherwise records a skip and returns `None`.
    pub fn require_postgres(&mut self) -> Option<String> {
        self.require_url(perf_testkit::DATABASE_URL_VAR, "PostgreSQL")
    }

    fn require_url(&mut self, var: &str, what: &str) -> Option<String> {
        use perf_testkit::support::{host_port, redact_url, tcp_reachable};
        let url = std::env::var(var).ok().filter(|u| !u.trim().is_empty());
        let reason = match url {
            None => format!("needs {what} ({var} not set; run `cargo xtask bench`)"),
            Some(url) => match host_port(&url) {
                Some((host, port)) if tcp_reachable(&host, port, Duration::from_secs(2)) => {
                    return Some(url)
                }
                _ => format!("needs {what} ({var}={} not reachable)", redact_url(&url)),
            },
        };
        self.skip(reason);
        None
    }

    /// Runs every group selected by `filters`, in order, catching panics (recorded as a skip
    /// starting with `FAILED:` and listed by [`Bench::failures`]). Progress goes to stderr.
    pub fn run(&mut self, groups: &[Group], filters: &[String]) -> Vec<String> {
        let mut ran = Vec::new();
        for group in groups.iter().filter(|g| g.matches(filters)) {
            self.group = group.name.to_string();
            self.group_started = Instant::now();
            eprintln!("perf-bench: {} — {}", group.name, group.about);
            let outcome = catch_unwind(AssertUnwindSafe(|| (group.run)(self)));
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                self.skip(format!("FAILED: panicked: {message}"));
                self.failed.push(group.name.to_string());
            }
            eprintln!(
                "perf-bench: {} done in {:.1}s",
                group.name,
                self.group_started.elapsed().as_secs_f64()
            );
            ran.push(group.name.to_string());
        }
        ran
    }

    /// The rows recorded so far.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The skips recorded so far.
    pub fn skips(&self) -> &[Skip] {
        &self.skips
    }

    /// Names of groups that panicked.
    pub fn failures(&self) -> &[String] {
        &self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(_: &mut Bench) {
        panic!("boom");
    }

    fn records(bench: &mut Bench) {
        bench.record(
            Row::new("w", "ops/s", true)
                .subject("s", 2.0)
                .peer("p", 1.0),
        );
    }

    #[test]
    fn filters_select_by_substring() {
        let groups = [
            Group::new("cache_lru", "", records),
            Group::new("cost_tokens", "", records),
        ];
        let picked = |f: &[&str]| -> Vec<&str> {
            let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            groups
                .iter()
                .filter(|g| g.matches(&f))
                .map(|g| g.name)
                .collect()
        };
        assert_eq!(picked(&[]), ["cache_lru", "cost_tokens"]);
        assert_eq!(picked(&["cache"]), ["cache_lru"]);
        assert_eq!(picked(&["tok", "lru"]), ["cache_lru", "cost_tokens"]);
        assert!(picked(&["nothing"]).is_empty());
    }

    #[test]
    fn run_stamps_groups_and_catches_panics() {
        let mut bench = Bench::new(true).with_sampling(Sampling::smoke());
        let ran = bench.run(
            &[
                Group::new("ok_group", "", records),
                Group::new("bad_group", "", panics),
            ],
            &[],
        );
        assert_eq!(ran, ["ok_group", "bad_group"]);
        assert_eq!(bench.rows()[0].group, "ok_group");
        assert_eq!(bench.rows()[0].ratio, 2.0);
        assert_eq!(bench.failures(), ["bad_group"]);
        assert!(bench.skips()[0].reason.contains("boom"));
    }

    #[test]
    fn require_redis_records_a_skip_when_unset() {
        if std::env::var_os("REDIS_URL").is_some() {
            return;
        }
        let mut bench = Bench::new(true);
        assert!(bench.require_redis().is_none());
        assert!(bench.skips()[0].reason.contains("REDIS_URL not set"));
    }

    #[test]
    fn compare_ns_orients_the_ratio() {
        let mut bench = Bench::new(true).with_sampling(Sampling::smoke());
        let row = bench.compare_ns(
            "sleep vs nothing",
            "nothing",
            |iters| {
                for i in 0..iters {
                    std::hint::black_box(i);
                }
            },
            "sleep",
            |iters| {
                for _ in 0..iters {
                    std::thread::sleep(Duration::from_micros(100));
                }
            },
        );
        assert!(row.ratio > 1.0, "{row:?}");
    }
}
