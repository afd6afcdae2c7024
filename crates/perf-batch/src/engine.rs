//! The run loop shared by every `BatchProcessor::run*` method: a fixed set of workers pulling
//! items from lazily cut chunks, with retries, chunk sizing, progress and checkpoint hand-off.
//!
//! All workers of a run are futures polled by the caller's task, so the state lock is never
//! contended; there is one worker future per concurrency slot for the whole run, so the
//! processor itself allocates per chunk, not per item.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use perf_core::clock::SharedClock;
use perf_core::config::ChunkStrategy;
use tokio::sync::Notify;

use crate::cancel::CancellationToken;
use crate::checkpoint::CheckpointStore;
use crate::chunking::{Decision, LoadProbe, Sizer};
use crate::error::BatchError;
use crate::progress::{Progress, ProgressCallback};
use crate::result::{BatchResult, BatchStatus, ItemError, ItemFailure};
use crate::retry::RetryPolicy;

/// The outcome of one attempt of one item.
pub(crate) enum Attempt<R, E> {
    Ok(R),
    Err(E),
    Panic(String),
}

/// Settings of one run, resolved from the processor.
pub(crate) struct RunSettings<'a, E> {
    pub(crate) strategy: ChunkStrategy,
    pub(crate) chunk_size: usize,
    pub(crate) min_chunk: usize,
    pub(crate) max_chunk: usize,
    pub(crate) concurrency: usize,
    pub(crate) target_chunk: Duration,
    pub(crate) memory_threshold: u64,
    pub(crate) fail_fast: bool,
    pub(crate) preserve_order: bool,
    pub(crate) retry: &'a RetryPolicy<E>,
    pub(crate) clock: &'a SharedClock,
    pub(crate) probe: Option<&'a Arc<dyn LoadProbe>>,
    pub(crate) memory_sample_interval: Duration,
    pub(crate) progress: Option<&'a ProgressCallback>,
    pub(crate) cancel: Option<&'a CancellationToken>,
}

/// Encodes `(index, result)` entries into one checkpoint segment.
pub(crate) type SegmentEncoder<R> = fn(&[(u64, &R)]) -> perf_core::Result<Vec<u8>>;

/// Where and how a checkpointed run writes its segments.
pub(crate) struct CheckpointCtx<'a, R> {
    pub(crate) store: &'a dyn CheckpointStore,
    pub(crate) job: &'a str,
    pub(crate) next_seq: u64,
    pub(crate) interval: usize,
    /// Shortest time between two segment writes; more finished items join the next segment.
    pub(crate) min_gap: Duration,
    pub(crate) clock: SharedClock,
    pub(crate) encode: SegmentEncoder<R>,
}

enum Next<T> {
    Item(usize, T),
    Wait,
    Done,
}

struct Chunk {
    first: usize,
    len: usize,
    remaining: usize,
    executed: usize,
    started: Instant,
}

struct Engine<It: Iterator, R, E> {
    iter: It,
    exhausted: bool,
    total_hint: Option<usize>,
    pulled: usize,
    buf: VecDeque<It::Item>,
    buf_index: usize,
    chunks: VecDeque<Chunk>,
    held: Option<Decision>,
    sizer: Sizer,
    slots: Vec<Option<R>>,
    order: Vec<usize>,
    errors: Vec<ItemError<E>>,
    restored: HashMap<usize, R>,
    succeeded: usize,
    failed: usize,
    resumed: usize,
    retries: u64,
    in_flight: usize,
    stopped_by_failure: bool,
    preserve_order: bool,
    fail_fast: bool,
    checkpointing: bool,
    checkpoint_interval: usize,
    pending: Vec<usize>,
    checkpoint_signalled: bool,
    finished: bool,
    chunk_sizes: Vec<usize>,
    peak_rss: Option<u64>,
    last_rss_sample: Instant,
    started: Instant,
    progress_out: Option<Progress>,
}

impl<It: Iterator, R, E> Engine<It, R, E> {
    fn finished_count(&self) -> usize {
        self.succeeded + self.failed
    }

