//! [`RedisClusterTier`] (feature `redis-cluster`): the L2 tier on a Redis Cluster, with the
//! same key layout and semantics as [`RedisTier`](super::RedisTier) but only single-slot
//! commands, so keys spread over every shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Value};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use super::backend::{sealed::Sealed, Connection, RedisBackend};
use super::config::RedisTierConfig;
use super::scripts;
use super::tier::bounded;
use super::url::{cluster_seeds, redact_url};
use crate::error::{Error, Result};
use crate::tier::{RemoteTier, TierEntry, TierStats};

/// The L2 tier on a Redis Cluster (`redis+cluster://[:password@]host:port,host:port`, or
/// `rediss+cluster://…` over TLS with the `redis-tls` feature).
///
/// Keys are laid out as in [`RedisTier`](super::RedisTier) (`{prefix}:k:{key}`, tag indexes
/// at `{prefix}:tag:{tag}`) and spread over all shards. Every command touches one key, so
/// nothing crosses a slot: a multi-get or multi-set sends its commands concurrently over the
/// cluster connection, which pipelines them per node; `clear` scans every primary. The
/// connection (and the cluster's slot map) is set up by the first call and kept; nodes that
/// fail are reconnected by the client.
///
/// TLS (`rediss+cluster://`) honours [`RedisTierConfig::tls_root_cert`] and
/// [`RedisTierConfig::tls_client_cert`] as [`RedisTier`](super::RedisTier) does, for every
/// node. The tier is a [`RedisBackend`], so it can hold the fleet lock of
/// [`TieredCacheBuilder::fleet_lock`](crate::tiered::TieredCacheBuilder::fleet_lock) and carry
/// [`Coherency`](crate::coherency::Coherency) messages.
///
/// ```no_run
/// # async fn demo() -> perf_cache::Result<()> {
/// use perf_cache::redis::{RedisClusterTier, RedisTierConfig};
/// use perf_cache::tier::RemoteTier;
///
/// let tier = RedisClusterTier::new(RedisTierConfig::new("redis+cluster://10.0.0.1:7000,10.0.0.2:7000"))?;
/// tier.set(b"k", b"v", None, &[]).await?;
/// # Ok(()) }
/// ```
pub struct RedisClusterTier {
    config: RedisTierConfig,
    cluster: Arc<LazyCluster>,
    stats: TierStats,
    base: Vec<u8>,
}

/// A cluster client and its connection, made by the first call and then shared (behind an
/// `Arc`, so a lock guard can keep it).
pub struct LazyCluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl std::fmt::Debug for LazyCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyCluster")
            .field("connected", &self.conn.initialized())
            .finish_non_exhaustive()
    }
}

impl LazyCluster {
    /// The shared connection, made now (bounded by `timeout`) if no call made it yet.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<ClusterConnection> {
        bounded(timeout, "connect", async {
            self.conn
                .get_or_try_init(|| self.client.get_async_connection())
                .await
                .cloned()
        })
        .await
    }
}

impl std::fmt::Debug for RedisClusterTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterTier")
            .field("url", &redact_url(&self.config.url))
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

/// One entry, owned, so its writes can run on their own task.
struct Owned {
    storage: Vec<u8>,
    key_tags: Vec<u8>,
    value: Vec<u8>,
    ttl_ms: Option<u64>,
    tags: Vec<String>,
    tag_keys: Vec<Vec<u8>>,
}

