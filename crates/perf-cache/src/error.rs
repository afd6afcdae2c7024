//! The crate's error type: one enum for every tier, with the input that went wrong.

use std::sync::Arc;

/// Everything that can go wrong in perf-cache.
///
/// ```
/// let e = perf_cache::Error::LoaderFailed { reason: "upstream 503".into() };
/// assert!(e.to_string().contains("upstream 503"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid cache configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The field, e.g. `max_bytes`.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A value is larger than the L1 budget (or its per-entry limit) and was not stored.
    #[error("value of {weight} bytes exceeds the L1 budget of {budget} bytes")]
    TooLarge {
        /// The entry's weight in bytes.
        weight: u64,
        /// The budget it exceeded.
        budget: u64,
    },
    /// The loader of a `get_or_compute` call failed; the failure was not cached.
    #[error("loader failed: {reason}")]
    LoaderFailed {
        /// The loader's error, rendered as text (shared with every waiter).
        reason: String,
    },
    /// A loader failure shared with every waiter of a single-flight call, with its source.
    #[error("loader failed: {0}")]
    Loader(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// The computation a single-flight waiter was waiting for was cancelled and could not be
    /// taken over.
    #[error("the in-flight computation was cancelled")]
    Cancelled,
    /// A negative-cache entry says this key recently failed to load.
    #[error("negatively cached: the last load of this key failed {reason}")]
    NegativelyCached {
        /// The failure that was cached.
        reason: String,
    },
    /// Reading or writing a snapshot file failed.
    #[error("snapshot I/O on {path}: {reason}")]
    SnapshotIo {
        /// The file.
        path: String,
        /// The operating system's error.
        reason: String,
    },
    /// A remote tier (Redis, PostgreSQL) answered a command with an error or the connection
    /// failed; `reason` is the client's message (it never holds cache values).
    #[error("{tier} {op} failed: {reason}")]
    Remote {
        /// The tier, e.g. `redis` or `postgres`.
        tier: &'static str,
        /// The operation, e.g. `mget`.
        op: &'static str,
        /// The client's error message.
        reason: String,
    },
    /// A remote tier did not answer within its per-call timeout.
    #[error("{tier} {op} timed out after {after_ms} ms")]
    Timeout {
        /// The tier, e.g. `redis`.
        tier: &'static str,
        /// The operation, e.g. `get`.
        op: &'static str,
        /// The timeout that expired, in milliseconds.
        after_ms: u64,
    },
    /// The tiered manager skipped a level whose recent calls failed; it retries after the
    /// backoff period.
    #[error("{tier} is marked down after repeated failures; next attempt in {retry_in_ms} ms")]
    TierUnavailable {
        /// The tier, e.g. `l2`.
        tier: &'static str,
        /// Milliseconds until the manager calls the level again.
        retry_in_ms: u64,
    },
    /// perf-core (codec, keys, config) reported an error.
    #[error(transparent)]
    Core(Arc<perf_core::Error>),
}

impl From<perf_core::Error> for Error {
    fn from(e: perf_core::Error) -> Self {
        Self::Core(Arc::new(e))
    }
}

/// A cache error as an [`std::io::Error`] of kind `Other`, so functions returning
/// `io::Result` can use `?` on cache calls (and the `#[cached]` attribute).
///
/// ```
/// let e: std::io::Error = perf_cache::Error::LoaderFailed { reason: "down".into() }.into();
/// assert_eq!(e.kind(), std::io::ErrorKind::Other);
/// assert!(e.to_string().contains("down"));
/// ```
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e)
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
