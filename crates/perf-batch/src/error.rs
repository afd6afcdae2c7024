//! The one error type of perf-batch.

/// Everything that can go wrong in perf-batch outside an item function.
///
/// An item function's own failures are not this type: they are reported per item as
/// [`ItemError`](crate::ItemError) in the [`BatchResult`](crate::BatchResult). The enum is
/// `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// An option is out of range.
    #[error("invalid batch option {field} = {value}: {reason}")]
    InvalidOption {
        /// The option's name.
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A checkpoint job id contains characters a store cannot use as a name.
    #[error("invalid checkpoint job id {job:?}: use 1 to 128 characters from [A-Za-z0-9_.-]")]
    InvalidJobId {
        /// The job id given.
        job: String,
    },
    /// A checkpoint store could not be read or written.
    #[error("checkpoint store {store} failed for job {job:?}: {reason}")]
    CheckpointStore {
        /// Which store (`file`, `redis`, `postgres`).
        store: &'static str,
        /// The job id.
        job: String,
        /// What failed.
        reason: String,
    },
    /// A stored checkpoint segment does not decode (corrupted, or written for another result
    /// type).
    #[error("checkpoint segment {seq} of job {job:?} is unreadable: {source}")]
    CheckpointCorrupt {
        /// The job id.
        job: String,
        /// The segment's sequence number.
        seq: u64,
        /// The codec's error.
        source: perf_core::Error,
    },
    /// A result could not be encoded into a checkpoint.
    #[error("cannot encode results for a checkpoint: {0}")]
    Encode(perf_core::Error),
    /// The stream processor or the loader was shut down.
    #[error("the processor is shut down")]
    Shutdown,
    /// A batch function of the stream processor or the loader failed.
    #[error("batch function failed: {0}")]
    BatchFunction(String),
    /// A batch function panicked.
    #[error("batch function panicked: {0}")]
    BatchPanicked(String),
    /// A Redis command failed (feature `redis`).
    #[cfg(feature = "redis")]
    #[error("redis error during {op}: {source}")]
    Redis {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        source: redis::RedisError,
    },
}

/// `Result` with perf-batch's [`BatchError`].
pub type Result<T, E = BatchError> = std::result::Result<T, E>;

/// Turns a panic payload into a message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
