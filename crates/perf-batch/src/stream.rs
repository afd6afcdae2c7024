//! [`StreamProcessor`]: groups an async stream into batches by size or by time, runs a batch
//! function on several batches at once with backpressure, and yields every batch's outcome.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use futures::FutureExt;
use perf_core::clock::{system_clock, SharedClock, Sleep};
use perf_core::config::BatchConfig;
use perf_core::resource::ResourceMonitor;

use crate::cancel::CancellationToken;
use crate::chunking::LoadProbe;
use crate::error::panic_message;
use crate::result::ItemFailure;

/// The outcome of one batch of a stream.
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamBatch<R, E> {
    /// The batch's number, from 0 in the order batches were cut.
    pub seq: u64,
    /// Items in the batch.
    pub items: usize,
    /// Why the batch was cut.
    pub trigger: FlushTrigger,
    /// The batch function's results, or why it failed (never swallowed as "0 processed").
    pub outcome: Result<Vec<R>, ItemFailure<E>>,
}

/// Why a batch was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushTrigger {
    /// The buffer reached `buffer_size`.
    Size,
    /// The flush interval passed since the batch's first item arrived.
    Time,
    /// The input ended or shutdown was requested.
    Drain,
}

/// Batches an async stream.
///
/// A batch is cut when `buffer_size` items are buffered, or when `flush_interval` has passed
/// since its first item arrived — the timer fires on its own, with no further item needed —
/// or when the input ends or [shutdown](Self::shutdown_token) is requested. Up to
/// `max_concurrent_batches` batches run at once. Backpressure: the input is not read while
/// `max_in_flight_items` items are buffered or running, or while this process's RSS is over
/// the memory ceiling (unless nothing runs). Shutdown stops reading the input, flushes the buffer
/// and lets the running batches finish before the output stream ends.
///
/// ```
/// use futures::StreamExt;
/// use perf_batch::StreamProcessor;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let processor = StreamProcessor::new().buffer_size(4);
/// let input = futures::stream::iter(0..10u32);
/// let batches: Vec<_> = processor
///     .process(input, |batch: Vec<u32>| async move { Ok::<_, String>(batch.iter().map(|x| x * 2).collect()) })
///     .collect()
///     .await;
/// let sizes: Vec<_> = batches.iter().map(|b| b.items).collect();
/// assert_eq!(sizes, vec![4, 4, 2]);
/// assert_eq!(batches[2].outcome.as_ref().unwrap(), &vec![16, 18]);
/// # });
/// ```
#[derive(Clone)]
pub struct StreamProcessor {
    buffer_size: usize,
    flush_interval: Duration,
    max_concurrent: usize,
    max_in_flight: usize,
    memory_ceiling: Option<u64>,
    ordered: bool,
    clock: SharedClock,
    probe: Option<Arc<dyn LoadProbe>>,
    shutdown: Option<CancellationToken>,
}

impl fmt::Debug for StreamProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProcessor")
            .field("buffer_size", &self.buffer_size)
            .field("flush_interval", &self.flush_interval)
            .field("max_concurrent_batches", &self.max_concurrent)
            .field("max_in_flight_items", &self.max_in_flight)
            .field("memory_ceiling", &self.memory_ceiling)
            .field("ordered", &self.ordered)
            .finish_non_exhaustive()
    }
}

impl Default for StreamProcessor {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamProcessor {
    /// Buffer 1000 items, flush every 5 s, 10 batches at once, at most 10 000 items in flight,
    /// ordered output, no memory ceiling.
    pub fn new() -> Self {
        Self {
            buffer_size: 1000,
            flush_interval: Duration::from_secs(5),
            max_concurrent: 10,
            max_in_flight: 10_000,
            memory_ceiling: None,
            ordered: true,
            clock: system_clock(),
            probe: None,
            shutdown: None,
        }
    }