    fn next_item(&mut self, s: &RunSettings<'_, E>) -> Next<It::Item> {
        loop {
            if self.stopped_by_failure {
                return Next::Done;
            }
            if let Some(item) = self.buf.pop_front() {
                let idx = self.buf_index;
                self.buf_index += 1;
                // Only a resumed run has restored results; skip the hash lookup otherwise.
                let restored = if self.restored.is_empty() {
                    None
                } else {
                    self.restored.remove(&idx)
                };
                if let Some(r) = restored {
                    self.slots[idx] = Some(r);
                    if !self.preserve_order {
                        self.order.push(idx);
                    }
                    self.succeeded += 1;
                    self.resumed += 1;
                    self.chunk_item_done(idx, false, s.clock);
                    continue;
                }
                self.in_flight += 1;
                return Next::Item(idx, item);
            }
            if self.exhausted {
                return Next::Done;
            }
            let decision = match self.held.take() {
                Some(d) => d,
                None => self.decide(s),
            };
            if decision.drain_first && self.in_flight > 0 {
                self.held = Some(decision);
                return Next::Wait;
            }
            let measure = s.probe.filter(|_| self.sizer.measures_items());
            let before = measure.map(|p| p.rss_bytes());
            let pulled = self.cut_chunk(decision.size, s.clock.now());
            if let (Some(p), Some(before)) = (measure, before) {
                let after = p.rss_bytes();
                self.note_rss(after);
                self.sizer.chunk_pulled(pulled, before, after);
            }
        }
    }

    fn decide(&mut self, s: &RunSettings<'_, E>) -> Decision {
        let now = s.clock.now();
        let sample = match s.probe {
            Some(p) if self.sizer.needs_sample() => Some(self.sizer.read(p.as_ref())),
            _ => None,
        };
        if let Some(sample) = sample {
            self.note_rss(sample.rss_bytes);
            self.last_rss_sample = now;
        } else if let Some(p) = s.probe {
            if now.saturating_duration_since(self.last_rss_sample) >= s.memory_sample_interval {
                self.last_rss_sample = now;
                self.note_rss(p.rss_bytes());
            }
        }
        let finished = self.finished_count();
        self.sizer.next(sample, finished)
    }

    fn note_rss(&mut self, rss: u64) {
        self.peak_rss = Some(self.peak_rss.map_or(rss, |p| p.max(rss)));
    }

    /// Pulls up to `size` items into a new chunk; returns how many it got.
    fn cut_chunk(&mut self, size: usize, now: Instant) -> usize {
        let first = self.pulled;
        self.buf.extend(self.iter.by_ref().take(size));
        let len = self.buf.len();
        if len < size {
            self.exhausted = true;
        }
        if len == 0 {
            return 0;
        }
        self.pulled += len;
        self.slots.resize_with(self.pulled, || None);
        self.chunk_sizes.push(len);
        self.chunks.push_back(Chunk {
            first,
            len,
            remaining: len,
            executed: 0,
            started: now,
        });
        len
    }

    /// Counts a finished item into its chunk; reads the clock only when the chunk completes.
    fn chunk_item_done(&mut self, idx: usize, executed: bool, clock: &SharedClock) {
        let pos = self.chunks.partition_point(|c| c.first + c.len <= idx);
        let Some(chunk) = self.chunks.get_mut(pos) else {
            return;
        };
        chunk.remaining -= 1;
        if executed {
            chunk.executed += 1;
        }
        if chunk.remaining == 0 {
            let now = clock.now();
            let (executed, elapsed) =
                (chunk.executed, now.saturating_duration_since(chunk.started));
            self.sizer.chunk_finished(executed, elapsed);
            while self.chunks.front().is_some_and(|c| c.remaining == 0) {
                self.chunks.pop_front();
            }
            self.progress_out = Some(self.progress(now));
        }
    }

    fn progress(&self, now: Instant) -> Progress {
        Progress::new(
            self.finished_count(),
            self.failed,
            self.total_hint,
            now.saturating_duration_since(self.started),
        )
    }

