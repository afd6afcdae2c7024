//! Cache warming and prefetch: prioritized tasks of keys with loaders, run with bounded
//! concurrency into a [`WarmTarget`], skipping keys already cached, with a progress callback
//! and a report per task.
//!
//! - Tasks run one after another, **highest priority first** (ties in registration order);
//!   inside a task, at most [`Warmer::max_concurrency`] loads are in flight.
//! - A task is either a list of `(key, loader)` items ([`WarmTask::item`]) or keys with one
//!   batch loader ([`WarmTask::batch`]) called with up to `batch_size` missing keys at a time.
//! - Before loading, the target is asked whether it already has the key; if so the key is
//!   counted as `skipped` and its loader is never called.
//! - A batch task asks and stores a whole batch at once ([`WarmTarget::contains_many`],
//!   [`WarmTarget::insert_many`]): into a [`TieredCache`] with Redis, that is one pipelined
//!   multi-get and one pipelined multi-set per batch instead of two round trips per key, so
//!   use batch tasks to warm a remote level quickly.
//! - A failing loader (or insert) is counted in the task's report with the key's *index* in the
//!   task (never its value); the other keys are still warmed.
//! - Cancellation: drop the future returned by [`Warmer::run`] (in-flight loads are aborted),
//!   or pass any future to [`Warmer::run_until`] (for example a `CancellationToken`'s
//!   `cancelled()`); when it completes, no new load starts, in-flight loads are aborted and the
//!   report says `cancelled`.
//!
//! ```
//! use perf_cache::l1::Cache;
//! use perf_cache::warming::{WarmTask, Warmer};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache: Cache<Vec<u8>, String> = Cache::new(1 << 20);
//! cache.insert(b"a".to_vec(), "cached".to_owned());
//! let task = WarmTask::new("popular", 10)
//!     .item(b"a".to_vec(), || async { Ok::<_, std::io::Error>("fresh".to_owned()) })
//!     .item(b"b".to_vec(), || async { Ok::<_, std::io::Error>("loaded".to_owned()) });
//! let report = Warmer::new().max_concurrency(4).task(task).run(cache.clone()).await?;
//! let t = &report.tasks[0];
//! assert_eq!((t.total, t.completed, t.skipped, t.errors), (2, 1, 1, 0));
//! assert_eq!(cache.get(b"a".as_slice()).as_deref(), Some("cached"));
//! # Ok::<(), perf_cache::Error>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use perf_core::clock::{system_clock, SharedClock};
use tokio::task::{Id, JoinSet};

use crate::error::{Error, Result};
use crate::l1::Cache;
use crate::tiered::{CacheValue, TieredCache, WriteOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type ItemLoader<V> = Box<dyn FnOnce() -> BoxFuture<std::result::Result<V, BoxError>> + Send>;
type BatchLoader<V> =
    Arc<dyn Fn(Vec<Vec<u8>>) -> BoxFuture<std::result::Result<Vec<V>, BoxError>> + Send + Sync>;
type ProgressFn = Arc<dyn Fn(&WarmProgress) + Send + Sync>;

/// The most failures a [`TaskReport`] keeps individually; all are counted in `errors`.
pub const MAX_RECORDED_FAILURES: usize = 100;

/// Where warmed values go: asked whether a key is present, then given the loaded value.
///
/// Implemented for the L1 [`Cache`], for [`TieredCache`] and for `Arc<T>` of any target.
///
/// ```
/// use perf_cache::l1::Cache;
/// use perf_cache::warming::WarmTarget;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache: Cache<Vec<u8>, u32> = Cache::new(1 << 20);
/// cache.insert_into(b"k".to_vec(), 7).await?;
/// assert!(WarmTarget::contains(&cache, b"k").await);
/// # Ok::<(), perf_cache::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait WarmTarget<V: Send + 'static>: Send + Sync + 'static {
    /// Whether `key` is already cached (then it is skipped).
    async fn contains(&self, key: &[u8]) -> bool;

    /// Stores a warmed value; an error is counted against the key.
    async fn insert_into(&self, key: Vec<u8>, value: V) -> Result<()>;

    /// Which of `keys` are already cached, in order; used by batch tasks. The default asks
    /// [`contains`](Self::contains) key by key; the tiered manager answers with one pipelined
    /// multi-get per remote level.
    async fn contains_many(&self, keys: &[Vec<u8>]) -> Vec<bool> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.contains(key).await);
        }
        out
    }

    /// Stores warmed entries and returns one result per entry, in order; used by batch tasks.
    /// The default calls [`insert_into`](Self::insert_into) entry by entry; the tiered
    /// manager writes each remote level with one pipelined multi-set.
    async fn insert_many(&self, entries: Vec<(Vec<u8>, V)>) -> Vec<Result<()>> {
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            out.push(self.insert_into(key, value).await);
        }
        out
    }
}

