//! Single-flight: concurrent callers for one key share one computation.
//!
//! [`SingleFlight`] is independent of L1 so that any tier (the tiered manager, a Redis-backed
//! loader) can coalesce its own work. The protocol:
//!
//! - [`SingleFlight::begin`] returns [`Flight::Leader`] to the first caller for a key and
//!   [`Flight::Follower`] to the callers that arrive while it runs.
//! - The leader computes and calls [`Leader::complete`]; every follower's
//!   [`Follower::wait`] then returns a clone of the result (errors included — they are shared,
//!   not cached).
//! - If the leader is dropped without completing (its future was cancelled, it panicked), the
//!   key is released and every follower's `wait` returns `None`: a follower then calls `begin`
//!   again, and one of them becomes the new leader. Nobody hangs.
//!
//! [`SingleFlight::run`] wraps that loop for the common case.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use perf_cache::single_flight::SingleFlight;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let flights: SingleFlight<&str, u64> = SingleFlight::new();
//! let calls = AtomicUsize::new(0);
//! let load = || async {
//!     calls.fetch_add(1, Ordering::SeqCst);
//!     tokio::task::yield_now().await;
//!     Ok::<_, perf_cache::Error>(7)
//! };
//! let (a, b) = tokio::join!(flights.run("k", load), flights.run("k", load));
//! assert_eq!((a.unwrap(), b.unwrap()), (7, 7));
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::error::{Error, Result};

type Shared<V> = Option<Result<V>>;

struct Call<V> {
    id: u64,
    rx: watch::Receiver<Shared<V>>,
}

struct State<K, V> {
    calls: Mutex<HashMap<K, Call<V>>>,
    next_id: AtomicU64,
}

/// A table of in-flight computations keyed by `K`, producing `V`. Cheap to clone (clones share
/// the table).
pub struct SingleFlight<K, V> {
    state: Arc<State<K, V>>,
}

impl<K, V> Clone for SingleFlight<K, V> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<K, V> fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &lock(&self.state.calls).len())
            .finish()
    }
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            state: Arc::new(State {
                calls: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map is only ever inserted into or removed from; it is consistent after any panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`SingleFlight::begin`] made of a caller.
#[derive(Debug)]
pub enum Flight<K: Hash + Eq + Clone, V: Clone> {
    /// This caller computes; it must call [`Leader::complete`] (dropping it releases the key).
    Leader(Leader<K, V>),
    /// Another caller computes; wait for it.
    Follower(Follower<V>),
}

/// The caller that computes a key's value.
pub struct Leader<K: Hash + Eq + Clone, V: Clone> {
    state: Arc<State<K, V>>,
    key: Option<K>,
    id: u64,
    tx: watch::Sender<Shared<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> fmt::Debug for Leader<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leader").field("id", &self.id).finish()
    }
}

/// A caller waiting for a leader.
pub struct Follower<V> {
    rx: watch::Receiver<Shared<V>>,
}

impl<V> fmt::Debug for Follower<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys being computed now.
    pub fn in_flight(&self) -> usize {
        lock(&self.state.calls).len()
    }

    /// For a background refresh of `key`: the current tokio runtime and the lead of a new
    /// flight, or `None` when there is no runtime to run it on or a flight for `key` is
    /// already running (it will store a fresh value itself).
    pub(crate) fn begin_background(
        &self,
        key: K,
    ) -> Option<(tokio::runtime::Handle, Leader<K, V>)> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        match self.begin(key) {
            Flight::Leader(leader) => Some((runtime, leader)),
            Flight::Follower(_) => None,
        }
    }

    /// Joins the computation of `key`, or starts it.
    pub fn begin(&self, key: K) -> Flight<K, V> {
        let mut calls = lock(&self.state.calls);
        if let Some(call) = calls.get(&key) {
            // A leader that dropped without completing removes its entry in `Drop`, so a
            // present entry is live — but its sender may be mid-drop; `wait` handles that.
            return Flight::Follower(Follower {
                rx: call.rx.clone(),
            });
        }
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        calls.insert(key.clone(), Call { id, rx });
        Flight::Leader(Leader {
            state: self.state.clone(),
            key: Some(key),
            id,
            tx,
        })
    }

    /// Computes `key` once for every concurrent caller: the first runs `compute`, the others
    /// wait for its result (a clone of it, error included). If the leader is cancelled, a
    /// waiting caller takes over with its own `compute`.
    pub async fn run<F, Fut>(&self, key: K, compute: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        loop {
            match self.begin(key.clone()) {
                Flight::Leader(leader) => {
                    let result = compute().await;
                    leader.complete(&result);
                    return result;
                }
                Flight::Follower(follower) => {
                    if let Some(result) = follower.wait().await {
                        return result;
                    }
                }
            }
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Leader<K, V> {
    /// Publishes `result` to every follower and releases the key.
    pub fn complete(mut self, result: &Result<V>) {
        self.release();
        // No receiver left is fine: nobody was waiting.
        let _ = self.tx.send(Some(result.clone()));
    }

    fn release(&mut self) {
        if let Some(key) = self.key.take() {
            let mut calls = lock(&self.state.calls);
            if calls.get(&key).is_some_and(|c| c.id == self.id) {
                calls.remove(&key);
            }
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leader<K, V> {
    fn drop(&mut self) {
        // Cancelled or panicked before completing: release the key so a follower takes over.
        // Dropping `tx` afterwards closes the channel and wakes every follower with `None`.
        self.release();
    }
}

impl<V: Clone> Follower<V> {
    /// The leader's result, or `None` when the leader was dropped without completing.
    pub async fn wait(mut self) -> Option<Result<V>> {
        let outcome = match self.rx.wait_for(Option::is_some).await {
            Ok(value) => Some(value.clone()),
            Err(_) => None,
        };
        match outcome {
            Some(value) => value,
            // The sender is gone; it may still have sent a value just before dropping.
            None => self.rx.borrow().clone(),
        }
    }
}

/// Converts a loader's error into the crate's shared error.
pub(crate) fn loader_error<E>(e: E) -> Error
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    Error::Loader(Arc::from(e.into()))
}
