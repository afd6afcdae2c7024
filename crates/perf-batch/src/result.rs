//! What a batch run returns: status, counts, results, per-item errors and measurements.

use std::time::Duration;

use crate::error::BatchError;

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchStatus {
    /// Every item succeeded.
    Completed,
    /// Every item ran; some failed and some succeeded.
    Partial,
    /// The batch stopped at a failure (fail-fast), or every item failed.
    Failed,
    /// The batch was cancelled before every item ran.
    Cancelled,
}

/// Why one item failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ItemFailure<E> {
    /// The item function returned this error on its last attempt.
    Error(E),
    /// The item function panicked; the message of the panic.
    Panicked(String),
}

/// One failed item.
#[derive(Debug)]
pub struct ItemError<E> {
    /// The item's position in the input.
    pub index: usize,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// What went wrong.
    pub failure: ItemFailure<E>,
}

/// The outcome of [`BatchProcessor::run`](crate::BatchProcessor::run) and its variants.
#[derive(Debug)]
#[non_exhaustive]
pub struct BatchResult<R, E> {
    /// How the batch ended.
    pub status: BatchStatus,
    /// Items in the input (items seen, plus the remaining length the input reported when the
    /// batch stopped early).
    pub total_items: usize,
    /// Items that succeeded (including those restored from a checkpoint).
    pub succeeded: usize,
    /// Items that failed.
    pub failed: usize,
    /// Items restored from a checkpoint instead of being run.
    pub resumed: usize,
    /// Retries made across all items.
    pub retries: u64,
    /// `(index, result)` of every successful item: in input order with `preserve_order`,
    /// otherwise in completion order.
    pub results: Vec<(usize, R)>,
    /// Every failed item, with its index.
    pub errors: Vec<ItemError<E>>,
    /// Wall time of the run.
    pub duration: Duration,
    /// Items finished per second.
    pub throughput: f64,
    /// Highest resident memory seen during the run, when the probe is available.
    pub peak_rss_bytes: Option<u64>,
    /// Checkpoint segments written during this run.
    pub checkpoints: usize,
    /// Checkpoint writes that failed (the run continued; those items are written with a later
    /// segment when possible, or run again on resume).
    pub checkpoint_errors: Vec<BatchError>,
    /// Size of every chunk, in order (shows how DYNAMIC, ADAPTIVE and MEMORY_BASED sized them).
    pub chunk_sizes: Vec<usize>,
}

impl<R, E> BatchResult<R, E> {
    /// Items that did not run (cancelled or stopped by fail-fast).
    pub fn not_run(&self) -> usize {
        self.total_items
            .saturating_sub(self.succeeded + self.failed)
    }

    /// Share of items that succeeded, from 0 to 1 (0 for an empty batch).
    pub fn success_rate(&self) -> f64 {
        if self.total_items == 0 {
            0.0
        } else {
            self.succeeded as f64 / self.total_items as f64
        }
    }

    /// The successful results without their indices.
    pub fn into_values(self) -> Vec<R> {
        self.results.into_iter().map(|(_, r)| r).collect()
    }
}
