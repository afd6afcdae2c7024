//! N+1 detection: the same query shape (fingerprint) executed over and over in one context
//! (a request, a span), reported once it reaches both a repeat count and a total duration —
//! Sentry's detector defaults: 5 repeats and 50 ms — with the batched rewrite (`= ANY($1)`).
//!
//! A run is "in sequence" when at most `max_gap` other statements separate two executions of
//! the shape, so a loop body of a few queries is still one run. Multi-value statements
//! (`= ANY(…)`, `IN` lists of two or more, multi-row `VALUES`) are the batched form and are
//! never counted. Memory is bounded: an LRU of contexts, a bounded set of runs per context,
//! and a bounded list of findings.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fingerprint::{normalize, Fingerprint, NormalizedQuery};

/// Knobs of the detector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NPlusOneConfig {
    /// Repeats needed before a run is reported.
    pub min_repeats: u32,
    /// Total duration of the run needed before it is reported.
    pub min_total: Duration,
    /// Other statements allowed between two repeats of a run (the rest of a loop body).
    pub max_gap: u32,
    /// Contexts tracked at once (least recently used ones are forgotten).
    pub max_contexts: usize,
    /// Runs tracked per context.
    pub max_runs_per_context: usize,
    /// Findings kept (oldest dropped first).
    pub max_findings: usize,
    /// Rollback switch: when false, nothing is recorded.
    pub enabled: bool,
}

impl Default for NPlusOneConfig {
    fn default() -> Self {
        NPlusOneConfig {
            min_repeats: 5,
            min_total: Duration::from_millis(50),
            max_gap: 3,
            max_contexts: 10_000,
            max_runs_per_context: 32,
            max_findings: 1_000,
            enabled: true,
        }
    }
}

impl From<&perf_core::config::QueryConfig> for NPlusOneConfig {
    fn from(cfg: &perf_core::config::QueryConfig) -> Self {
        NPlusOneConfig {
            min_repeats: cfg.n_plus_one_min_repeats,
            min_total: Duration::from_millis(cfg.n_plus_one_min_total_ms),
            enabled: cfg.enabled,
            ..NPlusOneConfig::default()
        }
    }
}

/// One N+1 pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NPlusOneFinding {
    /// The context (request or span id) it happened in.
    pub context: String,
    /// The repeated shape.
    pub fingerprint: Fingerprint,
    /// The statement, literals redacted.
    pub example: String,
    /// Executions in the run.
    pub count: u32,
    /// Their total duration.
    pub total: Duration,
    /// The batched rewrite, e.g. `… WHERE order_id = ANY($1)`, when one is found.
    pub batched_rewrite: Option<String>,
}

impl NPlusOneFinding {
    /// Fraction of round trips the batched rewrite saves: `(count - 1) / count`.
    pub fn query_reduction(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            f64::from(self.count - 1) / f64::from(self.count)
        }
    }
}

#[derive(Debug)]
struct Run {
    fingerprint: Fingerprint,
    count: u32,
    total: Duration,
    /// Statements of the context when this shape last ran.
    last_seen: u64,
    /// Index in `findings` once reported.
    finding: Option<u64>,
}

#[derive(Debug, Default)]
struct ContextState {
    seq: u64,
    runs: VecDeque<Run>,
}

#[derive(Debug)]
struct Inner {
    contexts: LruCache<String, ContextState>,
    findings: VecDeque<(u64, NPlusOneFinding)>,
    next_id: u64,
    dropped: u64,
}

/// The detector; cheap to share (`&self` methods, internally locked).
///
/// ```
/// use std::time::Duration;
/// use perf_query::NPlusOneDetector;
///
/// let detector = NPlusOneDetector::new(Default::default());
/// detector.record("SELECT * FROM orders WHERE customer_id = 1", "req-1", Duration::from_millis(2)).unwrap();
/// for id in 1..=30 {
///     let sql = format!("SELECT * FROM order_lines WHERE order_id = {id}");
///     detector.record(&sql, "req-1", Duration::from_millis(3)).unwrap();
/// }
/// let f = &detector.findings()[0];
/// assert_eq!(f.count, 30);
/// assert_eq!(f.example, "SELECT * FROM order_lines WHERE order_id = $1");
/// assert_eq!(f.batched_rewrite.as_deref(), Some("SELECT * FROM order_lines WHERE order_id = ANY($1)"));
/// ```
#[derive(Debug)]
pub struct NPlusOneDetector {
    cfg: NPlusOneConfig,
    inner: Mutex<Inner>,
}

