//! [`PostgresTier`]: cache rows in an UNLOGGED table over one tokio-postgres connection that is
//! re-established after a failure; prepared statements; bounded purges of expired rows.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

use super::config::PostgresTierConfig;
use super::sql::{Sql, TAG_SEPARATOR};
use crate::error::{Error, Result};
use crate::tier::{RemoteTier, TierEntry, TierStats};

const TIER: &str = "postgres";

/// A connected client with its prepared statements.
struct Conn {
    client: Client,
    get: Statement,
    mget: Statement,
    set: Statement,
    mset: Statement,
    delete: Statement,
    delete_by_tags: Statement,
    clear: Statement,
    purge: Statement,
}

/// The PostgreSQL tier.
///
/// Rows live in `schema.table` (`key bytea PRIMARY KEY, value bytea, expires_at timestamptz,
/// tags text[]` with a GIN index on `tags`), an UNLOGGED table: no WAL, so writes are cheap, and
/// PostgreSQL empties it after a crash — acceptable for a cache. The table is created on first
/// use. Reads skip expired rows; [`purge_expired`](Self::purge_expired) deletes them in bounded
/// batches (call it periodically, e.g. from [`spawn_purger`](Self::spawn_purger)).
///
/// One connection is shared by all calls (tokio-postgres pipelines concurrent queries on it).
/// When it breaks, the next call opens a new one; every call, connecting included, is bounded by
/// [`PostgresTierConfig::timeout`].
///
/// ```no_run
/// # async fn demo() -> perf_cache::Result<()> {
/// use perf_cache::postgres::{PostgresTier, PostgresTierConfig};
/// use perf_cache::tier::RemoteTier;
///
/// let tier = PostgresTier::new(PostgresTierConfig::new("postgres://postgres@127.0.0.1/test"))?;
/// tier.set(b"k", b"v", None, &["t"]).await?;
/// assert_eq!(tier.get(b"k").await?, Some(b"v".to_vec()));
/// # Ok(()) }
/// ```
pub struct PostgresTier {
    config: PostgresTierConfig,
    sql: Sql,
    conn: Mutex<Option<Arc<Conn>>>,
    stats: TierStats,
}

impl std::fmt::Debug for PostgresTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTier")
            .field("schema", &self.config.schema)
            .field("table", &self.config.table)
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

fn remote(op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Remote {
        tier: TIER,
        op,
        reason: e.to_string(),
    }
}

fn ttl_ms(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX).max(1))
}

impl PostgresTier {
    /// Checks the configuration; the first call connects and creates the table.
    pub fn new(config: PostgresTierConfig) -> Result<Self> {
        config.validate()?;
        // Parse now so a bad URL fails here, not on the first call.
        config
            .url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| Error::InvalidConfig {
                field: "database_url",
                reason: e.to_string(),
            })?;
        let sql = Sql::new(&config.schema, &config.table);
        Ok(Self {
            config,
            sql,
            conn: Mutex::new(None),
            stats: TierStats::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PostgresTierConfig {
        &self.config
    }

    /// Connects (creating the table if needed) unless a live connection exists.
    async fn conn(&self) -> Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.client.is_closed() {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let (client, connection) = tokio_postgres::connect(&self.config.url, NoTls)
            .await
            .map_err(|e| remote("connect", e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres cache connection ended");
            }
        });
        client
            .batch_execute(&self.sql.create)
            .await
            .map_err(|e| remote("create table", e))?;
        let prepare = |sql: &str| {
            let client = &client;
            let sql = sql.to_owned();
            async move { client.prepare(&sql).await.map_err(|e| remote("prepare", e)) }
        };
        let conn = Arc::new(Conn {
            get: prepare(&self.sql.get).await?,
            mget: prepare(&self.sql.mget).await?,
            set: prepare(&self.sql.set).await?,
            mset: prepare(&self.sql.mset).await?,
            delete: prepare(&self.sql.delete).await?,
            delete_by_tags: prepare(&self.sql.delete_by_tags).await?,
            clear: prepare(&self.sql.clear).await?,
            purge: prepare(&self.sql.purge).await?,
            client,
        });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `f` on a live connection, bounded by the timeout, recording statistics.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    {
        let timeout = self.config.timeout;
        let call = async {
            let conn = self.conn().await?;
            f(conn).await.map_err(|e| remote(op, e))
        };
        self.stats
            .track(async {
                tokio::time::timeout(timeout, call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Timeout {
                            tier: TIER,
                            op,
                            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                        })
                    })
            })
            .await
    }