#[async_trait]
impl<V: Send + Sync + 'static, T: WarmTarget<V>> WarmTarget<V> for Arc<T> {
    async fn contains(&self, key: &[u8]) -> bool {
        (**self).contains(key).await
    }

    async fn insert_into(&self, key: Vec<u8>, value: V) -> Result<()> {
        (**self).insert_into(key, value).await
    }

    async fn contains_many(&self, keys: &[Vec<u8>]) -> Vec<bool> {
        (**self).contains_many(keys).await
    }

    async fn insert_many(&self, entries: Vec<(Vec<u8>, V)>) -> Vec<Result<()>> {
        (**self).insert_many(entries).await
    }
}

/// L1: `contains` does not touch statistics or the policy; an insert the cache refuses (too
/// heavy for its budget, or the cache disabled) is an [`Error::InvalidConfig`] on `max_bytes`.
#[async_trait]
impl<V> WarmTarget<V> for Cache<Vec<u8>, V>
where
    V: Send + Sync + 'static,
{
    async fn contains(&self, key: &[u8]) -> bool {
        self.contains_key(key)
    }

    async fn insert_into(&self, key: Vec<u8>, value: V) -> Result<()> {
        l1_insert(self, key, value)
    }

    // Batches without a boxed future per key.
    async fn contains_many(&self, keys: &[Vec<u8>]) -> Vec<bool> {
        keys.iter()
            .map(|k| self.contains_key(k.as_slice()))
            .collect()
    }

    async fn insert_many(&self, entries: Vec<(Vec<u8>, V)>) -> Vec<Result<()>> {
        entries
            .into_iter()
            .map(|(k, v)| l1_insert(self, k, v))
            .collect()
    }
}

fn l1_insert<V: Send + Sync + 'static>(
    cache: &Cache<Vec<u8>, V>,
    key: Vec<u8>,
    value: V,
) -> Result<()> {
    if cache.insert(key, value) {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: "max_bytes",
            reason: "the L1 cache refused the warmed entry (too heavy or disabled)".into(),
        })
    }
}

/// The tiered manager: `contains` is a [`TieredCache::get`] (a hit on a lower level is
/// promoted, which is what warming wants); an insert is a [`TieredCache::set`] with the default
/// TTL and no tags, failing when any remote level failed. Batch tasks use
/// [`TieredCache::get_many`] and [`TieredCache::set_many`]: one pipelined round trip (per
/// `batch` keys of the Redis tier) per level and batch, instead of one per key. A disabled
/// manager stores nothing, so warming it still calls the loaders: check the rollback switch
/// before warming.
#[async_trait]
impl<V: CacheValue> WarmTarget<V> for TieredCache<V> {
    async fn contains(&self, key: &[u8]) -> bool {
        self.get(key).await.is_some()
    }

    async fn insert_into(&self, key: Vec<u8>, value: V) -> Result<()> {
        let report = self.set(&key, value, WriteOptions::new()).await;
        match report.first_error() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    async fn contains_many(&self, keys: &[Vec<u8>]) -> Vec<bool> {
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        self.get_many(&refs)
            .await
            .iter()
            .map(Option::is_some)
            .collect()
    }

    async fn insert_many(&self, entries: Vec<(Vec<u8>, V)>) -> Vec<Result<()>> {
        let n = entries.len();
        let report = self.set_many(entries, WriteOptions::new()).await;
        let result = match report.first_error() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        };
        vec![result; n]
    }
}

enum Source<V> {
    Items(Vec<(Vec<u8>, ItemLoader<V>)>),
    Batch {
        keys: Vec<Vec<u8>>,
        batch_size: usize,
        loader: BatchLoader<V>,
    },
}

/// One warming task: a name, a priority (higher runs first) and its keys with loaders.
///
/// ```
/// use perf_cache::warming::WarmTask;
///
/// let task = WarmTask::<u64>::batch("by-id", 5, vec![b"1".to_vec(), b"2".to_vec()], 100, |keys| async move {
///     Ok::<_, std::io::Error>(keys.iter().map(|k| k.len() as u64).collect())
/// });
/// assert_eq!(task.len(), 2);
/// ```
pub struct WarmTask<V> {
    name: String,
    priority: i32,
    source: Source<V>,
}

