//! Request coalescing (the DataLoader pattern): `load(key)` calls arriving within a window
//! become one batch call, duplicate keys are fetched once, and each caller gets its own answer.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use perf_core::clock::{system_clock, SharedClock};
use perf_core::metrics::{Counter, HistogramSnapshot, LatencyHistogram};
use tokio::sync::oneshot;

use crate::error::panic_message;

/// Why a [`Loader::load`] got no value.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// The batch function failed for the whole batch this key was in (shared by its callers).
    Batch(Arc<E>),
    /// The batch function panicked.
    Panicked(Arc<str>),
    /// The batch was dropped before answering (the runtime shut down).
    Dropped,
}

impl<E> Clone for LoadError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Batch(e) => Self::Batch(Arc::clone(e)),
            Self::Panicked(m) => Self::Panicked(Arc::clone(m)),
            Self::Dropped => Self::Dropped,
        }
    }
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Batch(e) => write!(f, "batch load failed: {e}"),
            Self::Panicked(m) => write!(f, "batch load panicked: {m}"),
            Self::Dropped => f.write_str("batch load was dropped before it answered"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for LoadError<E> {}

/// What one caller receives: the value, `None` when the batch function returned no value for
/// the key, or the batch's error.
pub type LoadResult<V, E> = Result<Option<V>, LoadError<E>>;

type Fetch<K, V, E> =
    Box<dyn Fn(Vec<K>) -> BoxFuture<'static, Result<HashMap<K, V>, E>> + Send + Sync>;

/// Counters of a [`Loader`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoaderStats {
    /// `load` calls.
    pub loads: u64,
    /// Batch function calls.
    pub batches: u64,
    /// Keys passed to the batch function (each distinct key of a batch once).
    pub keys_fetched: u64,
    /// `load` calls answered by a key already pending in the same batch.
    pub duplicate_loads: u64,
    /// Batches cut because they reached the maximum size.
    pub flushed_by_size: u64,
    /// Batches cut because the wait window ended.
    pub flushed_by_time: u64,
    /// Batches whose function failed or panicked.
    pub failed_batches: u64,
    /// Distribution of keys per batch.
    pub batch_size: HistogramSnapshot,
}

struct Pending<K, V, E> {
    id: u64,
    keys: Vec<K>,
    waiters: HashMap<K, Vec<oneshot::Sender<LoadResult<V, E>>>>,
    timer: Option<tokio::task::AbortHandle>,
}

struct Inner<K, V, E> {
    fetch: Fetch<K, V, E>,
    max_batch: usize,
    max_wait: Duration,
    clock: SharedClock,
    pending: Mutex<Pending<K, V, E>>,
    loads: Counter,
    batches: Counter,
    keys_fetched: Counter,
    duplicates: Counter,
    by_size: Counter,
    by_time: Counter,
    failed: Counter,
    sizes: LatencyHistogram,
}