impl RedisClusterTier {
    /// Checks the configuration, parses the seed list and reads the TLS files, if any; the
    /// first call connects.
    ///
    /// `rediss+cluster://` needs the `redis-tls` feature.
    pub fn new(config: RedisTierConfig) -> Result<Self> {
        config.validate()?;
        let seeds = cluster_seeds(&config.url)?;
        let builder = ClusterClient::builder(seeds)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.timeout);
        #[cfg(feature = "redis-tls")]
        let builder = match super::tls::prepare(&config)? {
            Some(certificates) => builder.certs(certificates),
            None => builder,
        };
        #[cfg(not(feature = "redis-tls"))]
        super::url::reject_tls_without_feature(&config.url)?;
        let client = builder.build().map_err(|e| Error::InvalidConfig {
            field: "l2_url",
            reason: format!("{}: {e}", redact_url(&config.url)),
        })?;
        let base = format!("{}:", config.prefix).into_bytes();
        Ok(Self {
            config,
            cluster: Arc::new(LazyCluster {
                client,
                conn: OnceCell::new(),
            }),
            stats: TierStats::default(),
            base,
        })
    }

    /// The configuration in use.
    ///
    /// ```
    /// use perf_cache::redis::{RedisClusterTier, RedisTierConfig};
    ///
    /// // Making the tier does not connect.
    /// let config = RedisTierConfig::new("redis+cluster://10.0.0.1:7000,10.0.0.2:7000").prefix("app");
    /// let tier = RedisClusterTier::new(config)?;
    /// assert_eq!(tier.config().prefix, "app");
    /// # Ok::<_, perf_cache::Error>(())
    /// ```
    pub fn config(&self) -> &RedisTierConfig {
        &self.config
    }

    /// The Redis key a cache key is stored under (`{prefix}:k:{key}`).
    pub fn storage_key(&self, key: &[u8]) -> Vec<u8> {
        self.join(b"k:", key)
    }

    /// The Redis key of a tag index (`{prefix}:tag:{tag}`).
    pub fn tag_key(&self, tag: &str) -> Vec<u8> {
        self.join(b"tag:", tag.as_bytes())
    }

    fn join(&self, kind: &[u8], key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.base.len() + kind.len() + key.len());
        out.extend_from_slice(&self.base);
        out.extend_from_slice(kind);
        out.extend_from_slice(key);
        out
    }

    fn key_tags_of_storage(&self, storage: &[u8]) -> Option<Vec<u8>> {
        let key = storage
            .strip_prefix(self.base.as_slice())?
            .strip_prefix(b"k:")?;
        Some(self.join(b"kt:", key))
    }

    async fn conn(&self) -> Result<ClusterConnection> {
        self.cluster.connect(self.config.timeout).await
    }

    async fn query<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> Result<T> {
        let mut conn = self.conn().await?;
        bounded(self.config.timeout, op, cmd.query_async::<T>(&mut conn)).await
    }

    fn owned(&self, e: &TierEntry<'_>) -> Owned {
        Owned {
            storage: self.storage_key(e.key),
            key_tags: self.join(b"kt:", e.key),
            value: e.value.to_vec(),
            ttl_ms: e
                .ttl
                .or(self.config.default_ttl)
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
            tags: e.tags.iter().map(|t| (*t).to_owned()).collect(),
            tag_keys: e.tags.iter().map(|t| self.tag_key(t)).collect(),
        }
    }

    /// Unlinks storage keys and their key-tags sets, one key per command, concurrently.
    async fn unlink_all(&self, op: &'static str, keys: Vec<Vec<u8>>) -> Result<u64> {
        let conn = self.conn().await?;
        let timeout = self.config.timeout;
        let mut set = JoinSet::new();
        for key in keys {
            let kt = self.key_tags_of_storage(&key);
            let mut conn = conn.clone();
            set.spawn(async move {
                let mut cmd = redis::cmd("UNLINK");
                cmd.arg(&key);
                let n: u64 = bounded(timeout, op, cmd.query_async(&mut conn)).await?;
                if let Some(kt) = kt {
                    let mut cmd = redis::cmd("UNLINK");
                    cmd.arg(kt);
                    let _: u64 = bounded(timeout, op, cmd.query_async(&mut conn)).await?;
                }
                Ok::<u64, Error>(n)
            });
        }
        let mut removed = 0;
        while let Some(done) = set.join_next().await {
            removed += done.map_err(|e| Error::Remote {
                tier: "redis",
                op,
                reason: e.to_string(),
            })??;
        }
        Ok(removed)
    }

    /// `(host, port)` of every primary, from `CLUSTER SLOTS`.
    async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        let slots: Value = self
            .query("clear", redis::cmd("CLUSTER").arg("SLOTS"))
            .await?;
        let mut nodes = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                let Value::Array(fields) = range else {
                    continue;
                };
                let Some(Value::Array(primary)) = fields.get(2) else {
                    continue;
                };
                let host = match primary.first() {
                    Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                    Some(Value::SimpleString(h)) => h.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = primary.get(1) else {
                    continue;
                };
                let Ok(port) = u16::try_from(*port) else {
                    continue;
                };
                if !nodes.contains(&(host.clone(), port)) {
                    nodes.push((host, port));
                }
            }
        }
        Ok(nodes)
    }
}