impl<V> fmt::Debug for WarmTask<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmTask")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<V: Send + 'static> WarmTask<V> {
    /// An empty item task; add keys with [`item`](Self::item).
    pub fn new(name: impl Into<String>, priority: i32) -> Self {
        Self {
            name: name.into(),
            priority,
            source: Source::Items(Vec::new()),
        }
    }

    /// Adds `key` with its loader. Ignored (with a `tracing` warning) on a batch task.
    pub fn item<F, Fut, E>(mut self, key: impl Into<Vec<u8>>, loader: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        match &mut self.source {
            Source::Items(items) => {
                let boxed: ItemLoader<V> = Box::new(move || {
                    let fut = loader();
                    Box::pin(async move { fut.await.map_err(Into::into) })
                });
                items.push((key.into(), boxed));
            }
            Source::Batch { .. } => {
                tracing::warn!(task = %self.name, "item() on a batch warming task ignored");
            }
        }
        self
    }

    /// A batch task: `loader` is called with up to `batch_size` keys (those not already
    /// cached) and must return one value per key, in order. A loader error, or a result of
    /// the wrong length, fails every key of that batch. `batch_size` 0 is taken as 1.
    pub fn batch<F, Fut, E>(
        name: impl Into<String>,
        priority: i32,
        keys: Vec<Vec<u8>>,
        batch_size: usize,
        loader: F,
    ) -> Self
    where
        F: Fn(Vec<Vec<u8>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Vec<V>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let loader: BatchLoader<V> = Arc::new(move |keys| {
            let fut = loader(keys);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        Self {
            name: name.into(),
            priority,
            source: Source::Batch {
                keys,
                batch_size: batch_size.max(1),
                loader,
            },
        }
    }
}

impl<V> WarmTask<V> {
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task's priority.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Items(items) => items.len(),
            Source::Batch { keys, .. } => keys.len(),
        }
    }

    /// Whether the task has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Progress of the running task, passed to the [`Warmer::on_progress`] callback after each
/// key or batch finishes. `done` never decreases within a task and ends at `total`
/// (unless cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmProgress {
    /// The task's name.
    pub task: String,
    /// Keys finished so far: completed + skipped + errors.
    pub done: u64,
    /// Keys in the task.
    pub total: u64,
}

/// A failure of one key: its index in the task and the error (never the value).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WarmFailure {
    /// The key's index in the task (registration order of items, or position in `keys`).
    pub index: usize,
    /// What failed: the loader ([`Error::Loader`]) or the target's insert.
    pub error: Error,
}

/// The result of one task.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskReport {
    /// The task's name.
    pub name: String,
    /// The task's priority.
    pub priority: i32,
    /// Keys in the task.
    pub total: u64,
    /// Keys loaded and stored.
    pub completed: u64,
    /// Keys already cached, not loaded.
    pub skipped: u64,
    /// Keys whose load or insert failed.
    pub errors: u64,
    /// The first [`MAX_RECORDED_FAILURES`] failures, by key index.
    pub failures: Vec<WarmFailure>,
    /// Wall time of the task on the warmer's clock.
    pub duration: Duration,
    /// `(completed + skipped) / duration`; 0 when the duration is zero.
    pub items_per_sec: f64,
    /// The task was stopped by cancellation before finishing.
    pub cancelled: bool,
}

impl TaskReport {
    fn new(name: &str, priority: i32, total: usize) -> Self {
        Self {
            name: name.to_owned(),
            priority,
            total: total as u64,
            completed: 0,
            skipped: 0,
            errors: 0,
            failures: Vec::new(),
            duration: Duration::ZERO,
            items_per_sec: 0.0,
            cancelled: false,
        }
    }

    /// Keys finished: completed + skipped + errors.
    pub fn done(&self) -> u64 {
        self.completed + self.skipped + self.errors
    }

    fn fail(&mut self, index: usize, error: Error) {
        self.errors += 1;
        if self.failures.len() < MAX_RECORDED_FAILURES {
            self.failures.push(WarmFailure { index, error });
        }
    }

    fn apply(&mut self, index: usize, outcome: Outcome) {
        match outcome {
            Outcome::Stored => self.completed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed(e) => self.fail(index, e),
        }
    }
}

/// The result of [`Warmer::run`]: one report per task, in the order they ran.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WarmReport {
    /// Per task, highest priority first; tasks not started because of cancellation are absent.
    pub tasks: Vec<TaskReport>,
    /// Wall time of the whole run.
    pub duration: Duration,
    /// The run was cancelled.
    pub cancelled: bool,
}

enum Outcome {
    Stored,
    Skipped,
    Failed(Error),
}

/// Runs registered [`WarmTask`]s into a [`WarmTarget`]; see the [module docs](self).
pub struct Warmer<V> {
    tasks: Vec<WarmTask<V>>,
    max_concurrency: usize,
    progress: Option<ProgressFn>,
    clock: SharedClock,
}

