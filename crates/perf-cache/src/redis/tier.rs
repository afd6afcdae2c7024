//! [`RedisTier`]: the L2 tier on one Redis server through a self-reconnecting multiplexed
//! connection, with pipelining, `SET … PX`, tag indexes and a timeout on every call.

use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisResult};

use super::config::RedisTierConfig;
use super::scripts;
use super::url::{redact_url, url_kind, UrlKind};
use crate::error::{Error, Result};
use crate::tier::{RemoteTier, TierEntry, TierStats};

const TIER: &str = "redis";

/// The Redis L2 tier.
///
/// Layout under the configured prefix `p`:
/// - `p:k:{key}`: the value (raw bytes, any key bytes allowed), written with `SET … PX ttl`;
/// - `p:kt:{key}`: the set of the key's tags (same TTL), so `delete` can leave its tag indexes;
/// - `p:tag:{tag}`: the tag index, a sorted set of member keys scored by their expiry time on
///   the server clock. Each attach drops expired members and sets the index's own expiry to that
///   of its longest-lived member, so indexes never outlive their data and never need a scan of
///   the keyspace; `delete_by_tags` reads only the index.
///
/// Overwriting a tagged key without its old tags leaves it in the old index until it expires:
/// a later invalidation of that tag then deletes it too — an extra miss, never a stale read.
///
/// The connection is a [`ConnectionManager`]: multiplexed, created lazily (so building the tier
/// never fails because Redis is down) and reconnecting by itself with the configured backoff.
/// Every call is bounded by [`RedisTierConfig::timeout`], waiting for a reconnection included.
///
/// ```no_run
/// # async fn demo() -> perf_cache::Result<()> {
/// use std::time::Duration;
/// use perf_cache::redis::{RedisTier, RedisTierConfig};
/// use perf_cache::tier::RemoteTier;
///
/// let tier = RedisTier::new(RedisTierConfig::new("redis://127.0.0.1:6379").prefix("docs"))?;
/// tier.set(b"answer", b"42", Some(Duration::from_secs(30)), &[]).await?;
/// assert_eq!(tier.mget(&[b"answer", b"nothing"]).await?, vec![Some(b"42".to_vec()), None]);
/// # Ok(()) }
/// ```
pub struct RedisTier {
    config: RedisTierConfig,
    conn: ConnectionManager,
    stats: TierStats,
    /// `{prefix}:`
    base: Vec<u8>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("url", &redact_url(&self.config.url))
            .field("prefix", &self.config.prefix)
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

/// A client for `url` (the configuration's URL, or one node of its cluster), its connection
/// settings passed through `adjust` (the coherency subscriber asks for RESP3), with the
/// configuration's TLS files, if any: shared by the tier and the coherency subscriber.
pub(crate) fn open_client(
    config: &RedisTierConfig,
    url: &str,
    adjust: impl FnOnce(ConnectionInfo) -> ConnectionInfo,
) -> Result<redis::Client> {
    let invalid = |e: redis::RedisError| Error::InvalidConfig {
        field: "l2_url",
        reason: format!("{}: {e}", redact_url(url)),
    };
    let info = adjust(url.into_connection_info().map_err(invalid)?);
    #[cfg(feature = "redis-tls")]
    if let Some(certificates) = super::tls::prepare(config)? {
        return super::tls::client_with_certificates(config, info, certificates);
    }
    #[cfg(not(feature = "redis-tls"))]
    let _ = config;
    redis::Client::open(info).map_err(invalid)
}

impl RedisTier {
    /// Checks the configuration and prepares the connection; the first call connects.
    ///
    /// `rediss://` needs the `redis-tls` feature; cluster URLs are rejected with a typed
    /// error pointing to `RedisClusterTier` (feature `redis-cluster`).
    ///
    /// Must be called inside a Tokio runtime (the connection manager spawns a task); outside
    /// one it returns an error instead of panicking.
    pub fn new(config: RedisTierConfig) -> Result<Self> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidConfig {
                field: "runtime",
                reason: "RedisTier::new must be called inside a Tokio runtime".to_owned(),
            });
        }
        if url_kind(&config.url)? == UrlKind::Cluster {
            return Err(Error::InvalidConfig {
                field: "l2_url",
                reason: format!(
                    "{}: a cluster URL needs RedisClusterTier (feature `redis-cluster`)",
                    redact_url(&config.url)
                ),
            });
        }
        #[cfg(not(feature = "redis-tls"))]
        super::url::reject_tls_without_feature(&config.url)?;
        let client = open_client(&config, &config.url, |info| info)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_min_delay(config.reconnect_min_delay)
            .set_max_delay(config.reconnect_max_delay)
            .set_exponent_base(2.0)
            .set_number_of_retries(config.reconnect_attempts)
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout));
        let conn =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(|e| {
                Error::InvalidConfig {
                    field: "l2_url",
                    reason: format!("{}: {e}", redact_url(&config.url)),
                }
            })?;
        let base = format!("{}:", config.prefix).into_bytes();
        Ok(Self {
            config,
            conn,
            stats: TierStats::default(),
            base,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisTierConfig {
        &self.config
    }

    /// The Redis key a cache key is stored under (`{prefix}:k:{key}`), for tools and tests.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use perf_cache::redis::{RedisTier, RedisTierConfig};
    ///
    /// // Building the tier does not connect.
    /// let tier = RedisTier::new(RedisTierConfig::new("redis://h").prefix("p")).unwrap();
    /// assert_eq!(tier.storage_key(b"user:1"), b"p:k:user:1");
    /// # });
    /// ```
    pub fn storage_key(&self, key: &[u8]) -> Vec<u8> {
        self.join(b"k:", key)
    }

    /// The Redis key of a tag index (`{prefix}:tag:{tag}`).
    pub fn tag_key(&self, tag: &str) -> Vec<u8> {
        self.join(b"tag:", tag.as_bytes())
    }

    /// The Redis key of a fleet lock (`{prefix}:lock:{name}`).
    pub(crate) fn lock_key(&self, name: &[u8]) -> Vec<u8> {
        self.join(b"lock:", name)
    }

    fn key_tags_key(&self, key: &[u8]) -> Vec<u8> {
        self.join(b"kt:", key)
    }

    fn join(&self, kind: &[u8], key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.base.len() + kind.len() + key.len());
        out.extend_from_slice(&self.base);
        out.extend_from_slice(kind);
        out.extend_from_slice(key);
        out
    }

    /// The key-tags key of a storage key (`p:k:x` → `p:kt:x`).
    fn key_tags_of_storage(&self, storage: &[u8]) -> Option<Vec<u8>> {
        let key = storage
            .strip_prefix(self.base.as_slice())?
            .strip_prefix(b"k:")?;
        Some(self.key_tags_key(key))
    }

    fn ttl_ms(&self, ttl: Option<Duration>) -> Option<u64> {
        ttl.or(self.config.default_ttl)
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
    }

    /// A clone of the multiplexed connection (cheap: an `Arc`).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Bounds `fut` by the call timeout and maps its error.
    pub(crate) async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        bounded(self.config.timeout, op, fut).await
    }

    async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        self.bounded(op, pipe.query_async::<T>(&mut conn)).await
    }

    async fn query_cmd<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        self.bounded(op, cmd.query_async::<T>(&mut conn)).await
    }

    /// Writes `{prefix}:k:{key}` into `buf` (cleared first), so a batch reuses one buffer
    /// instead of allocating a key per entry (`Cmd::arg` copies the bytes anyway).
    fn write_storage_key(&self, key: &[u8], buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&self.base);
        buf.extend_from_slice(b"k:");
        buf.extend_from_slice(key);
    }

    /// Appends the commands that store one entry to `pipe`; every reply is ignored. `storage`
    /// is scratch space for the entry's Redis key.
    fn push_set(&self, pipe: &mut Pipeline, entry: &TierEntry<'_>, storage: &mut Vec<u8>) {
        self.write_storage_key(entry.key, storage);
        let storage = &storage[..];
        let ttl = self.ttl_ms(entry.ttl);
        let set = pipe.cmd("SET").arg(storage).arg(entry.value);
        if let Some(ms) = ttl {
            set.arg("PX").arg(ms);
        }
        set.ignore();
        if entry.tags.is_empty() {
            return;
        }
        let kt = self.key_tags_key(entry.key);
        pipe.cmd("DEL").arg(&kt).ignore();
        pipe.cmd("SADD").arg(&kt).arg(entry.tags).ignore();
        if let Some(ms) = ttl {
            pipe.cmd("PEXPIRE").arg(&kt).arg(ms).ignore();
        }
        for tag in entry.tags {
            pipe.cmd("EVAL")
                .arg(scripts::TAG_ATTACH)
                .arg(1)
                .arg(self.tag_key(tag))
                .arg(storage)
                .arg(ttl.unwrap_or(0))
                .ignore();
        }
    }

    /// Unlinks `storage` keys (and their key-tags sets) in batches; returns how many values
    /// were removed.
    async fn unlink_values(&self, op: &'static str, storage: &[Vec<u8>]) -> Result<u64> {
        let mut removed = 0;
        for chunk in storage.chunks(self.config.batch) {
            let mut pipe = redis::pipe();
            pipe.cmd("UNLINK").arg(chunk);
            let kts: Vec<Vec<u8>> = chunk
                .iter()
                .filter_map(|s| self.key_tags_of_storage(s))
                .collect();
            if !kts.is_empty() {
                pipe.cmd("UNLINK").arg(kts).ignore();
            }
            let (n,): (u64,) = self.query_pipe(op, &pipe).await?;
            removed += n;
        }
        Ok(removed)
    }

    /// `prefix` escaped for a `SCAN MATCH` glob, followed by `:*`.
    fn scan_pattern(&self) -> Vec<u8> {
        let mut pattern = Vec::with_capacity(self.base.len() + 4);
        for &b in self.config.prefix.as_bytes() {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.extend_from_slice(b":*");
        pattern
    }
}

