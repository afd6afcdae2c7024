//! Distribution over many processes through Redis Streams consumer groups (feature `redis`):
//! a producer enqueues chunks with `XADD`, [`RedisWorker`]s in any number of processes take them
//! with `XREADGROUP`, write each chunk's result once (`HSETNX`) and `XACK`; chunks of a crashed
//! worker are reclaimed with `XAUTOCLAIM` after the visibility timeout; a chunk delivered more
//! than `max_deliveries` times goes to a dead-letter stream.
//!
//! Keys under the queue's prefix: `<p>:chunks` (the stream, group `perf-batch`),
//! `<p>:results` (chunk id → encoded results), `<p>:dead` (dead-letter stream),
//! `<p>:dead_chunks` (chunk id → deliveries, counted once), `<p>:errors` (chunk id → last
//! error), `<p>:meta` (`total` chunks).
//!
//! Guarantees: at-least-once processing, exactly-once results (the first result of a chunk
//! wins and later deliveries of a finished chunk are acknowledged without running it).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use perf_core::clock::{system_clock, SharedClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cancel::CancellationToken;
use crate::error::{panic_message, BatchError, Result};

const GROUP: &str = "perf-batch";

fn rerr(op: &'static str) -> impl FnOnce(redis::RedisError) -> BatchError {
    move |source| BatchError::Redis { op, source }
}

/// A distributed job's queue in Redis: enqueue chunks, watch progress, collect results.
///
/// Each process connects its own queue (one connection manager each; workers block on reads,
/// so they never share a connection with other callers).
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Progress of a distributed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStatus {
    /// Chunks enqueued.
    pub total: u64,
    /// Chunks with a result.
    pub done: u64,
    /// Chunks moved to the dead-letter stream.
    pub dead: u64,
}

impl QueueStatus {
    /// Every chunk has a result or is dead.
    pub fn is_complete(&self) -> bool {
        self.total > 0 && self.done + self.dead >= self.total
    }
}

/// A chunk that kept failing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The chunk's id.
    pub chunk: u64,
    /// Deliveries before it was given up.
    pub deliveries: u64,
    /// The last error reported for it.
    pub reason: String,
}