    /// Deletes expired rows, `purge_batch` at a time, for at most `max_batches` batches;
    /// returns how many rows went. Each batch is one short statement, so purging never holds
    /// locks on many rows at once.
    pub async fn purge_expired(&self, max_batches: u32) -> Result<u64> {
        let batch = i64::from(self.config.purge_batch);
        let mut purged = 0;
        for _ in 0..max_batches {
            let n = self
                .run("purge", |c| async move {
                    c.client.execute(&c.purge, &[&batch]).await
                })
                .await?;
            purged += n;
            if n < self.config.purge_batch.into() {
                break;
            }
        }
        Ok(purged)
    }

    /// Spawns a task that calls [`purge_expired`](Self::purge_expired) every `every` on
    /// `clock`; it stops when the tier is dropped.
    pub fn spawn_purger(
        self: &Arc<Self>,
        every: Duration,
        clock: perf_core::clock::SharedClock,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                clock.sleep(every).await;
                let Some(tier) = weak.upgrade() else { return };
                if let Err(e) = tier.purge_expired(100).await {
                    tracing::debug!(error = %e, "postgres cache purge failed");
                }
            }
        })
    }
}

#[async_trait]
impl RemoteTier for PostgresTier {
    fn name(&self) -> &'static str {
        TIER
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let row = self
            .run("get", |c| async move {
                c.client.query_opt(&c.get, &[&key]).await
            })
            .await?;
        let value = row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose();
        let value = value.map_err(|e| remote("get", e))?;
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
        let rows = self
            .run("mget", |c| async move {
                c.client.query(&c.mget, &[&keys]).await
            })
            .await?;
        let mut found: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: Vec<u8> = row.try_get(0).map_err(|e| remote("mget", e))?;
            let value: Vec<u8> = row.try_get(1).map_err(|e| remote("mget", e))?;
            found.insert(key, value);
        }
        let values: Vec<Option<Vec<u8>>> = keys.iter().map(|k| found.get(*k).cloned()).collect();
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
        let ms = ttl_ms(ttl.or(self.config.default_ttl));
        self.run("set", |c| async move {
            c.client.execute(&c.set, &[&key, &value, &ms, &tags]).await
        })
        .await?;
        self.stats.writes.inc();
        Ok(())
    }

    async fn mset(&self, entries: &[TierEntry<'_>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // One statement may not update a row twice: the last entry for a key wins.
        let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if e.tags.iter().any(|t| t.contains(TAG_SEPARATOR)) {
                self.stats.errors.inc();
                return Err(remote("mset", "a tag contains U+001F, which mset reserves"));
            }
            last.insert(e.key, i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let keys: Vec<&[u8]> = order.iter().map(|&i| entries[i].key).collect();
        let values: Vec<&[u8]> = order.iter().map(|&i| entries[i].value).collect();
        let ttls: Vec<Option<i64>> = order
            .iter()
            .map(|&i| ttl_ms(entries[i].ttl.or(self.config.default_ttl)))
            .collect();
        let tags: Vec<String> = order
            .iter()
            .map(|&i| entries[i].tags.join(&TAG_SEPARATOR.to_string()))
            .collect();
        let (keys, values, ttls, tags) = (&keys, &values, &ttls, &tags);
        self.run("mset", |c| async move {
            c.client.execute(&c.mset, &[keys, values, ttls, tags]).await
        })
        .await?;
        self.stats.writes.add(entries.len() as u64);
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        let n = self
            .run("delete", |c| async move {
                c.client.execute(&c.delete, &[&key]).await
            })
            .await?;
        self.stats.deletes.add(n);
        Ok(n > 0)
    }

    async fn delete_by_tags(&self, tags: &[&str]) -> Result<u64> {
        let n = self
            .run("delete_by_tags", |c| async move {
                c.client.execute(&c.delete_by_tags, &[&tags]).await
            })
            .await?;
        self.stats.deletes.add(n);
        Ok(n)
    }

    async fn clear(&self) -> Result<u64> {
        let n = self
            .run(
                "clear",
                |c| async move { c.client.execute(&c.clear, &[]).await },
            )
            .await?;
        self.stats.deletes.add(n);
        Ok(n)
    }

    async fn health(&self) -> Result<Duration> {
        let started = Instant::now();
        self.run("health", |c| async move {
            c.client.simple_query("SELECT 1").await
        })
        .await?;
        Ok(started.elapsed())
    }

    fn stats(&self) -> &TierStats {
        &self.stats
    }
}
