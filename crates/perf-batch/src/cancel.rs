//! A cancellation token: cheap to clone, checked between items, awaited by the processors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Asks a running batch or stream to stop.
///
/// Clones share one flag. After [`cancel`](Self::cancel) a [`BatchProcessor`](crate::BatchProcessor)
/// starts no new item, drops the items in flight and returns a result with status
/// [`Cancelled`](crate::BatchStatus::Cancelled) holding what finished before.
///
/// ```
/// let token = perf_batch::CancellationToken::new();
/// let other = token.clone();
/// assert!(!other.is_cancelled());
/// token.cancel();
/// assert!(other.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancellationToken {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancellationToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every holder of this token and wakes those waiting in
    /// [`cancelled`](Self::cancelled).
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Completes once the token is cancelled (at once if it already is).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let token = perf_batch::CancellationToken::new();
    /// token.cancel();
    /// token.cancelled().await;
    /// # });
    /// ```
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag, so a cancel between the check and the await is
            // not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
