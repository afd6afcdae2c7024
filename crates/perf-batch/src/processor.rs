//! [`BatchProcessor`]: runs an item function over a list or iterator with chunking, bounded
//! concurrency, retries, progress, cancellation and optional durable checkpoints.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use perf_core::clock::{system_clock, SharedClock};
use perf_core::config::{BatchConfig, ChunkStrategy};
use perf_core::resource::ResourceMonitor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cancel::CancellationToken;
use crate::checkpoint::{decode_segments, encode_segment, validate_job_id, CheckpointStore};
use crate::chunking::LoadProbe;
use crate::engine::{execute, Attempt, CheckpointCtx, RunSettings};
use crate::error::{panic_message, BatchError, Result};
use crate::progress::{Progress, ProgressCallback};
use crate::result::BatchResult;
use crate::retry::RetryPolicy;

/// Runs a function over many items with bounded resources.
///
/// Items are pulled lazily from the input in chunks (sized by the [`ChunkStrategy`]) and run by
/// `max_concurrency` workers; consecutive chunks overlap, so re-sizing never idles a worker.
/// Failed items are retried per the [`RetryPolicy`]; a panicking item becomes that item's error
/// and the batch goes on. Async item functions run on the caller's task
/// ([`run`](Self::run)); CPU-bound functions run on tokio's blocking pool
/// ([`run_blocking`](Self::run_blocking)) so they never stall the runtime.
///
/// With `enabled = false` in [`BatchConfig`] (the rollback switch) items run one at a time, in
/// order, in fixed chunks.
///
/// ```
/// use perf_batch::{BatchProcessor, BatchStatus};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let processor = BatchProcessor::new().max_concurrency(4).chunk_size(10);
/// let result = processor
///     .run(1..=100u64, |n| async move {
///         if n == 13 { Err("unlucky") } else { Ok(n * 2) }
///     })
///     .await;
/// assert_eq!(result.status, BatchStatus::Partial);
/// assert_eq!(result.succeeded, 99);
/// assert_eq!(result.errors[0].index, 12);
/// assert_eq!(result.results[0], (0, 2));
/// # });
/// ```
pub struct BatchProcessor<E> {
    enabled: bool,
    strategy: ChunkStrategy,
    chunk_size: usize,
    min_chunk: usize,
    max_chunk: usize,
    concurrency: usize,
    retry: RetryPolicy<E>,
    checkpoint_interval: usize,
    checkpoint_min_gap: Duration,
    memory_threshold: u64,
    target_chunk: Duration,
    fail_fast: bool,
    preserve_order: bool,
    clock: SharedClock,
    probe: Option<Arc<dyn LoadProbe>>,
    memory_sample_interval: Duration,
    progress: Option<ProgressCallback>,
    cancel: Option<CancellationToken>,
}

impl<E> fmt::Debug for BatchProcessor<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchProcessor")
            .field("enabled", &self.enabled)
            .field("strategy", &self.strategy)
            .field("chunk_size", &self.chunk_size)
            .field("max_concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("fail_fast", &self.fail_fast)
            .field("preserve_order", &self.preserve_order)
            .finish_non_exhaustive()
    }
}

