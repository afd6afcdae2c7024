//! Durable checkpoints: the [`CheckpointStore`] trait, its segment format and the stores
//! (file; Redis with feature `redis`; PostgreSQL with feature `postgres`).
//!
//! A checkpointed run appends one *segment* per `checkpoint_interval` finished items: the
//! indices and results of the items that succeeded since the previous segment, encoded with
//! perf-core's codec (checksummed). Segments are numbered; a store keeps every segment of a
//! job until [`CheckpointStore::clear`]. Writing only new entries keeps the total checkpoint cost
//! linear in the number of items, and segments are written in the background of the run.

use std::fmt;

use async_trait::async_trait;

use crate::error::{BatchError, Result};

mod file;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

pub use file::FileCheckpointStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCheckpointStore;
#[cfg(feature = "redis")]
pub use redis::RedisCheckpointStore;

/// Durable storage of checkpoint segments, keyed by job id and sequence number.
///
/// Implementations must make [`append`](Self::append) atomic (a segment is stored whole or not
/// at all) and durable once it returns, and idempotent for the same `(job, seq)`.
#[async_trait]
pub trait CheckpointStore: Send + Sync + fmt::Debug {
    /// Every stored segment of `job`, ordered by sequence number.
    async fn load(&self, job: &str) -> Result<Vec<(u64, Vec<u8>)>>;
    /// Stores segment `seq` of `job`.
    async fn append(&self, job: &str, seq: u64, segment: Vec<u8>) -> Result<()>;
    /// Deletes every segment of `job`.
    async fn clear(&self, job: &str) -> Result<()>;
}

/// Checks that a job id is usable as a file, key or row name: 1–128 of `[A-Za-z0-9_.-]`, not
/// starting with a dot.
///
/// ```
/// assert!(perf_batch::checkpoint::validate_job_id("embed-2026_11.v2").is_ok());
/// assert!(perf_batch::checkpoint::validate_job_id("../etc").is_err());
/// assert!(perf_batch::checkpoint::validate_job_id("").is_err());
/// ```
pub fn validate_job_id(job: &str) -> Result<()> {
    let ok = !job.is_empty()
        && job.len() <= 128
        && !job.starts_with('.')
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BatchError::InvalidJobId {
            job: job.to_owned(),
        })
    }
}

/// Encodes `(index, result)` entries as one segment.
pub(crate) fn encode_segment<R: serde::Serialize>(
    entries: &[(u64, &R)],
) -> perf_core::Result<Vec<u8>> {
    perf_core::codec::encode(entries)
}

/// Decodes every segment of `job` into `(index, result)` entries.
pub(crate) fn decode_segments<R: serde::de::DeserializeOwned>(
    job: &str,
    segments: &[(u64, Vec<u8>)],
) -> Result<std::collections::HashMap<usize, R>> {
    let mut out = std::collections::HashMap::new();
    for (seq, bytes) in segments {
        let entries: Vec<(u64, R)> =
            perf_core::codec::decode(bytes).map_err(|source| BatchError::CheckpointCorrupt {
                job: job.to_owned(),
                seq: *seq,
                source,
            })?;
        for (idx, r) in entries {
            out.insert(idx as usize, r);
        }
    }
    Ok(out)
}
