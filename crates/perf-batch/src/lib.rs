//! `perf-batch`: process large item lists and endless streams with bounded resources, and
//! resume after a crash without losing or redoing finished work.
//!
//! - [`BatchProcessor`]: an item function over a `Vec` or iterator, async or CPU-bound, with
//!   four chunking strategies (FIXED, DYNAMIC, ADAPTIVE, MEMORY_BASED), bounded concurrency,
//!   retries with backoff and jitter, fail-fast, ordered results, progress, cancellation and a
//!   [`BatchResult`] that reports every failed item by index; a panicking item is that item's
//!   error, not the batch's end.
//! - [`checkpoint`]: durable checkpoints (file; Redis and PostgreSQL behind features) so a
//!   resumed run returns the complete, ordered result without re-running finished items.
//! - [`StreamProcessor`]: batches an async stream by size or by time (the flush timer fires with
//!   no new item), several batches at once, backpressure on in-flight items and memory, every
//!   batch's error surfaced, ordered or unordered output, graceful shutdown that drains;
//!   [`StreamProcessor::spawn`] keeps batches progressing while the consumer is slow.
//! - [`Loader`]: request coalescing (the DataLoader pattern): `load(key)` calls within a window
//!   become one batch call, duplicate keys are fetched once, each caller gets its own answer.
//! - `distributed` (feature `redis`): chunks spread over worker processes with Redis Streams
//!   consumer groups, reclaimed from crashed workers, dead-lettered when they keep failing.
//!
//! What it is not: not a general job scheduler (the Redis distribution runs the chunks of one
//! job, not arbitrary tasks), and `BatchProcessor` does not spawn tasks for async items (they
//! run on the task that awaits the batch; CPU-bound items go to tokio's blocking pool). The
//! loader and `StreamProcessor::spawn` do spawn tokio tasks, so they need a tokio runtime.
//!
//! ```
//! use perf_batch::{BatchProcessor, BatchStatus, RetryPolicy};
//! use std::time::Duration;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let processor = BatchProcessor::from_config(&perf_core::config::BatchConfig::default())?
//!     .retry(RetryPolicy::new(2, Duration::from_millis(1)))
//!     .max_concurrency(8);
//! let docs = vec!["a", "bb", "ccc"];
//! let result = processor.run(docs, |doc| async move { Ok::<_, String>(doc.len()) }).await;
//! assert_eq!(result.status, BatchStatus::Completed);
//! assert_eq!(result.into_values(), vec![1, 2, 3]);
//! # Ok::<(), perf_batch::BatchError>(())
//! # }).unwrap();
//! ```

mod cancel;
pub mod checkpoint;
pub mod chunking;
mod coalesce;
#[cfg(feature = "redis")]
pub mod distributed;
mod engine;
mod error;
mod processor;
mod progress;
mod result;
mod retry;
mod stream;

pub use cancel::CancellationToken;
pub use chunking::{LoadProbe, LoadSample};
pub use coalesce::{LoadError, LoadResult, Loader, LoaderBuilder, LoaderStats};
pub use error::{BatchError, Result};
pub use perf_core::config::ChunkStrategy;
pub use processor::BatchProcessor;
#[cfg(feature = "progress")]
pub use progress::progress_bar;
pub use progress::{Progress, ProgressCallback};
pub use result::{BatchResult, BatchStatus, ItemError, ItemFailure};
pub use retry::{RetryPolicy, RetryPredicate};
pub use stream::{FlushTrigger, SpawnedBatches, StreamBatch, StreamProcessor};