    /// Records a finished item; returns (checkpoint due, wake waiting workers).
    fn complete(
        &mut self,
        idx: usize,
        outcome: Result<R, ItemFailure<E>>,
        attempts: u32,
        clock: &SharedClock,
    ) -> (bool, bool) {
        self.in_flight -= 1;
        self.retries += u64::from(attempts.saturating_sub(1));
        let mut checkpoint_due = false;
        match outcome {
            Ok(r) => {
                self.slots[idx] = Some(r);
                self.succeeded += 1;
                if !self.preserve_order {
                    self.order.push(idx);
                }
                if self.checkpointing {
                    self.pending.push(idx);
                    if self.pending.len() >= self.checkpoint_interval && !self.checkpoint_signalled
                    {
                        self.checkpoint_signalled = true;
                        checkpoint_due = true;
                    }
                }
            }
            Err(failure) => {
                self.failed += 1;
                self.errors.push(ItemError {
                    index: idx,
                    attempts,
                    failure,
                });
                if self.fail_fast {
                    self.stopped_by_failure = true;
                }
            }
        }
        self.chunk_item_done(idx, true, clock);
        (checkpoint_due, self.held.is_some() && self.in_flight == 0)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The engine is left consistent between statements, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one item with retries.
async fn run_item<T, R, E, A, AF>(
    item: T,
    attempt: &A,
    retry: &RetryPolicy<E>,
    clock: &SharedClock,
) -> (Result<R, ItemFailure<E>>, u32)
where
    T: Clone,
    A: Fn(T) -> AF,
    AF: Future<Output = Attempt<R, E>>,
{
    let mut n: u32 = 0;
    loop {
        n += 1;
        let outcome = if n > retry.max_retries {
            // The last attempt moves the item instead of cloning it.
            return match attempt(item).await {
                Attempt::Ok(r) => (Ok(r), n),
                Attempt::Err(e) => (Err(ItemFailure::Error(e)), n),
                Attempt::Panic(m) => (Err(ItemFailure::Panicked(m)), n),
            };
        } else {
            attempt(item.clone()).await
        };
        match outcome {
            Attempt::Ok(r) => return (Ok(r), n),
            Attempt::Panic(m) => return (Err(ItemFailure::Panicked(m)), n),
            Attempt::Err(e) => {
                if !retry.should_retry(&e) {
                    return (Err(ItemFailure::Error(e)), n);
                }
                tracing::debug!(attempt = n, "batch item failed, retrying");
                clock.sleep(retry.delay(n)).await;
            }
        }
    }
}

/// Runs a whole batch.
pub(crate) async fn execute<I, R, E, A, AF>(
    items: I,
    s: RunSettings<'_, E>,
    attempt: A,
    restored: HashMap<usize, R>,
    checkpoint: Option<CheckpointCtx<'_, R>>,
) -> BatchResult<R, E>
where
    I: Iterator,
    I::Item: Clone,
    A: Fn(I::Item) -> AF,
    AF: Future<Output = Attempt<R, E>>,
{
    let started = s.clock.now();
    let (lo, hi) = items.size_hint();
    let total_hint = (Some(lo) == hi).then_some(lo);
    let initial_rss = s.probe.map(|p| p.rss_bytes());
    let engine = Mutex::new(Engine {
        iter: items,
        exhausted: false,
        total_hint,
        pulled: 0,
        buf: VecDeque::new(),
        buf_index: 0,
        chunks: VecDeque::new(),
        held: None,
        sizer: Sizer::new(
            s.strategy,
            s.chunk_size,
            s.min_chunk,
            s.max_chunk,
            s.target_chunk,
            s.memory_threshold,
            s.concurrency,
        ),
        slots: Vec::with_capacity(total_hint.unwrap_or(0)),
        order: Vec::new(),
        errors: Vec::new(),
        restored,
        succeeded: 0,
        failed: 0,
        resumed: 0,
        retries: 0,
        in_flight: 0,
        stopped_by_failure: false,
        preserve_order: s.preserve_order,
        fail_fast: s.fail_fast,
        checkpointing: checkpoint.is_some(),
        checkpoint_interval: checkpoint
            .as_ref()
            .map_or(usize::MAX, |c| c.interval.max(1)),
        pending: Vec::new(),
        checkpoint_signalled: false,
        finished: false,
        chunk_sizes: Vec::new(),
        peak_rss: initial_rss,
        last_rss_sample: started,
        started,
        progress_out: None,
    });
    let wake = Notify::new();
    let checkpoint_wake = Notify::new();

    let worker = || async {
        // The item this worker just finished: recorded under the same lock that hands out the
        // next item, so each item costs one lock.
        let mut finished: Option<(usize, Result<R, ItemFailure<E>>, u32)> = None;
        loop {
            let (next, progress, due, wake_all) = {
                let mut e = lock(&engine);
                let (due, wake_all) = match finished.take() {
                    Some((idx, outcome, attempts)) => e.complete(idx, outcome, attempts, s.clock),
                    None => (false, false),
                };
                let next = e.next_item(&s);
                (next, e.progress_out.take(), due, wake_all)
            };
            report(s.progress, progress);
            if due {
                checkpoint_wake.notify_one();
            }
            if wake_all {
                wake.notify_waiters();
            }
            let (idx, item) = match next {
                Next::Item(i, t) => (i, t),
                Next::Done => return,
                Next::Wait => {
                    let notified = wake.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let again = lock(&engine).next_item(&s);
                    match again {
                        Next::Item(i, t) => (i, t),
                        Next::Done => return,
                        Next::Wait => {
                            notified.await;
                            continue;
                        }
                    }
                }
            };
            let (outcome, attempts) = run_item(item, &attempt, s.retry, s.clock).await;
            finished = Some((idx, outcome, attempts));
        }
    };

    let run_workers = async {
        let mut workers: FuturesUnordered<_> =
            (0..s.concurrency.max(1)).map(|_| worker()).collect();
        let all_done = async { while workers.next().await.is_some() {} };
        let cancelled = async {
            match s.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let was_cancelled = tokio::select! {
            biased;
            () = cancelled => true,
            () = all_done => false,
        };
        lock(&engine).finished = true;
        checkpoint_wake.notify_one();
        was_cancelled
    };

    let write_checkpoints = async {
        match checkpoint {
            Some(ctx) => checkpointer(&engine, ctx, &checkpoint_wake).await,
            None => (0, Vec::new()),
        }
    };

    let (cancelled, (checkpoints, checkpoint_errors)) =
        futures::join!(run_workers, write_checkpoints);

    let mut e = engine.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = s.probe {
        e.note_rss(p.rss_bytes());
    }
    let now = s.clock.now();
    let duration = now.saturating_duration_since(started);
    report(s.progress, Some(e.progress(now)));
    let remaining = if e.exhausted { 0 } else { e.iter.size_hint().0 };
    let total_items = e.pulled + remaining;
    let done = e.finished_count();
    let status = if cancelled && done < total_items {
        BatchStatus::Cancelled
    } else if e.stopped_by_failure || (e.failed > 0 && e.succeeded == 0) {
        BatchStatus::Failed
    } else if e.failed > 0 {
        BatchStatus::Partial
    } else {
        BatchStatus::Completed
    };
    let results = if e.preserve_order {
        e.slots
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, r)))
            .collect()
    } else {
        let mut slots = e.slots;
        e.order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take).map(|r| (i, r)))
            .collect()
    };
    let secs = duration.as_secs_f64();
    BatchResult {
        status,
        total_items,
        succeeded: e.succeeded,
        failed: e.failed,
        resumed: e.resumed,
        retries: e.retries,
        results,
        errors: e.errors,
        duration,
        throughput: if secs > 0.0 {
            (done - e.resumed) as f64 / secs
        } else {
            0.0
        },
        peak_rss_bytes: e.peak_rss,
        checkpoints,
        checkpoint_errors,
        chunk_sizes: e.chunk_sizes,
    }
}