async fn set_one(mut conn: ClusterConnection, timeout: Duration, e: Owned) -> Result<()> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(&e.storage).arg(&e.value);
    if let Some(ms) = e.ttl_ms {
        cmd.arg("PX").arg(ms);
    }
    let () = bounded(timeout, "mset", cmd.query_async(&mut conn)).await?;
    if e.tags.is_empty() {
        return Ok(());
    }
    // The key-tags set's commands all touch one key: one single-slot pipeline.
    let mut pipe = redis::pipe();
    pipe.cmd("DEL").arg(&e.key_tags).ignore();
    pipe.cmd("SADD").arg(&e.key_tags).arg(&e.tags).ignore();
    if let Some(ms) = e.ttl_ms {
        pipe.cmd("PEXPIRE").arg(&e.key_tags).arg(ms).ignore();
    }
    let () = bounded(timeout, "mset", pipe.query_async(&mut conn)).await?;
    for tag_key in &e.tag_keys {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::TAG_ATTACH)
            .arg(1)
            .arg(tag_key)
            .arg(&e.storage)
            .arg(e.ttl_ms.unwrap_or(0));
        let _: i64 = bounded(timeout, "mset", cmd.query_async(&mut conn)).await?;
    }
    Ok(())
}

impl RedisBackend for RedisClusterTier {
    fn config(&self) -> &RedisTierConfig {
        &self.config
    }
}

impl Sealed for RedisClusterTier {
    fn connection(&self) -> Connection {
        Connection::Cluster(self.cluster.clone())
    }

    fn lock_key(&self, name: &[u8]) -> Vec<u8> {
        self.join(b"lock:", name)
    }

    fn tier_stats(&self) -> &TierStats {
        &self.stats
    }

    fn node_urls(&self) -> Result<Vec<String>> {
        cluster_seeds(&self.config.url)
    }
}

fn join_error(op: &'static str, e: tokio::task::JoinError) -> Error {
    Error::Remote {
        tier: "redis",
        op,
        reason: e.to_string(),
    }
}