impl<E> Clone for BatchProcessor<E> {
    fn clone(&self) -> Self {
        Self {
            enabled: self.enabled,
            strategy: self.strategy,
            chunk_size: self.chunk_size,
            min_chunk: self.min_chunk,
            max_chunk: self.max_chunk,
            concurrency: self.concurrency,
            retry: self.retry.clone(),
            checkpoint_interval: self.checkpoint_interval,
            checkpoint_min_gap: self.checkpoint_min_gap,
            memory_threshold: self.memory_threshold,
            target_chunk: self.target_chunk,
            fail_fast: self.fail_fast,
            preserve_order: self.preserve_order,
            clock: self.clock.clone(),
            probe: self.probe.clone(),
            memory_sample_interval: self.memory_sample_interval,
            progress: self.progress.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

impl<E> Default for BatchProcessor<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> BatchProcessor<E> {
    /// A processor with the defaults of [`BatchConfig`].
    pub fn new() -> Self {
        Self::build(&BatchConfig::default())
    }

    /// A processor configured from `perf.toml`'s `[batch]` section (validated first).
    ///
    /// ```
    /// let mut config = perf_core::config::BatchConfig::default();
    /// config.max_concurrency = 0;
    /// assert!(perf_batch::BatchProcessor::<()>::from_config(&config).is_err());
    /// ```
    pub fn from_config(config: &BatchConfig) -> Result<Self> {
        config.validate().map_err(|e| BatchError::InvalidOption {
            field: "batch",
            value: e.to_string(),
            reason: "the [batch] section does not validate",
        })?;
        Ok(Self::build(config))
    }

    fn build(c: &BatchConfig) -> Self {
        let probe = ResourceMonitor::new()
            .ok()
            .map(|m| Arc::new(m) as Arc<dyn LoadProbe>);
        Self {
            enabled: c.enabled,
            strategy: c.strategy,
            chunk_size: usize::try_from(c.chunk_size).unwrap_or(usize::MAX).max(1),
            min_chunk: 1,
            max_chunk: 100_000,
            concurrency: usize::try_from(c.max_concurrency).unwrap_or(1).max(1),
            retry: RetryPolicy::new(c.max_retries, Duration::from_millis(c.retry_base_delay_ms)),
            checkpoint_interval: usize::try_from(c.checkpoint_interval)
                .unwrap_or(usize::MAX)
                .max(1),
            checkpoint_min_gap: Duration::from_millis(c.checkpoint_min_gap_ms),
            memory_threshold: c.memory_threshold_mb.saturating_mul(1 << 20),
            target_chunk: Duration::from_millis(c.target_chunk_ms.max(1)),
            fail_fast: c.fail_fast,
            preserve_order: c.preserve_order,
            clock: system_clock(),
            probe,
            memory_sample_interval: Duration::from_millis(100),
            progress: None,
            cancel: None,
        }
    }

    /// Turns batching optimizations on or off (the `[batch] enabled` rollback switch).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the chunking strategy.
    pub fn strategy(mut self, strategy: ChunkStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the chunk size (the starting size of the adaptive strategies).
    pub fn chunk_size(mut self, size: usize) -> Self {
        self.chunk_size = size.max(1);
        self
    }

    /// Bounds the chunk sizes DYNAMIC, ADAPTIVE and MEMORY_BASED may choose.
    pub fn chunk_bounds(mut self, min: usize, max: usize) -> Self {
        self.min_chunk = min.max(1);
        self.max_chunk = max.max(self.min_chunk);
        self
    }

    /// Sets how many items run at once.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy<E>) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the finished items per checkpoint segment.
    pub fn checkpoint_interval(mut self, items: usize) -> Self {
        self.checkpoint_interval = items.max(1);
        self
    }

    /// Sets the shortest time between two checkpoint writes (default 500 ms, `[batch]
    /// checkpoint_min_gap_ms` in [`from_config`](Self::from_config)): a segment is due
    /// every `checkpoint_interval` finished items, but no sooner than this after the previous
    /// one, so fast items do not turn into a stream of fsyncs. A crash loses at most the items
    /// finished since the last segment (they run again on resume). `Duration::ZERO` writes at
    /// every interval.
    pub fn checkpoint_min_gap(mut self, gap: Duration) -> Self {
        self.checkpoint_min_gap = gap;
        self
    }

    /// Sets the RSS ceiling of MEMORY_BASED chunking, in bytes.
    ///
    /// MEMORY_BASED cuts a first chunk of at most `max_concurrency` items, then measures the
    /// RSS each pulled item adds (the input waiting to run) and the RSS each finished item
    /// leaves behind (its result), and sizes every next chunk to fill 90 % of the headroom
    /// under this ceiling. When not even one more item fits, it waits for the running items to
    /// finish and goes on one item at a time.
    pub fn memory_threshold_bytes(mut self, bytes: u64) -> Self {
        self.memory_threshold = bytes;
        self
    }

    /// Sets the chunk duration ADAPTIVE aims for.
    pub fn target_chunk_time(mut self, target: Duration) -> Self {
        self.target_chunk = target.max(Duration::from_micros(1));
        self
    }

    /// Stops at the first failed item (items in flight finish; no new item starts).
    pub fn fail_fast(mut self, on: bool) -> Self {
        self.fail_fast = on;
        self
    }

    /// Returns results in input order (otherwise in completion order).
    pub fn preserve_order(mut self, on: bool) -> Self {
        self.preserve_order = on;
        self
    }

    /// Sets the clock for timing, rates and retry waits (a manual clock in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the load probe (perf-core's resource monitor by default).
    pub fn load_probe(mut self, probe: Arc<dyn LoadProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Calls `callback` after every finished chunk and once at the end.
    pub fn on_progress(mut self, callback: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// Calls a prepared progress callback (such as [`progress_bar`](crate::progress_bar)).
    pub fn progress_callback(mut self, callback: ProgressCallback) -> Self {
        self.progress = Some(callback);
        self
    }

    /// Stops the run when `token` is cancelled.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    fn settings(&self) -> RunSettings<'_, E> {
        let (strategy, concurrency, preserve_order) = if self.enabled {
            (self.strategy, self.concurrency, self.preserve_order)
        } else {
            (ChunkStrategy::Fixed, 1, true)
        };
        RunSettings {
            strategy,
            chunk_size: self.chunk_size,
            min_chunk: self.min_chunk,
            max_chunk: self.max_chunk,
            concurrency,
            target_chunk: self.target_chunk,
            memory_threshold: self.memory_threshold,
            fail_fast: self.fail_fast,
            preserve_order,
            retry: &self.retry,
            clock: &self.clock,
            probe: self.probe.as_ref(),
            memory_sample_interval: self.memory_sample_interval,
            progress: self.progress.as_ref(),
            cancel: self.cancel.as_ref(),
        }
    }

    /// Runs the async function `f` over `items`.
    pub async fn run<I, T, R, F, Fut>(&self, items: I, f: F) -> BatchResult<R, E>
    where
        I: IntoIterator<Item = T>,
        T: Clone,
        F: Fn(T) -> Fut,
        Fut: Future<Output = std::result::Result<R, E>>,
    {
        execute(
            items.into_iter(),
            self.settings(),
            async_attempt(&f),
            HashMap::new(),
            None,
        )
        .await
    }

    /// Runs the CPU-bound function `f` over `items` on tokio's blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap().block_on(async {
    /// let processor = perf_batch::BatchProcessor::new().max_concurrency(2);
    /// let result = processor
    ///     .run_blocking(vec![3u64, 4, 5], |n| Ok::<_, String>((1..=n).product::<u64>()))
    ///     .await;
    /// assert_eq!(result.into_values(), vec![6, 24, 120]);
    /// # });
    /// ```
    pub async fn run_blocking<I, T, R, F>(&self, items: I, f: F) -> BatchResult<R, E>
    where
        I: IntoIterator<Item = T>,
        T: Clone + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
        F: Fn(T) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        execute(
            items.into_iter(),
            self.settings(),
            blocking_attempt(&f),
            HashMap::new(),
            None,
        )
        .await
    }

    /// Like [`run`](Self::run), checkpointed under `job` in `store`: items recorded as done in
    /// earlier runs of the same job are not run again and their stored results are returned in
    /// place, so a run after a crash returns the complete result.
    ///
    /// The job must be given the same items in the same order each time. Failed items are not
    /// recorded, so a resumed run tries them again. Call [`CheckpointStore::clear`] once the
    /// result is safely used.
    ///
    /// ```
    /// use perf_batch::{checkpoint::FileCheckpointStore, BatchProcessor};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = FileCheckpointStore::new(dir.path());
    /// let processor = BatchProcessor::new().checkpoint_interval(10);
    /// let first = processor
    ///     .run_checkpointed(&store, "squares", 0..50u64, |n| async move { Ok::<_, String>(n * n) })
    ///     .await
    ///     .unwrap();
    /// assert!(first.checkpoints >= 1);
    /// // Running the job again restores every result without running anything.
    /// let again = processor
    ///     .run_checkpointed(&store, "squares", 0..50u64, |_| async move { Err::<u64, _>("not run".to_owned()) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(again.resumed, 50);
    /// assert_eq!(again.into_values(), first.into_values());
    /// # });
    /// ```
    pub async fn run_checkpointed<I, T, R, F, Fut>(
        &self,
        store: &dyn CheckpointStore,
        job: &str,
        items: I,
        f: F,
    ) -> Result<BatchResult<R, E>>
    where
        I: IntoIterator<Item = T>,
        T: Clone,
        R: Serialize + DeserializeOwned,
        F: Fn(T) -> Fut,
        Fut: Future<Output = std::result::Result<R, E>>,
    {
        let (restored, next_seq) = self.restore(store, job).await?;
        let ctx = self.checkpoint_ctx(store, job, next_seq);
        Ok(execute(
            items.into_iter(),
            self.settings(),
            async_attempt(&f),
            restored,
            Some(ctx),
        )
        .await)
    }

    /// [`run_blocking`](Self::run_blocking) with checkpoints, as in
    /// [`run_checkpointed`](Self::run_checkpointed).
    pub async fn run_blocking_checkpointed<I, T, R, F>(
        &self,
        store: &dyn CheckpointStore,
        job: &str,
        items: I,
        f: F,
    ) -> Result<BatchResult<R, E>>
    where
        I: IntoIterator<Item = T>,
        T: Clone + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: Fn(T) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        let (restored, next_seq) = self.restore(store, job).await?;
        let ctx = self.checkpoint_ctx(store, job, next_seq);
        let f = Arc::new(f);
        Ok(execute(
            items.into_iter(),
            self.settings(),
            blocking_attempt(&f),
            restored,
            Some(ctx),
        )
        .await)
    }

    async fn restore<R: DeserializeOwned>(
        &self,
        store: &dyn CheckpointStore,
        job: &str,
    ) -> Result<(HashMap<usize, R>, u64)> {
        validate_job_id(job)?;
        let segments = store.load(job).await?;
        let next_seq = segments.last().map_or(0, |(seq, _)| seq + 1);
        let restored = decode_segments(job, &segments)?;
        if !restored.is_empty() {
            tracing::info!(
                job,
                items = restored.len(),
                "resuming batch from checkpoint"
            );
        }
        Ok((restored, next_seq))
    }

    fn checkpoint_ctx<'a, R: Serialize>(
        &self,
        store: &'a dyn CheckpointStore,
        job: &'a str,
        next_seq: u64,
    ) -> CheckpointCtx<'a, R> {
        CheckpointCtx {
            store,
            job,
            next_seq,
            interval: self.checkpoint_interval,
            min_gap: self.checkpoint_min_gap,
            clock: self.clock.clone(),
            encode: encode_segment::<R>,
        }
    }
}

/// The future of one attempt of an async item function: the function's future with its panics
/// caught, or the panic of the call that should have produced it.
type AsyncAttempt<Fut, R, E> = futures::future::Either<
    futures::future::Map<
        futures::future::CatchUnwind<AssertUnwindSafe<Fut>>,
        fn(std::thread::Result<std::result::Result<R, E>>) -> Attempt<R, E>,
    >,
    futures::future::Ready<Attempt<R, E>>,
>;

/// One attempt of an async item function, with its panics caught.
fn async_attempt<'f, T, R, E, F, Fut>(f: &'f F) -> impl Fn(T) -> AsyncAttempt<Fut, R, E> + 'f
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = std::result::Result<R, E>>,
{
    move |item| match std::panic::catch_unwind(AssertUnwindSafe(|| f(item))) {
        Ok(fut) => futures::future::Either::Left(
            AssertUnwindSafe(fut)
                .catch_unwind()
                .map(attempt_from as fn(_) -> _),
        ),
        Err(payload) => futures::future::Either::Right(futures::future::ready(Attempt::Panic(
            panic_message(payload.as_ref()),
        ))),
    }
}

fn attempt_from<R, E>(r: std::thread::Result<std::result::Result<R, E>>) -> Attempt<R, E> {
    match r {
        Ok(Ok(v)) => Attempt::Ok(v),
        Ok(Err(e)) => Attempt::Err(e),
        Err(payload) => Attempt::Panic(panic_message(payload.as_ref())),
    }
}

/// One attempt of a blocking item function on tokio's blocking pool.
fn blocking_attempt<T, R, E, F>(
    f: &Arc<F>,
) -> impl Fn(T) -> futures::future::BoxFuture<'static, Attempt<R, E>> + '_
where
    T: Send + 'static,
    R: Send + 'static,
    E: Send + 'static,
    F: Fn(T) -> std::result::Result<R, E> + Send + Sync + 'static,
{
    move |item| {
        let f = Arc::clone(f);
        let handle = tokio::task::spawn_blocking(move || f(item));
        Box::pin(async move {
            match handle.await {
                Ok(Ok(v)) => Attempt::Ok(v),
                Ok(Err(e)) => Attempt::Err(e),
                Err(join) if join.is_panic() => Attempt::Panic(panic_message(&*join.into_panic())),
                Err(join) => Attempt::Panic(format!("blocking task did not finish: {join}")),
            }
        })
    }
}