impl RedisQueue {
    /// Connects to `url`, for the job under `prefix`, and creates the consumer group if needed.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self> {
        Self::connect_with_timeout(url, prefix, Duration::from_secs(10)).await
    }

    async fn connect_with_timeout(
        url: &str,
        prefix: impl Into<String>,
        response_timeout: Duration,
    ) -> Result<Self> {
        let client = redis::Client::open(url).map_err(rerr("open client"))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(rerr("connect"))?;
        let queue = Self {
            conn,
            prefix: prefix.into(),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Creates the stream and the consumer group if they do not exist (after a Redis restart
    /// without persistence, for example).
    pub async fn ensure_group(&self) -> Result<()> {
        let mut c = self.conn.clone();
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key("chunks"))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(BatchError::Redis {
                op: "create consumer group",
                source: e,
            }),
        }
    }

    /// Splits `items` into chunks of `chunk_size`, enqueues them and returns how many.
    pub async fn enqueue<T: Serialize>(&self, items: &[T], chunk_size: usize) -> Result<u64> {
        let chunks: Vec<&[T]> = items.chunks(chunk_size.max(1)).collect();
        let mut c = self.conn.clone();
        let total: u64 = redis::cmd("HINCRBY")
            .arg(self.key("meta"))
            .arg("total")
            .arg(chunks.len())
            .query_async(&mut c)
            .await
            .map_err(rerr("count chunks"))?;
        let first = total - chunks.len() as u64;
        let mut pipe = redis::pipe();
        for (i, chunk) in chunks.iter().enumerate() {
            let data = perf_core::codec::encode(chunk).map_err(BatchError::Encode)?;
            pipe.cmd("XADD")
                .arg(self.key("chunks"))
                .arg("*")
                .arg("chunk")
                .arg(first + i as u64)
                .arg("data")
                .arg(data)
                .ignore();
        }
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(rerr("enqueue chunks"))?;
        Ok(chunks.len() as u64)
    }

    /// How many chunks are enqueued, done and dead.
    pub async fn status(&self) -> Result<QueueStatus> {
        let mut c = self.conn.clone();
        let (total, done, dead): (Option<u64>, u64, u64) = redis::pipe()
            .cmd("HGET")
            .arg(self.key("meta"))
            .arg("total")
            .cmd("HLEN")
            .arg(self.key("results"))
            .cmd("HLEN")
            .arg(self.key("dead_chunks"))
            .query_async(&mut c)
            .await
            .map_err(rerr("read status"))?;
        Ok(QueueStatus {
            total: total.unwrap_or(0),
            done,
            dead,
        })
    }

    /// Waits until every chunk has a result or is dead, checking every `poll`.
    pub async fn wait_complete(&self, poll: Duration, clock: &SharedClock) -> Result<QueueStatus> {
        loop {
            let status = self.status().await?;
            if status.is_complete() {
                return Ok(status);
            }
            clock.sleep(poll).await;
        }
    }

    /// Every chunk's results, by chunk id.
    pub async fn results<R: DeserializeOwned>(&self) -> Result<HashMap<u64, Vec<R>>> {
        let mut c = self.conn.clone();
        let raw: HashMap<u64, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.key("results"))
            .query_async(&mut c)
            .await
            .map_err(rerr("read results"))?;
        raw.into_iter()
            .map(|(chunk, bytes)| {
                perf_core::codec::decode(&bytes)
                    .map(|r| (chunk, r))
                    .map_err(|source| BatchError::CheckpointCorrupt {
                        job: self.prefix.clone(),
                        seq: chunk,
                        source,
                    })
            })
            .collect()
    }

    /// All results in item order (chunk by chunk); dead chunks are missing from it.
    pub async fn collect<R: DeserializeOwned>(&self) -> Result<Vec<R>> {
        let mut by_chunk: Vec<(u64, Vec<R>)> = self.results().await?.into_iter().collect();
        by_chunk.sort_unstable_by_key(|(c, _)| *c);
        Ok(by_chunk.into_iter().flat_map(|(_, r)| r).collect())
    }

    /// The chunks moved to the dead-letter stream.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut c = self.conn.clone();
        let (dead, errors): (HashMap<u64, u64>, HashMap<u64, String>) = redis::pipe()
            .cmd("HGETALL")
            .arg(self.key("dead_chunks"))
            .cmd("HGETALL")
            .arg(self.key("errors"))
            .query_async(&mut c)
            .await
            .map_err(rerr("read dead letters"))?;
        let mut out: Vec<_> = dead
            .into_iter()
            .map(|(chunk, deliveries)| DeadLetter {
                chunk,
                deliveries,
                reason: errors.get(&chunk).cloned().unwrap_or_default(),
            })
            .collect();
        out.sort_unstable_by_key(|d| d.chunk);
        Ok(out)
    }

    /// Deletes every key of this job.
    pub async fn clear(&self) -> Result<()> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("DEL");
        for k in ["chunks", "results", "dead", "dead_chunks", "errors", "meta"] {
            cmd.arg(self.key(k));
        }
        cmd.query_async::<()>(&mut c).await.map_err(rerr("clear"))
    }
}

/// How a [`RedisWorker`] takes and retries chunks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// A delivered chunk not acknowledged for this long is reclaimed by another worker.
    pub visibility_timeout: Duration,
    /// Deliveries after which a chunk goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// Longest wait of one read for new chunks.
    pub block: Duration,
    /// Chunks read at once.
    pub count: usize,
    /// Return once every chunk of the job is done or dead.
    pub exit_when_done: bool,
    /// Pause after a Redis error before trying again.
    pub retry_delay: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(60),
            max_deliveries: 5,
            block: Duration::from_millis(500),
            count: 1,
            exit_when_done: true,
            retry_delay: Duration::from_millis(200),
        }
    }
}