/// Coalesces `load(key)` calls into batch calls of one batch function.
///
/// Calls arriving within `max_wait` of the first key of a batch, up to `max_batch_size`
/// distinct keys, become one call of the batch function; a key requested several times in
/// the window is fetched once and every caller gets the value. A key the batch function does
/// not return is `Ok(None)` for its callers; a failing batch gives each of its callers the
/// shared error. Use one loader per batch type (users, documents, embeddings, …). Batches run
/// on spawned tokio tasks, so a caller that gives up does not stall the others.
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use perf_batch::Loader;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let users = Loader::builder(|ids: Vec<u32>| async move {
///     // One query for the whole batch; id 0 does not exist.
///     Ok::<_, String>(ids.into_iter().filter(|&id| id != 0).map(|id| (id, format!("user {id}"))).collect::<HashMap<_, _>>())
/// })
/// .max_batch_size(100)
/// .max_wait(Duration::from_millis(2))
/// .build();
/// let (a, b, missing) = tokio::join!(users.load(7), users.load(7), users.load(0));
/// assert_eq!(a.unwrap().as_deref(), Some("user 7"));
/// assert_eq!(b.unwrap().as_deref(), Some("user 7"));
/// assert_eq!(missing.unwrap(), None);
/// let stats = users.stats();
/// assert_eq!((stats.loads, stats.batches, stats.keys_fetched), (3, 1, 2));
/// # });
/// ```
pub struct Loader<K, V, E> {
    inner: Arc<Inner<K, V, E>>,
}

impl<K, V, E> Clone for Loader<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, E> fmt::Debug for Loader<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("max_batch_size", &self.inner.max_batch)
            .field("max_wait", &self.inner.max_wait)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Loader`].
pub struct LoaderBuilder<K, V, E> {
    fetch: Fetch<K, V, E>,
    max_batch: usize,
    max_wait: Duration,
    clock: SharedClock,
}

impl<K, V, E> fmt::Debug for LoaderBuilder<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoaderBuilder")
            .field("max_batch_size", &self.max_batch)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl<K, V, E> LoaderBuilder<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
    E: Send + Sync + 'static,
{
    /// Most distinct keys per batch (default 100).
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Longest wait of a batch's first key before the batch is sent (default 2 ms).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// The clock of the wait window (a manual clock in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the loader.
    pub fn build(self) -> Loader<K, V, E> {
        Loader {
            inner: Arc::new(Inner {
                fetch: self.fetch,
                max_batch: self.max_batch,
                max_wait: self.max_wait,
                clock: self.clock,
                pending: Mutex::new(Pending {
                    id: 0,
                    keys: Vec::new(),
                    waiters: HashMap::new(),
                    timer: None,
                }),
                loads: Counter::new(),
                batches: Counter::new(),
                keys_fetched: Counter::new(),
                duplicates: Counter::new(),
                by_size: Counter::new(),
                by_time: Counter::new(),
                failed: Counter::new(),
                sizes: LatencyHistogram::new(),
            }),
        }
    }
}

type Batch<K, V, E> = (Vec<K>, HashMap<K, Vec<oneshot::Sender<LoadResult<V, E>>>>);

impl<K, V, E> Inner<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
    E: Send + Sync + 'static,
{
    fn lock(&self) -> MutexGuard<'_, Pending<K, V, E>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(p: &mut Pending<K, V, E>) -> Batch<K, V, E> {
        p.id += 1;
        if let Some(timer) = p.timer.take() {
            timer.abort();
        }
        (std::mem::take(&mut p.keys), std::mem::take(&mut p.waiters))
    }

    async fn run(self: Arc<Self>, (keys, mut waiters): Batch<K, V, E>) {
        self.batches.inc();
        self.keys_fetched.add(keys.len() as u64);
        self.sizes.record_value(keys.len() as u64);
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| (self.fetch)(keys))) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(p) => Err(p),
        };
        match outcome {
            Ok(Ok(mut values)) => {
                for (key, senders) in waiters.drain() {
                    let value = values.remove(&key);
                    send_all(senders, Ok(value));
                }
            }
            Ok(Err(e)) => {
                self.failed.inc();
                let e = LoadError::Batch(Arc::new(e));
                for (_, senders) in waiters.drain() {
                    send_all(senders, Err(e.clone()));
                }
            }
            Err(p) => {
                self.failed.inc();
                let e = LoadError::Panicked(Arc::from(panic_message(p.as_ref())));
                for (_, senders) in waiters.drain() {
                    send_all(senders, Err(e.clone()));
                }
            }
        }
    }
}

/// Answers every caller of one key; the last one gets the value without a clone.
fn send_all<V: Clone, E>(
    mut senders: Vec<oneshot::Sender<LoadResult<V, E>>>,
    answer: LoadResult<V, E>,
) {
    let last = senders.pop();
    for s in senders {
        let reply = match &answer {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(e.clone()),
        };
        // A caller that stopped waiting is not an error.
        let _ = s.send(reply);
    }
    if let Some(s) = last {
        let _ = s.send(answer);
    }
}

impl<K, V, E> Loader<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
    E: Send + Sync + 'static,
{
    /// A loader over the batch function `fetch`, which gets distinct keys and returns the values
    /// it found.
    pub fn builder<F, Fut>(fetch: F) -> LoaderBuilder<K, V, E>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<K, V>, E>> + Send + 'static,
    {
        LoaderBuilder {
            fetch: Box::new(move |keys| fetch(keys).boxed()),
            max_batch: 100,
            max_wait: Duration::from_millis(2),
            clock: system_clock(),
        }
    }

    /// Loads one key, batched with the other loads of the window.
    pub async fn load(&self, key: K) -> LoadResult<V, E> {
        let (tx, rx) = oneshot::channel();
        let inner = &self.inner;
        inner.loads.inc();
        let mut full = None;
        {
            let mut p = inner.lock();
            let first = p.waiters.is_empty();
            match p.waiters.entry(key) {
                Entry::Occupied(mut e) => {
                    e.get_mut().push(tx);
                    inner.duplicates.inc();
                }
                Entry::Vacant(e) => {
                    let key = e.key().clone();
                    e.insert(vec![tx]);
                    p.keys.push(key);
                }
            }
            if p.keys.len() >= inner.max_batch {
                inner.by_size.inc();
                full = Some(Inner::take(&mut p));
            } else if first {
                let id = p.id;
                // The window starts now, not when the timer task first runs.
                let deadline = inner.clock.now() + inner.max_wait;
                let timer_inner = Arc::clone(inner);
                let timer = tokio::spawn(async move {
                    timer_inner.clock.sleep_until(deadline).await;
                    let batch = {
                        let mut p = timer_inner.lock();
                        if p.id != id || p.keys.is_empty() {
                            return;
                        }
                        p.timer = None;
                        timer_inner.by_time.inc();
                        Inner::take(&mut p)
                    };
                    timer_inner.run(batch).await;
                });
                p.timer = Some(timer.abort_handle());
            }
        }
        if let Some(batch) = full {
            tokio::spawn(Arc::clone(inner).run(batch));
        }
        rx.await.unwrap_or(Err(LoadError::Dropped))
    }

    /// Loads several keys (answers in the order of `keys`).
    pub async fn load_many(&self, keys: impl IntoIterator<Item = K>) -> Vec<LoadResult<V, E>> {
        futures::future::join_all(keys.into_iter().map(|k| self.load(k))).await
    }

    /// Counters and the batch-size distribution so far.
    pub fn stats(&self) -> LoaderStats {
        let i = &self.inner;
        LoaderStats {
            loads: i.loads.get(),
            batches: i.batches.get(),
            keys_fetched: i.keys_fetched.get(),
            duplicate_loads: i.duplicates.get(),
            flushed_by_size: i.by_size.get(),
            flushed_by_time: i.by_time.get(),
            failed_batches: i.failed.get(),
            batch_size: i.sizes.snapshot(),
        }
    }
}