#[async_trait]
impl RemoteTier for RedisClusterTier {
    fn name(&self) -> &'static str {
        "redis-cluster"
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value: Option<Vec<u8>> = self
            .stats
            .track(self.query("get", redis::cmd("GET").arg(self.storage_key(key))))
            .await?;
        match value {
            Some(_) => self.stats.hits.inc(),
            None => self.stats.misses.inc(),
        }
        Ok(value)
    }

    async fn mget(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let values = self
            .stats
            .track(async {
                let conn = self.conn().await?;
                let timeout = self.config.timeout;
                let mut set = JoinSet::new();
                for (i, key) in keys.iter().enumerate() {
                    let mut conn = conn.clone();
                    let storage = self.storage_key(key);
                    set.spawn(async move {
                        let mut cmd = redis::cmd("GET");
                        cmd.arg(storage);
                        let v: Option<Vec<u8>> =
                            bounded(timeout, "mget", cmd.query_async(&mut conn)).await?;
                        Ok::<_, Error>((i, v))
                    });
                }
                let mut values = vec![None; keys.len()];
                while let Some(done) = set.join_next().await {
                    let (i, v) = done.map_err(|e| join_error("mget", e))??;
                    values[i] = v;
                }
                Ok(values)
            })
            .await?;
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
        self.stats
            .track(async {
                let conn = self.conn().await?;
                let mut set = JoinSet::new();
                for e in entries {
                    set.spawn(set_one(conn.clone(), self.config.timeout, self.owned(e)));
                }
                while let Some(done) = set.join_next().await {
                    done.map_err(|e| join_error("mset", e))??;
                }
                Ok(())
            })
            .await?;
        self.stats.writes.add(entries.len() as u64);
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        let storage = self.storage_key(key);
        let kt = self.join(b"kt:", key);
        let removed = self
            .stats
            .track(async {
                let tags: Vec<Vec<u8>> = self
                    .query("delete", redis::cmd("SMEMBERS").arg(&kt))
                    .await?;
                let removed: u64 = self
                    .query("delete", redis::cmd("UNLINK").arg(&storage))
                    .await?;
                let _: u64 = self.query("delete", redis::cmd("UNLINK").arg(&kt)).await?;
                for tag in &tags {
                    let _: u64 = self
                        .query(
                            "delete",
                            redis::cmd("ZREM")
                                .arg(self.join(b"tag:", tag))
                                .arg(&storage),
                        )
                        .await?;
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
                let mut removed = 0;
                let page = i64::try_from(self.config.batch).unwrap_or(i64::MAX) - 1;
                for tag in tags {
                    let tag_key = self.tag_key(tag);
                    loop {
                        let members: Vec<Vec<u8>> = self
                            .query(
                                "delete_by_tags",
                                redis::cmd("ZRANGE").arg(&tag_key).arg(0).arg(page),
                            )
                            .await?;
                        if members.is_empty() {
                            break;
                        }
                        removed += self.unlink_all("delete_by_tags", members.clone()).await?;
                        let _: u64 = self
                            .query(
                                "delete_by_tags",
                                redis::cmd("ZREM").arg(&tag_key).arg(&members),
                            )
                            .await?;
                    }
                }
                Ok(removed)
            })
            .await?;
        self.stats.deletes.add(removed);
        Ok(removed)
    }

    async fn clear(&self) -> Result<u64> {
        let mut pattern = Vec::new();
        for &b in self.config.prefix.as_bytes() {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.extend_from_slice(b":*");
        let removed = self
            .stats
            .track(async {
                let mut removed = 0;
                for (host, port) in self.primaries().await? {
                    let mut cursor = 0u64;
                    loop {
                        let mut cmd = redis::cmd("SCAN");
                        cmd.arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(self.config.batch);
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        let mut conn = self.conn().await?;
                        let reply =
                            bounded(self.config.timeout, "clear", conn.route_command(cmd, route))
                                .await?;
                        let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)
                            .map_err(|e| Error::Remote {
                                tier: "redis",
                                op: "clear",
                                reason: e.to_string(),
                            })?;
                        let values: Vec<Vec<u8>> = keys
                            .iter()
                            .filter(|k| k[self.base.len().min(k.len())..].starts_with(b"k:"))
                            .cloned()
                            .collect();
                        let others: Vec<Vec<u8>> = keys
                            .into_iter()
                            .filter(|k| !k[self.base.len().min(k.len())..].starts_with(b"k:"))
                            .collect();
                        removed += self.unlink_all("clear", values).await?;
                        self.unlink_all("clear", others).await?;
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
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
            .track(self.query("health", &redis::cmd("PING")))
            .await?;
        Ok(started.elapsed())
    }

    fn stats(&self) -> &TierStats {
        &self.stats
    }
}