/// Builder setters that each replace one field, through a normalizing expression when given:
/// `name: Type` or `name: Type => |v| expr`.
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty $(=> |$v:ident| $map:expr)?;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: $ty) -> Self {
                self.$field = setters!(@map value $(, $v, $map)?);
                self
            }
        )*
    };
    (@map $value:ident) => { $value };
    (@map $value:ident, $v:ident, $map:expr) => {{
        let $v = $value;
        $map
    }};
}

/// ```
/// use perf_batch::distributed::WorkerOptions;
/// use std::time::Duration;
/// let opts = WorkerOptions::default()
///     .visibility_timeout(Duration::from_secs(30))
///     .max_deliveries(0)
///     .count(4)
///     .retry_delay(Duration::from_millis(50));
/// assert_eq!(opts.max_deliveries, 1, "at least one delivery");
/// assert_eq!((opts.count, opts.retry_delay), (4, Duration::from_millis(50)));
/// ```
impl WorkerOptions {
    setters! {
        /// Sets the visibility timeout.
        visibility_timeout: Duration;
        /// Sets the deliveries before dead-lettering (at least 1).
        max_deliveries: u64 => |n| n.max(1);
        /// Sets the read block time.
        block: Duration;
        /// Sets the chunks read at once, at least 1 (a worker holds them all until it finishes
        /// each).
        count: usize => |n| n.max(1);
        /// Whether the worker returns once the job is complete.
        exit_when_done: bool;
        /// Sets the pause after a Redis error before trying again.
        retry_delay: Duration;
    }
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Chunks this worker ran to a stored result.
    pub processed: u64,
    /// Chunks whose function failed (left for redelivery).
    pub failed: u64,
    /// Entries taken over from idle consumers with `XAUTOCLAIM`.
    pub claimed: u64,
    /// Entries re-read from this consumer's own pending list (a restart under the same name).
    pub recovered: u64,
    /// Deliveries of chunks that already had a result (acknowledged without running).
    pub already_done: u64,
    /// Chunks moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Redis errors survived.
    pub redis_errors: u64,
}

/// A worker of a distributed job, identified by a consumer name.
#[derive(Debug)]
pub struct RedisWorker {
    queue: RedisQueue,
    name: String,
    opts: WorkerOptions,
    clock: SharedClock,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Own,
    Claimed,
    New,
}

impl RedisWorker {
    /// Connects a worker named `name` (unique per live worker; reuse it after a restart to get
    /// the chunks the previous incarnation held).
    pub async fn connect(
        url: &str,
        prefix: impl Into<String>,
        name: impl Into<String>,
        opts: WorkerOptions,
    ) -> Result<Self> {
        let queue =
            RedisQueue::connect_with_timeout(url, prefix, opts.block + Duration::from_secs(10))
                .await?;
        Ok(Self {
            queue,
            name: name.into(),
            opts,
            clock: system_clock(),
        })
    }

    /// The worker's queue.
    pub fn queue(&self) -> &RedisQueue {
        &self.queue
    }