    /// From `[batch]`: `chunk_size` as the buffer size, `max_concurrency` batches,
    /// `target_chunk_ms` as the flush interval, `memory_threshold_mb` as the memory ceiling,
    /// `preserve_order`. With `enabled = false`, one batch at a time, in order.
    pub fn from_config(config: &BatchConfig) -> Self {
        let buffer = usize::try_from(config.chunk_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let concurrent = if config.enabled {
            usize::try_from(config.max_concurrency).unwrap_or(1).max(1)
        } else {
            1
        };
        Self::new()
            .buffer_size(buffer)
            .max_concurrent_batches(concurrent)
            .max_in_flight_items(buffer.saturating_mul(concurrent + 1))
            .flush_interval(Duration::from_millis(config.target_chunk_ms.max(1)))
            .memory_ceiling_bytes(Some(config.memory_threshold_mb.saturating_mul(1 << 20)))
            .ordered(config.preserve_order || !config.enabled)
    }

    /// Items per batch.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n.max(1);
        self
    }

    /// Longest time an item waits in the buffer.
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// Batches running at once.
    pub fn max_concurrent_batches(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Items buffered or running at once (at least one batch's worth).
    pub fn max_in_flight_items(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Stops reading the input while RSS is over `bytes` (and a batch is running). Uses
    /// perf-core's resource monitor unless a [probe](Self::load_probe) is set.
    pub fn memory_ceiling_bytes(mut self, bytes: Option<u64>) -> Self {
        self.memory_ceiling = bytes;
        if bytes.is_some() && self.probe.is_none() {
            self.probe = ResourceMonitor::new()
                .ok()
                .map(|m| Arc::new(m) as Arc<dyn LoadProbe>);
        }
        self
    }

    /// Replaces the RSS probe.
    pub fn load_probe(mut self, probe: Arc<dyn LoadProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Yields batches in the order they were cut (`true`) or as they finish (`false`).
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Sets the clock of the flush timer (a manual clock in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Graceful shutdown: once `token` is cancelled the input is no longer read, the buffer is
    /// flushed, running batches finish, and then the output ends.
    pub fn shutdown_token(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(token);
        self
    }

    /// Processes `input` with the batch function `f`, yielding one [`StreamBatch`] per batch.
    pub fn process<S, T, R, E, F, Fut>(
        &self,
        input: S,
        f: F,
    ) -> impl Stream<Item = StreamBatch<R, E>>
    where
        S: Stream<Item = T>,
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = Result<Vec<R>, E>>,
    {
        let state = State::new(self.clone(), input, f, None);
        futures::stream::unfold(state, State::step)
    }

    /// Like [`process`](Self::process), driven by a spawned task: running batches keep making
    /// progress while the consumer of the output is slow (a plain stream such as
    /// `buffer_unordered` only polls its futures when the consumer asks for the next output).
    /// Finished batches wait for the consumer and count against `max_in_flight_items` (plus
    /// one batch in the hand-off to the consumer), so a slow consumer still slows the reading of
    /// the input. Dropping the returned stream stops the task.
    ///
    /// ```
    /// use futures::StreamExt;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let processor = perf_batch::StreamProcessor::new().buffer_size(2);
    /// let out = processor.spawn(futures::stream::iter(0..5u32), |b: Vec<u32>| async move { Ok::<_, ()>(b) });
    /// let sizes: Vec<usize> = out.map(|b| b.items).collect().await;
    /// assert_eq!(sizes, vec![2, 2, 1]);
    /// # });
    /// ```
    pub fn spawn<S, T, R, E, F, Fut>(&self, input: S, f: F) -> SpawnedBatches<R, E>
    where
        S: Stream<Item = T> + Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, E>> + Send + 'static,
    {
        let undelivered = Arc::new(Outbox::default());
        let state = State::new(self.clone(), input, f, Some(undelivered.clone()));
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let driver = tokio::spawn(async move {
            let stream = futures::stream::unfold(state, State::step);
            futures::pin_mut!(stream);
            let mut outbox = std::collections::VecDeque::new();
            let mut input_over = false;
            loop {
                if input_over && outbox.is_empty() {
                    return;
                }
                let has_out = !outbox.is_empty();
                tokio::select! {
                    biased;
                    permit = tx.reserve(), if has_out => {
                        let Ok(permit) = permit else { return };
                        if let Some(batch) = outbox.pop_front() {
                            let batch: StreamBatch<R, E> = batch;
                            undelivered.items.fetch_sub(batch.items, std::sync::atomic::Ordering::AcqRel);
                            undelivered.taken.notify_one();
                            permit.send(batch);
                        }
                    }
                    next = stream.next(), if !input_over => match next {
                        Some(batch) => {
                            undelivered.items.fetch_add(batch.items, std::sync::atomic::Ordering::AcqRel);
                            outbox.push_back(batch);
                        }
                        None => input_over = true,
                    },
                }
            }
        });
        SpawnedBatches { rx, driver }
    }
}

struct State<S, T, R, E, F, Fut> {
    cfg: StreamProcessor,
    input: std::pin::Pin<Box<S>>,
    f: F,
    buffer: Vec<T>,
    timer: Option<Sleep>,
    flush_due: bool,
    input_done: bool,
    in_flight: FuturesUnordered<BatchFuture<Fut, R, E>>,
    in_flight_items: usize,
    next_seq: u64,
    next_out: u64,
    reorder: BTreeMap<u64, StreamBatch<R, E>>,
    memory_blocked: bool,
    /// Finished batches not yet handed to the consumer (spawned mode).
    undelivered: Option<Arc<Outbox>>,
}

/// Items of finished batches waiting for the consumer, and a wake-up when some are taken.
#[derive(Debug, Default)]
struct Outbox {
    items: std::sync::atomic::AtomicUsize,
    taken: tokio::sync::Notify,
}

/// The output of [`StreamProcessor::spawn`]: batches as the spawned driver finishes them.
#[derive(Debug)]
pub struct SpawnedBatches<R, E> {
    rx: tokio::sync::mpsc::Receiver<StreamBatch<R, E>>,
    driver: tokio::task::JoinHandle<()>,
}

impl<R, E> Stream for SpawnedBatches<R, E> {
    type Item = StreamBatch<R, E>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<R, E> Drop for SpawnedBatches<R, E> {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

enum Event<T, R, E> {
    Shutdown,
    Taken,
    Finished(StreamBatch<R, E>),
    Timer,
    Item(Option<T>),
}

/// A running batch: its number, size, trigger and the batch function's future with panics
/// caught.
struct BatchFuture<Fut, R, E> {
    seq: u64,
    items: usize,
    trigger: FlushTrigger,
    // One allocation per batch keeps this future `Unpin` without unsafe pin projection.
    fut: std::pin::Pin<Box<CaughtBatch<Fut, R, E>>>,
}

/// The batch function's future with its panics caught, or the panic of the call itself.
type CaughtBatch<Fut, R, E> = futures::future::Either<
    futures::future::CatchUnwind<AssertUnwindSafe<Fut>>,
    futures::future::Ready<std::thread::Result<Result<Vec<R>, E>>>,
>;

impl<Fut, R, E> Future for BatchFuture<Fut, R, E>
where
    Fut: Future<Output = Result<Vec<R>, E>>,
{
    type Output = StreamBatch<R, E>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let (seq, items, trigger) = (self.seq, self.items, self.trigger);
        self.fut.as_mut().poll(cx).map(|r| StreamBatch {
            seq,
            items,
            trigger,
            outcome: match r {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(ItemFailure::Error(e)),
                Err(p) => Err(ItemFailure::Panicked(panic_message(p.as_ref()))),
            },
        })
    }
}

impl<S, T, R, E, F, Fut> State<S, T, R, E, F, Fut>
where
    S: Stream<Item = T>,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, E>>,
{
    /// The state at the start of a run; `undelivered` is set in spawned mode.
    fn new(cfg: StreamProcessor, input: S, f: F, undelivered: Option<Arc<Outbox>>) -> Self {
        State {
            cfg,
            input: Box::pin(input),
            f,
            buffer: Vec::new(),
            timer: None,
            flush_due: false,
            input_done: false,
            in_flight: FuturesUnordered::new(),
            in_flight_items: 0,
            next_seq: 0,
            next_out: 0,
            reorder: BTreeMap::new(),
            memory_blocked: false,
            undelivered,
        }
    }

    fn dispatch(&mut self, trigger: FlushTrigger) {
        let batch = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.cfg.buffer_size));
        self.timer = None;
        self.flush_due = false;
        let items = batch.len();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight_items += items;
        let fut = Box::pin(
            match std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(batch))) {
                Ok(fut) => futures::future::Either::Left(AssertUnwindSafe(fut).catch_unwind()),
                Err(p) => futures::future::Either::Right(futures::future::ready(Err(p))),
            },
        );
        self.in_flight.push(BatchFuture {
            seq,
            items,
            trigger,
            fut,
        });
        if let (Some(ceiling), Some(probe)) = (self.cfg.memory_ceiling, &self.cfg.probe) {
            self.memory_blocked = probe.rss_bytes() > ceiling;
        }
    }

    fn finished(&mut self, batch: StreamBatch<R, E>) -> Option<StreamBatch<R, E>> {
        self.in_flight_items -= batch.items;
        if self.memory_blocked {
            self.memory_blocked = match (self.cfg.memory_ceiling, &self.cfg.probe) {
                (Some(ceiling), Some(probe)) => probe.rss_bytes() > ceiling,
                _ => false,
            };
        }
        if !self.cfg.ordered {
            return Some(batch);
        }
        self.reorder.insert(batch.seq, batch);
        self.pop_ordered()
    }

    fn pop_ordered(&mut self) -> Option<StreamBatch<R, E>> {
        let b = self.reorder.remove(&self.next_out)?;
        self.next_out += 1;
        Some(b)
    }

    async fn step(mut self) -> Option<(StreamBatch<R, E>, Self)> {
        loop {
            if let Some(b) = self.pop_ordered() {
                return Some((b, self));
            }
            let stopping = self.input_done;
            // Cut a batch when it is full, due, or the input is over, if a slot is free.
            if !self.buffer.is_empty() && self.in_flight.len() < self.cfg.max_concurrent {
                // A batch never waits for more items than the in-flight bound lets in.
                if self.buffer.len() >= self.cfg.buffer_size.min(self.cfg.max_in_flight) {
                    self.dispatch(FlushTrigger::Size);
                    continue;
                }
                if self.flush_due {
                    self.dispatch(FlushTrigger::Time);
                    continue;
                }
                if stopping {
                    self.dispatch(FlushTrigger::Drain);
                    continue;
                }
            }
            if stopping && self.buffer.is_empty() && self.in_flight.is_empty() {
                return None;
            }
            let nothing_runs = self.in_flight.is_empty();
            let waiting = self
                .undelivered
                .as_ref()
                .map_or(0, |u| u.items.load(std::sync::atomic::Ordering::Acquire));
            let can_pull = !self.input_done
                && self.buffer.len() < self.cfg.buffer_size
                && self.buffer.len() + self.in_flight_items + waiting
                    < self.cfg.max_in_flight.max(1)
                && (!self.memory_blocked || nothing_runs);
            let shutdown = self.cfg.shutdown.clone();
            let watch_shutdown = shutdown.is_some() && !self.input_done;
            let timer_armed = self.timer.is_some() && !self.flush_due;
            let running = !self.in_flight.is_empty();
            // Spawned mode with the bound reached by undelivered batches: wait for the consumer.
            let waiting_on_consumer = waiting > 0 && !self.input_done;
            let outbox = self.undelivered.clone();
            let event = {
                let (timer, input, in_flight) =
                    (&mut self.timer, &mut self.input, &mut self.in_flight);
                tokio::select! {
                    biased;
                    () = async {
                        match &shutdown {
                            Some(t) => t.cancelled().await,
                            None => std::future::pending().await,
                        }
                    }, if watch_shutdown => Event::Shutdown,
                    Some(done) = in_flight.next(), if running => Event::Finished(done),
                    () = async {
                        match timer.as_mut() {
                            Some(t) => t.await,
                            None => std::future::pending().await,
                        }
                    }, if timer_armed => Event::Timer,
                    item = input.next(), if can_pull => Event::Item(item),
                    () = async {
                        match &outbox {
                            Some(o) => o.taken.notified().await,
                            None => std::future::pending().await,
                        }
                    }, if waiting_on_consumer => Event::Taken,
                }
            };
            match event {
                Event::Shutdown => self.input_done = true,
                Event::Finished(done) => {
                    if let Some(out) = self.finished(done) {
                        return Some((out, self));
                    }
                }
                Event::Timer => self.flush_due = true,
                Event::Item(Some(item)) => {
                    if self.buffer.is_empty() {
                        self.timer = Some(self.cfg.clock.sleep(self.cfg.flush_interval));
                    }
                    self.buffer.push(item);
                }
                Event::Item(None) => self.input_done = true,
                Event::Taken => {}
            }
        }
    }
}
