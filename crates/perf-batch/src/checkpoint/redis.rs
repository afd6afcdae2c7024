//! The Redis checkpoint store (feature `redis`): one hash per job, one field per segment.

use async_trait::async_trait;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{validate_job_id, CheckpointStore};
use crate::error::{BatchError, Result};

/// Stores checkpoints in Redis: hash `<prefix>:ckpt:<job>`, field = segment number.
///
/// `HSET` of one field is atomic, and idempotent for the same segment. The connection manager
/// reconnects after a Redis restart. Durability is Redis's: with `appendonly yes` and
/// `appendfsync always` a written segment survives a Redis crash; with the default snapshotting a
/// crash of Redis itself can lose the latest segments (their items are then run again, never
/// lost).
#[derive(Clone)]
pub struct RedisCheckpointStore {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheckpointStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_err(job: &str, e: redis::RedisError) -> BatchError {
    BatchError::CheckpointStore {
        store: "redis",
        job: job.to_owned(),
        reason: e.to_string(),
    }
}

impl RedisCheckpointStore {
    /// Connects to `url` and stores keys under `prefix`.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|source| BatchError::Redis {
            op: "open client",
            source,
        })?;
        // Fail a write fast while Redis is down (the run goes on and reports it) instead of
        // stalling the checkpointer in long reconnect loops.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| BatchError::Redis {
                op: "connect",
                source,
            })?;
        Ok(Self::from_manager(conn, prefix))
    }

    /// Uses an existing connection manager.
    pub fn from_manager(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    fn key(&self, job: &str) -> String {
        format!("{}:ckpt:{job}", self.prefix)
    }
}

#[async_trait]
impl CheckpointStore for RedisCheckpointStore {
    async fn load(&self, job: &str) -> Result<Vec<(u64, Vec<u8>)>> {
        validate_job_id(job)?;
        let mut conn = self.conn.clone();
        let map: std::collections::HashMap<u64, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.key(job))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err(job, e))?;
        let mut segments: Vec<_> = map.into_iter().collect();
        segments.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(segments)
    }

    async fn append(&self, job: &str, seq: u64, segment: Vec<u8>) -> Result<()> {
        validate_job_id(job)?;
        let mut conn = self.conn.clone();
        redis::cmd("HSET")
            .arg(self.key(job))
            .arg(seq)
            .arg(segment)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_err(job, e))
    }

    async fn clear(&self, job: &str) -> Result<()> {
        validate_job_id(job)?;
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(job))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_err(job, e))
    }
}