    /// Takes and runs chunks until the job is complete (with `exit_when_done`) or `shutdown` is
    /// cancelled. Redis errors (a restart) are retried after `retry_delay`.
    pub async fn run<T, R, E, F, Fut>(
        &self,
        f: F,
        shutdown: Option<&CancellationToken>,
    ) -> Result<WorkerStats>
    where
        T: DeserializeOwned,
        R: Serialize,
        E: std::fmt::Display,
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = std::result::Result<Vec<R>, E>>,
    {
        let mut stats = WorkerStats::default();
        // Our own pending list first (entries a previous run under this name held), walked once.
        let mut own: Option<String> = Some("0".to_owned());
        let mut cursor = "0-0".to_owned();
        loop {
            if shutdown.is_some_and(CancellationToken::is_cancelled) {
                return Ok(stats);
            }
            let step = self.step(&f, &mut stats, &mut own, &mut cursor);
            let outcome = match shutdown {
                Some(token) => tokio::select! {
                    biased;
                    () = token.cancelled() => return Ok(stats),
                    r = step => r,
                },
                None => step.await,
            };
            match outcome {
                Ok(true) => {}
                Ok(false) => {
                    if self.opts.exit_when_done
                        && self.queue.status().await.is_ok_and(|s| s.is_complete())
                    {
                        return Ok(stats);
                    }
                }
                Err(err) => {
                    stats.redis_errors += 1;
                    tracing::warn!(worker = %self.name, error = %err, "redis error; retrying");
                    self.clock.sleep(self.opts.retry_delay).await;
                    // The server may have restarted without its data: recreate the group and
                    // look at our own pending entries again.
                    let _ = self.queue.ensure_group().await;
                    own = Some("0".to_owned());
                    cursor = "0-0".to_owned();
                }
            }
        }
    }