impl NPlusOneDetector {
    /// A detector with `cfg`.
    pub fn new(cfg: NPlusOneConfig) -> Self {
        let cap = NonZeroUsize::new(cfg.max_contexts.max(1)).unwrap_or(NonZeroUsize::MIN);
        NPlusOneDetector {
            cfg,
            inner: Mutex::new(Inner {
                contexts: LruCache::new(cap),
                findings: VecDeque::new(),
                next_id: 0,
                dropped: 0,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NPlusOneConfig {
        &self.cfg
    }

    /// Records one execution of `sql` in `context`. Returns the finding when this execution
    /// makes the run cross both thresholds (once per run; later repeats update its count).
    ///
    /// # Errors
    ///
    /// [`QueryError::Parse`](crate::QueryError::Parse) when `sql` cannot be tokenized.
    pub fn record(
        &self,
        sql: &str,
        context: &str,
        duration: Duration,
    ) -> Result<Option<NPlusOneFinding>> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        let q = normalize(sql)?;
        Ok(self.record_normalized(&q, context, duration))
    }

    /// [`record`](Self::record) for an already normalized statement.
    pub fn record_normalized(
        &self,
        q: &NormalizedQuery,
        context: &str,
        duration: Duration,
    ) -> Option<NPlusOneFinding> {
        if !self.cfg.enabled {
            return None;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return None;
        };
        let inner = &mut *inner;
        if !inner.contexts.contains(context) {
            inner
                .contexts
                .put(context.to_string(), ContextState::default());
        }
        let state = inner.contexts.get_mut(context)?;
        state.seq += 1;
        let seq = state.seq;
        let max_gap = u64::from(self.cfg.max_gap);
        // Runs broken by too many other statements are over.
        state.runs.retain(|r| seq - r.last_seen <= max_gap + 1);
        if q.batched {
            return None;
        }
        let pos = state
            .runs
            .iter()
            .position(|r| r.fingerprint == q.fingerprint);
        let run = match pos {
            Some(i) => &mut state.runs[i],
            None => {
                if state.runs.len() >= self.cfg.max_runs_per_context {
                    state.runs.pop_front();
                }
                state.runs.push_back(Run {
                    fingerprint: q.fingerprint,
                    count: 0,
                    total: Duration::ZERO,
                    last_seen: seq,
                    finding: None,
                });
                state.runs.back_mut()?
            }
        };
        run.count += 1;
        run.total += duration;
        run.last_seen = seq;
        match run.finding {
            Some(id) => {
                let (count, total) = (run.count, run.total);
                if let Some((_, f)) = inner.findings.iter_mut().find(|(fid, _)| *fid == id) {
                    f.count = count;
                    f.total = total;
                }
                None
            }
            None if run.count >= self.cfg.min_repeats && run.total >= self.cfg.min_total => {
                let id = inner.next_id;
                inner.next_id += 1;
                run.finding = Some(id);
                let finding = NPlusOneFinding {
                    context: context.to_string(),
                    fingerprint: q.fingerprint,
                    example: q.text.clone(),
                    count: run.count,
                    total: run.total,
                    batched_rewrite: batched_rewrite(&q.text),
                };
                if inner.findings.len() >= self.cfg.max_findings.max(1) {
                    inner.findings.pop_front();
                    inner.dropped += 1;
                }
                inner.findings.push_back((id, finding.clone()));
                tracing::debug!(fingerprint = %finding.fingerprint, count = finding.count, "N+1 query pattern");
                Some(finding)
            }
            None => None,
        }
    }

    /// Forgets a finished context's runs (its findings stay).
    pub fn finish_context(&self, context: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.contexts.pop(context);
        }
    }

    /// All findings, oldest first, with their latest counts.
    pub fn findings(&self) -> Vec<NPlusOneFinding> {
        self.inner
            .lock()
            .map(|i| i.findings.iter().map(|(_, f)| f.clone()).collect())
            .unwrap_or_default()
    }

    /// Contexts currently tracked (bounded by `max_contexts`).
    pub fn tracked_contexts(&self) -> usize {
        self.inner.lock().map(|i| i.contexts.len()).unwrap_or(0)
    }

    /// Findings dropped because `max_findings` was reached.
    pub fn dropped_findings(&self) -> u64 {
        self.inner.lock().map(|i| i.dropped).unwrap_or(0)
    }
}

/// The batched form of a per-row statement in normalized text: the first `= $n` or
/// single-element `IN ($n /*, ... */)` becomes `= ANY($n)` (pass an array of the values).
///
/// ```
/// use perf_query::batched_rewrite;
/// assert_eq!(
///     batched_rewrite("SELECT * FROM users WHERE id = $1").as_deref(),
///     Some("SELECT * FROM users WHERE id = ANY($1)")
/// );
/// assert_eq!(batched_rewrite("SELECT now()"), None);
/// ```
pub fn batched_rewrite(normalized: &str) -> Option<String> {
    let where_at = normalized.find(" WHERE ")?;
    let (head, tail) = normalized.split_at(where_at);
    for (pat, close) in [(" IN ($", " /*, ... */)"), (" = $", "")] {
        if let Some(i) = tail.find(pat) {
            let num_start = i + pat.len();
            let digits = tail[num_start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count();
            if digits == 0 {
                continue;
            }
            let num_end = num_start + digits;
            if !tail[num_end..].starts_with(close) {
                continue;
            }
            let n = &tail[num_start..num_end];
            return Some(format!(
                "{head}{} = ANY(${n}){}",
                &tail[..i],
                &tail[num_end + close.len()..]
            ));
        }
    }
    None
}