/// Bounds `fut` by `timeout` and maps its error to the crate's error.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    op: &'static str,
    fut: impl Future<Output = RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Remote {
            tier: TIER,
            op,
            reason: e.to_string(),
        }),
        Err(_) => Err(Error::Timeout {
            tier: TIER,
            op,
            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

#[async_trait]
impl RemoteTier for RedisTier {
    fn name(&self) -> &'static str {
        TIER
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value: Option<Vec<u8>> = self
            .stats
            .track(self.query_cmd("get", redis::cmd("GET").arg(self.storage_key(key))))
            .await?;
        match value {
            Some(_) => self.stats.hits.inc(),
            None => self.stats.misses.inc(),
        }
        Ok(value)
    }

    async fn mget(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(self.base.len() + 64);
        let mget = |chunk: &[&[u8]], cmd: &mut Cmd, buf: &mut Vec<u8>| {
            for k in chunk {
                self.write_storage_key(k, buf);
                cmd.arg(&buf[..]);
            }
        };
        let values: Vec<Option<Vec<u8>>> = if keys.len() <= self.config.batch {
            // One page: a plain MGET, without a pipeline around it.
            let mut cmd = redis::cmd("MGET");
            mget(keys, &mut cmd, &mut buf);
            self.stats.track(self.query_cmd("mget", &cmd)).await?
        } else {
            let mut pipe = redis::pipe();
            for chunk in keys.chunks(self.config.batch) {
                let mut cmd = redis::cmd("MGET");
                mget(chunk, &mut cmd, &mut buf);
                pipe.add_command(cmd);
            }
            let pages: Vec<Vec<Option<Vec<u8>>>> =
                self.stats.track(self.query_pipe("mget", &pipe)).await?;
            pages.into_iter().flatten().collect()
        };
        if values.len() != keys.len() {
            self.stats.errors.inc();
            return Err(Error::Remote {
                tier: TIER,
                op: "mget",
                reason: format!("{} replies for {} keys", values.len(), keys.len()),
            });
        }
        self.stats.count_lookups(&values);
        Ok(values)
    }

    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[&str],
    ) -> Result<()> {
        self.mset(&[TierEntry {
            key,
            value,
            ttl,
            tags,
        }])
        .await
    }

    async fn mset(&self, entries: &[TierEntry<'_>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.stats
            .track(async {
                let mut storage = Vec::with_capacity(self.base.len() + 64);
                for chunk in entries.chunks(self.config.batch) {
                    let mut pipe = Pipeline::with_capacity(chunk.len());
                    for entry in chunk {
                        self.push_set(&mut pipe, entry, &mut storage);
                    }
                    let () = self.query_pipe("mset", &pipe).await?;
                }
                Ok(())
            })
            .await?;
        self.stats.writes.add(entries.len() as u64);
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        let storage = self.storage_key(key);
        let kt = self.key_tags_key(key);
        let removed = self
            .stats
            .track(async {
                let mut pipe = redis::pipe();
                pipe.cmd("SMEMBERS").arg(&kt);
                pipe.cmd("UNLINK").arg(&storage);
                pipe.cmd("UNLINK").arg(&kt).ignore();
                let (tags, removed): (Vec<Vec<u8>>, u64) = self.query_pipe("delete", &pipe).await?;
                if !tags.is_empty() {
                    let mut pipe = redis::pipe();
                    for tag in &tags {
                        let tag_key = self.join(b"tag:", tag);
                        pipe.cmd("ZREM").arg(tag_key).arg(&storage).ignore();
                    }
                    let () = self.query_pipe("delete", &pipe).await?;
                }
                Ok(removed > 0)
            })
            .await?;
        if removed {
            self.stats.deletes.inc();
        }
        Ok(removed)
    }

    async fn delete_by_tags(&self, tags: &[&str]) -> Result<u64> {
        let removed = self
            .stats
            .track(async {
                let mut removed = 0u64;
                for tag in tags {
                    let tag_key = self.tag_key(tag);
                    loop {
                        let page = i64::try_from(self.config.batch).unwrap_or(i64::MAX) - 1;
                        let members: Vec<Vec<u8>> = self
                            .query_cmd(
                                "delete_by_tags",
                                redis::cmd("ZRANGE").arg(&tag_key).arg(0).arg(page),
                            )
                            .await?;
                        if members.is_empty() {
                            break;
                        }
                        removed += self.unlink_values("delete_by_tags", &members).await?;
                        // Remove exactly what was read: a member a concurrent writer adds now
                        // stays indexed. An emptied index disappears by itself.
                        let () = self
                            .query_cmd(
                                "delete_by_tags",
                                redis::cmd("ZREM").arg(&tag_key).arg(&members),
                            )
                            .await
                            .map(|_: u64| ())?;
                    }
                }
                Ok(removed)
            })
            .await?;
        self.stats.deletes.add(removed);
        Ok(removed)
    }

    async fn clear(&self) -> Result<u64> {
        let pattern = self.scan_pattern();
        let removed = self
            .stats
            .track(async {
                let mut cursor = 0u64;
                let mut removed = 0u64;
                loop {
                    let (next, keys): (u64, Vec<Vec<u8>>) = self
                        .query_cmd(
                            "clear",
                            redis::cmd("SCAN")
                                .arg(cursor)
                                .arg("MATCH")
                                .arg(&pattern)
                                .arg("COUNT")
                                .arg(self.config.batch),
                        )
                        .await?;
                    if !keys.is_empty() {
                        let values = keys
                            .iter()
                            .filter(|k| {
                                k.starts_with(&self.base) && k[self.base.len()..].starts_with(b"k:")
                            })
                            .count() as u64;
                        let () = self
                            .query_cmd("clear", redis::cmd("UNLINK").arg(&keys))
                            .await
                            .map(|_: u64| ())?;
                        removed += values;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                Ok(removed)
            })
            .await?;
        self.stats.deletes.add(removed);
        Ok(removed)
    }

    async fn health(&self) -> Result<Duration> {
        let started = Instant::now();
        let _: String = self
            .stats
            .track(self.query_cmd("health", &redis::cmd("PING")))
            .await?;
        Ok(started.elapsed())
    }

    fn stats(&self) -> &TierStats {
        &self.stats
    }
}