    /// One read and the chunks it returned; `Ok(false)` when nothing was available.
    async fn step<T, R, E, F, Fut>(
        &self,
        f: &F,
        stats: &mut WorkerStats,
        own: &mut Option<String>,
        cursor: &mut String,
    ) -> Result<bool>
    where
        T: DeserializeOwned,
        R: Serialize,
        E: std::fmt::Display,
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = std::result::Result<Vec<R>, E>>,
    {
        let mut c = self.queue.conn.clone();
        let stream = self.queue.key("chunks");
        let (entries, source) = if let Some(after) = own.as_deref() {
            let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.name)
                .arg("COUNT")
                .arg(self.opts.count)
                .arg("STREAMS")
                .arg(&stream)
                .arg(after)
                .query_async(&mut c)
                .await
                .map_err(rerr("read own pending chunks"))?;
            let entries = flatten(reply);
            match entries.last() {
                None => {
                    *own = None;
                    return Ok(true);
                }
                Some(last) => *own = Some(last.id.clone()),
            }
            (entries, Source::Own)
        } else {
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(&self.name)
                .arg(self.opts.visibility_timeout.as_millis() as u64)
                .arg(cursor.as_str())
                .arg("COUNT")
                .arg(self.opts.count)
                .query_async(&mut c)
                .await
                .map_err(rerr("reclaim idle chunks"))?;
            *cursor = claimed.next_stream_id.clone();
            if claimed.claimed.is_empty() {
                let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.name)
                    .arg("COUNT")
                    .arg(self.opts.count)
                    .arg("BLOCK")
                    .arg(self.opts.block.as_millis().max(1) as u64)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(&mut c)
                    .await
                    .map_err(rerr("read new chunks"))?;
                (flatten(reply), Source::New)
            } else {
                (claimed.claimed, Source::Claimed)
            }
        };
        if entries.is_empty() {
            return Ok(false);
        }
        for entry in entries {
            match source {
                Source::Own => stats.recovered += 1,
                Source::Claimed => stats.claimed += 1,
                Source::New => {}
            }
            self.handle(f, &entry, source, stats).await?;
        }
        Ok(true)
    }

    async fn handle<T, R, E, F, Fut>(
        &self,
        f: &F,
        entry: &StreamId,
        source: Source,
        stats: &mut WorkerStats,
    ) -> Result<()>
    where
        T: DeserializeOwned,
        R: Serialize,
        E: std::fmt::Display,
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = std::result::Result<Vec<R>, E>>,
    {
        let q = &self.queue;
        let mut c = q.conn.clone();
        let stream = q.key("chunks");
        let chunk: Option<u64> = entry.get("chunk");
        let data: Option<Vec<u8>> = entry.get("data");
        let (Some(chunk), Some(data)) = (chunk, data) else {
            // Not one of ours: acknowledge so it is not redelivered forever.
            return self.ack(&mut c, &entry.id).await;
        };
        let deliveries = if source == Source::New {
            1
        } else {
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1)
                .query_async(&mut c)
                .await
                .map_err(rerr("read delivery count"))?;
            pending.ids.first().map_or(1, |p| p.times_delivered as u64)
        };
        let done: bool = redis::cmd("HEXISTS")
            .arg(q.key("results"))
            .arg(chunk)
            .query_async(&mut c)
            .await
            .map_err(rerr("check result"))?;
        if done {
            stats.already_done += 1;
            return self.ack(&mut c, &entry.id).await;
        }
        if deliveries > self.opts.max_deliveries {
            return self
                .dead_letter(&mut c, entry, chunk, &data, deliveries, stats)
                .await;
        }
        let items: Vec<T> = match perf_core::codec::decode(&data) {
            Ok(items) => items,
            Err(e) => {
                self.record_error(&mut c, chunk, &format!("undecodable chunk: {e}"))
                    .await?;
                return self
                    .dead_letter(&mut c, entry, chunk, &data, deliveries, stats)
                    .await;
            }
        };
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| f(items))) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(p) => Err(p),
        };
        let failure = match outcome {
            Ok(Ok(results)) => {
                let bytes = perf_core::codec::encode(&results).map_err(BatchError::Encode)?;
                // The first result of a chunk wins: a duplicate delivery cannot overwrite it.
                redis::cmd("HSETNX")
                    .arg(q.key("results"))
                    .arg(chunk)
                    .arg(bytes)
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(rerr("store result"))?;
                stats.processed += 1;
                return self.ack(&mut c, &entry.id).await;
            }
            Ok(Err(e)) => e.to_string(),
            Err(p) => format!("panicked: {}", panic_message(p.as_ref())),
        };
        stats.failed += 1;
        tracing::warn!(worker = %self.name, chunk, deliveries, "chunk failed; left for redelivery");
        self.record_error(&mut c, chunk, &failure).await?;
        if deliveries >= self.opts.max_deliveries {
            return self
                .dead_letter(&mut c, entry, chunk, &data, deliveries, stats)
                .await;
        }
        Ok(())
    }

    async fn record_error(
        &self,
        c: &mut ConnectionManager,
        chunk: u64,
        reason: &str,
    ) -> Result<()> {
        redis::cmd("HSET")
            .arg(self.queue.key("errors"))
            .arg(chunk)
            .arg(reason)
            .query_async::<()>(c)
            .await
            .map_err(rerr("record chunk error"))
    }

    async fn dead_letter(
        &self,
        c: &mut ConnectionManager,
        entry: &StreamId,
        chunk: u64,
        data: &[u8],
        deliveries: u64,
        stats: &mut WorkerStats,
    ) -> Result<()> {
        let q = &self.queue;
        redis::pipe()
            .cmd("XADD")
            .arg(q.key("dead"))
            .arg("*")
            .arg("chunk")
            .arg(chunk)
            .arg("deliveries")
            .arg(deliveries)
            .arg("data")
            .arg(data)
            .ignore()
            .cmd("HSETNX")
            .arg(q.key("dead_chunks"))
            .arg(chunk)
            .arg(deliveries)
            .ignore()
            .query_async::<()>(c)
            .await
            .map_err(rerr("dead-letter chunk"))?;
        stats.dead_lettered += 1;
        tracing::warn!(worker = %self.name, chunk, deliveries, "chunk moved to the dead-letter stream");
        self.ack(c, &entry.id).await
    }

    async fn ack(&self, c: &mut ConnectionManager, id: &str) -> Result<()> {
        redis::cmd("XACK")
            .arg(self.queue.key("chunks"))
            .arg(GROUP)
            .arg(id)
            .query_async::<()>(c)
            .await
            .map_err(rerr("acknowledge chunk"))
    }
}

fn flatten(reply: Option<StreamReadReply>) -> Vec<StreamId> {
    reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default()
}