impl<V> fmt::Debug for Warmer<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warmer")
            .field("tasks", &self.tasks)
            .field("max_concurrency", &self.max_concurrency)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

impl<V: Send + 'static> Default for Warmer<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Send + 'static> Warmer<V> {
    /// No tasks, 16 loads in flight at most, no progress callback, the system clock.
    pub fn new() -> Self {
        Self {
            tasks: Vec::new(),
            max_concurrency: 16,
            progress: None,
            clock: system_clock(),
        }
    }

    /// Sets the most loads (items or batches) in flight at once; 0 makes `run` fail with
    /// [`Error::InvalidConfig`].
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Registers a task.
    pub fn task(mut self, task: WarmTask<V>) -> Self {
        self.tasks.push(task);
        self
    }

    /// Sets the progress callback (called from the task driving the run, never concurrently).
    pub fn on_progress(mut self, f: impl Fn(&WarmProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Sets the clock used to time tasks.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs every task into `target`; loads run as tokio tasks, so this needs a tokio
    /// runtime. Dropping the returned future aborts the loads in flight.
    pub async fn run<T: WarmTarget<V> + Clone>(self, target: T) -> Result<WarmReport> {
        self.run_until(target, std::future::pending::<()>()).await
    }

    /// Like [`run`](Self::run), but stops when `cancel` completes: no new load starts,
    /// in-flight loads are aborted, and the report is marked cancelled.
    pub async fn run_until<T, C>(mut self, target: T, cancel: C) -> Result<WarmReport>
    where
        T: WarmTarget<V> + Clone,
        C: Future<Output = ()>,
    {
        if self.max_concurrency == 0 {
            return Err(Error::InvalidConfig {
                field: "max_concurrency",
                reason: "must be at least 1".into(),
            });
        }
        // Stable sort: equal priorities keep registration order.
        self.tasks.sort_by_key(|t| std::cmp::Reverse(t.priority));
        let started = self.clock.now();
        let mut cancel = std::pin::pin!(cancel);
        let mut report = WarmReport {
            tasks: Vec::new(),
            duration: Duration::ZERO,
            cancelled: false,
        };
        for task in std::mem::take(&mut self.tasks) {
            let t = self.run_task(task, &target, cancel.as_mut()).await;
            let cancelled = t.cancelled;
            report.tasks.push(t);
            if cancelled {
                report.cancelled = true;
                break;
            }
        }
        report.duration = self.clock.now().saturating_duration_since(started);
        Ok(report)
    }

    async fn run_task<T, C>(
        &self,
        task: WarmTask<V>,
        target: &T,
        mut cancel: Pin<&mut C>,
    ) -> TaskReport
    where
        T: WarmTarget<V> + Clone,
        C: Future<Output = ()>,
    {
        let started = self.clock.now();
        let mut rep = TaskReport::new(&task.name, task.priority, task.len());
        // Each spawned job yields its outcomes as (index, outcome) pairs; the id map finds
        // the indexes of a job that panicked.
        let mut jobs: JoinSet<Vec<(usize, Outcome)>> = JoinSet::new();
        let mut indexes: HashMap<Id, (usize, usize)> = HashMap::new();
        let mut pending = jobs_of(task.source, target);
        let mut next = pending.next();
        loop {
            while jobs.len() < self.max_concurrency {
                let Some((range, fut)) = next.take() else {
                    break;
                };
                let handle = jobs.spawn(fut);
                indexes.insert(handle.id(), range);
                next = pending.next();
            }
            if jobs.is_empty() {
                break;
            }
            let joined = tokio::select! {
                biased;
                () = cancel.as_mut() => None,
                j = jobs.join_next_with_id() => j,
            };
            let Some(joined) = joined else {
                if jobs.is_empty() {
                    break;
                }
                jobs.abort_all();
                rep.cancelled = true;
                break;
            };
            match joined {
                Ok((id, outcomes)) => {
                    indexes.remove(&id);
                    for (i, o) in outcomes {
                        rep.apply(i, o);
                    }
                }
                Err(e) => {
                    let (from, to) = indexes.remove(&e.id()).unwrap_or((0, 0));
                    for i in from..to {
                        rep.fail(
                            i,
                            Error::LoaderFailed {
                                reason: "warming loader panicked".into(),
                            },
                        );
                    }
                }
            }
            if let Some(cb) = &self.progress {
                cb(&WarmProgress {
                    task: rep.name.clone(),
                    done: rep.done(),
                    total: rep.total,
                });
            }
        }
        if next.is_some() {
            rep.cancelled = true;
        }
        rep.duration = self.clock.now().saturating_duration_since(started);
        let secs = rep.duration.as_secs_f64();
        if secs > 0.0 {
            rep.items_per_sec = (rep.completed + rep.skipped) as f64 / secs;
        }
        tracing::debug!(
            task = %rep.name,
            completed = rep.completed,
            skipped = rep.skipped,
            errors = rep.errors,
            "warming task finished"
        );
        rep
    }
}

type Job = BoxFuture<Vec<(usize, Outcome)>>;

/// Lazily turns a task's source into spawnable jobs, each with the index range it covers.
fn jobs_of<V, T>(source: Source<V>, target: &T) -> Box<dyn Iterator<Item = ((usize, usize), Job)>>
where
    V: Send + 'static,
    T: WarmTarget<V> + Clone,
{
    match source {
        Source::Items(items) => {
            let target = target.clone();
            Box::new(
                items
                    .into_iter()
                    .enumerate()
                    .map(move |(i, (key, loader))| {
                        let target = target.clone();
                        let job: Job =
                            Box::pin(
                                async move { vec![(i, warm_one(&target, key, loader).await)] },
                            );
                        ((i, i + 1), job)
                    }),
            )
        }
        Source::Batch {
            keys,
            batch_size,
            loader,
        } => {
            let target = target.clone();
            let mut keys = keys.into_iter().enumerate().peekable();
            Box::new(std::iter::from_fn(move || {
                keys.peek()?;
                let chunk: Vec<(usize, Vec<u8>)> = keys.by_ref().take(batch_size).collect();
                let range = (chunk[0].0, chunk[0].0 + chunk.len());
                let (target, loader) = (target.clone(), loader.clone());
                let job: Job = Box::pin(async move { warm_batch(&target, chunk, loader).await });
                Some((range, job))
            }))
        }
    }
}

async fn warm_one<V: Send + 'static, T: WarmTarget<V>>(
    target: &T,
    key: Vec<u8>,
    loader: ItemLoader<V>,
) -> Outcome {
    if target.contains(&key).await {
        return Outcome::Skipped;
    }
    match loader().await {
        Ok(v) => match target.insert_into(key, v).await {
            Ok(()) => Outcome::Stored,
            Err(e) => Outcome::Failed(e),
        },
        Err(e) => Outcome::Failed(Error::Loader(Arc::from(e))),
    }
}

async fn warm_batch<V: Send + 'static, T: WarmTarget<V>>(
    target: &T,
    chunk: Vec<(usize, Vec<u8>)>,
    loader: BatchLoader<V>,
) -> Vec<(usize, Outcome)> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut missing = Vec::with_capacity(chunk.len());
    let (indexes, keys): (Vec<usize>, Vec<Vec<u8>>) = chunk.into_iter().unzip();
    // A target that answers for fewer keys than asked leaves the rest to be loaded.
    let present = target.contains_many(&keys).await;
    let present = present.into_iter().chain(std::iter::repeat(false));
    for ((i, key), cached) in indexes.into_iter().zip(keys).zip(present) {
        if cached {
            out.push((i, Outcome::Skipped));
        } else {
            missing.push((i, key));
        }
    }
    if missing.is_empty() {
        return out;
    }
    let keys: Vec<Vec<u8>> = missing.iter().map(|(_, k)| k.clone()).collect();
    match loader(keys).await {
        Ok(values) if values.len() == missing.len() => {
            let (indexes, keys): (Vec<usize>, Vec<Vec<u8>>) = missing.into_iter().unzip();
            let stored = target
                .insert_many(keys.into_iter().zip(values).collect())
                .await;
            let stored = stored.into_iter().chain(std::iter::repeat_with(|| {
                Err(Error::InvalidConfig {
                    field: "warm_target",
                    reason: "insert_many returned fewer results than entries".into(),
                })
            }));
            for (i, r) in indexes.into_iter().zip(stored) {
                out.push((i, r.map_or_else(Outcome::Failed, |()| Outcome::Stored)));
            }
        }
        Ok(values) => {
            let reason = format!(
                "batch loader returned {} values for {} keys",
                values.len(),
                missing.len()
            );
            for (i, _) in missing {
                out.push((
                    i,
                    Outcome::Failed(Error::LoaderFailed {
                        reason: reason.clone(),
                    }),
                ));
            }
        }
        Err(e) => {
            let e: Arc<dyn std::error::Error + Send + Sync> = Arc::from(e);
            for (i, _) in missing {
                out.push((i, Outcome::Failed(Error::Loader(e.clone()))));
            }
        }
    }
    out
}