fn report(callback: Option<&ProgressCallback>, progress: Option<Progress>) {
    if let (Some(cb), Some(p)) = (callback, progress) {
        cb(&p);
    }
}

/// Writes checkpoint segments in the background of a run, so item work never waits for
/// storage. Returns the number of segments written and the write errors.
async fn checkpointer<It: Iterator, R, E>(
    engine: &Mutex<Engine<It, R, E>>,
    ctx: CheckpointCtx<'_, R>,
    wake: &Notify,
) -> (usize, Vec<BatchError>) {
    let mut seq = ctx.next_seq;
    let mut written = 0;
    let mut errors = Vec::new();
    let mut last_write: Option<Instant> = None;
    loop {
        wake.notified().await;
        // Rate limit: wait out the minimum gap since the previous write (a finishing run does
        // not wait); items finishing meanwhile go into the same segment.
        loop {
            if lock(engine).finished {
                break;
            }
            let Some(due) = last_write.map(|t| t + ctx.min_gap) else {
                break;
            };
            if ctx.clock.now() >= due {
                break;
            }
            tokio::select! {
                () = ctx.clock.sleep_until(due) => break,
                () = wake.notified() => {}
            }
        }
        let (indices, encoded, finished) = {
            let mut e = lock(engine);
            let finished = e.finished;
            e.checkpoint_signalled = false;
            if e.pending.is_empty() || (e.pending.len() < e.checkpoint_interval && !finished) {
                if finished {
                    break;
                }
                continue;
            }
            let indices = std::mem::take(&mut e.pending);
            let entries: Vec<(u64, &R)> = indices
                .iter()
                .filter_map(|&i| e.slots.get(i)?.as_ref().map(|r| (i as u64, r)))
                .collect();
            let encoded = (ctx.encode)(&entries);
            (indices, encoded, finished)
        };
        match encoded {
            Ok(bytes) => match ctx.store.append(ctx.job, seq, bytes).await {
                Ok(()) => {
                    seq += 1;
                    written += 1;
                    last_write = Some(ctx.clock.now());
                }
                Err(err) => {
                    tracing::warn!(job = ctx.job, seq, error = %err, "checkpoint write failed");
                    errors.push(err);
                    // Keep the entries for the next segment.
                    let mut e = lock(engine);
                    let mut indices = indices;
                    indices.append(&mut e.pending);
                    e.pending = indices;
                }
            },
            Err(err) => {
                // The same results would fail again: they stay unrecorded and run again on resume.
                tracing::warn!(job = ctx.job, error = %err, "checkpoint encoding failed");
                errors.push(BatchError::Encode(err));
            }
        }
        if finished {
            break;
        }
        // More may have accumulated while writing.
        let e = lock(engine);
        if e.pending.len() >= e.checkpoint_interval {
            wake.notify_one();
        }
    }
    (written, errors)
}
