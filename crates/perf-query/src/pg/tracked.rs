//! The thin wrapper around a pool: every statement is timed and fed to the N+1 detector with
//! its context; reads can go through the result cache; writes invalidate the cached results
//! of the tables they write.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use deadpool_postgres::Pool;
use lru::LruCache;
use perf_core::clock::{system_clock, SharedClock};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

use crate::error::{QueryError, Result};
use crate::fingerprint::{normalize, Fingerprint, NormalizedQuery, StatementKind};
use crate::nplusone::{NPlusOneConfig, NPlusOneDetector};
use crate::pg::pooled;
#[cfg(feature = "shared-cache")]
use crate::pg::shared::{CachedRows, Lookup, SharedResultCache};
use crate::result_cache::{ResultCache, ResultKey};
use crate::sql::{analyze, TableName};

/// A statement ready to run through [`TrackedPool`]: see `TrackedPool::prepare`.
struct Prepared {
    shape: Arc<Shape>,
    client: deadpool_postgres::Object,
    statement: tokio_postgres::Statement,
    start: std::time::Instant,
}

/// Tables a statement shape reads and writes (`None` when sqlparser cannot parse it).
#[derive(Debug, Clone)]
struct Shape {
    normalized: NormalizedQuery,
    reads: Option<Vec<TableName>>,
    writes: Option<Vec<TableName>>,
}

/// Counts the bytes of a column value without decoding it (for the cache's byte bound).
struct RawLen(usize);

impl<'a> FromSql<'a> for RawLen {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawLen(raw.len()))
    }
    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawLen(0))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Approximate bytes held by `rows`.
fn rows_bytes(rows: &[Row]) -> u64 {
    rows.iter()
        .map(|r| {
            let data: usize = (0..r.len())
                .map(|i| r.try_get::<_, RawLen>(i).map_or(0, |l| l.0))
                .sum();
            (data + 8 * r.len() + 48) as u64
        })
        .sum()
}

/// A pool wrapper that records statements per context for N+1 detection and serves cached
/// reads.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> perf_query::Result<()> {
/// use perf_query::TrackedPool;
/// let db = TrackedPool::new(pool).with_result_cache(Default::default());
/// let ids: Vec<i64> = vec![1, 2, 3];
/// for id in &ids {
///     // Recorded under the request id; after 5 repeats and 50 ms: an N+1 finding.
///     db.query("req-42", "SELECT * FROM order_lines WHERE order_id = $1", &[id]).await?;
/// }
/// for f in db.detector().findings() {
///     println!("{} x{}: try {:?}", f.example, f.count, f.batched_rewrite);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TrackedPool {
    pool: Pool,
    detector: Arc<NPlusOneDetector>,
    cache: Option<Arc<ResultCache<Vec<Row>>>>,
    shapes: Arc<Mutex<LruCache<Fingerprint, Arc<Shape>>>>,
    clock: SharedClock,
    enabled: bool,
    #[cfg(feature = "shared-cache")]
    shared: Option<Arc<SharedResultCache>>,
}

/// Settings of the wrapper's result cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResultCacheConfig {
    /// Time to live of a cached result.
    pub ttl: std::time::Duration,
    /// Byte bound.
    pub max_bytes: u64,
}

impl Default for ResultCacheConfig {
    fn default() -> Self {
        let q = perf_core::config::QueryConfig::default();
        ResultCacheConfig {
            ttl: std::time::Duration::from_secs(q.cache_ttl_secs),
            max_bytes: q.cache_max_bytes,
        }
    }
}

impl TrackedPool {
    /// Wraps `pool` with a default N+1 detector and no result cache.
    pub fn new(pool: Pool) -> Self {
        TrackedPool {
            pool,
            detector: Arc::new(NPlusOneDetector::new(NPlusOneConfig::default())),
            cache: None,
            shapes: Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN),
            ))),
            clock: system_clock(),
            enabled: true,
            #[cfg(feature = "shared-cache")]
            shared: None,
        }
    }

    /// Wraps `pool` as perf-core's `[query]` section says (detector thresholds, cache TTL
    /// and bound; `enabled = false` turns tracking and caching off).
    pub fn from_config(pool: Pool, cfg: &perf_core::config::QueryConfig) -> Self {
        let mut t = TrackedPool::new(pool)
            .with_detector(Arc::new(NPlusOneDetector::new(NPlusOneConfig::from(cfg))))
            .with_result_cache(ResultCacheConfig {
                ttl: std::time::Duration::from_secs(cfg.cache_ttl_secs),
                max_bytes: cfg.cache_max_bytes,
            });
        t.enabled = cfg.enabled;
        t
    }

    /// Uses `detector` (share one across pools to see all statements).
    pub fn with_detector(mut self, detector: Arc<NPlusOneDetector>) -> Self {
        self.detector = detector;
        self
    }

    /// Enables the result cache for [`query_cached`](Self::query_cached).
    pub fn with_result_cache(mut self, cfg: ResultCacheConfig) -> Self {
        self.cache = Some(Arc::new(
            ResultCache::new(cfg.ttl, cfg.max_bytes).with_clock(self.clock.clone()),
        ));
        self
    }

    /// Uses `cache` (e.g. one built with a [`ResultStore`](crate::ResultStore) second level).
    pub fn with_cache(mut self, cache: Arc<ResultCache<Vec<Row>>>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Serves [`query_shared`](Self::query_shared) from `cache`, shared with every process
    /// using the same tier and prefix; writes through this pool invalidate there too.
    #[cfg(feature = "shared-cache")]
    pub fn with_shared_cache(mut self, cache: Arc<SharedResultCache>) -> Self {
        self.shared = Some(cache);
        self
    }

    /// The shared result cache, when set.
    #[cfg(feature = "shared-cache")]
    pub fn shared_cache(&self) -> Option<&Arc<SharedResultCache>> {
        self.shared.as_ref()
    }

    /// Uses `clock` for timings (tests pass a `ManualClock`; the cache keeps its own).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The N+1 detector.
    pub fn detector(&self) -> &Arc<NPlusOneDetector> {
        &self.detector
    }

    /// The result cache, when enabled.
    pub fn result_cache(&self) -> Option<&Arc<ResultCache<Vec<Row>>>> {
        self.cache.as_ref()
    }

    /// The wrapped pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn shape(&self, sql: &str) -> Result<Arc<Shape>> {
        let normalized = normalize(sql)?;
        if let Ok(mut shapes) = self.shapes.lock() {
            if let Some(s) = shapes.get(&normalized.fingerprint) {
                return Ok(Arc::clone(s));
            }
        }
        let (reads, writes) = match analyze(sql) {
            Ok(a) => (Some(a.table_names()), Some(a.written.clone())),
            Err(_) => (None, None),
        };
        let shape = Arc::new(Shape {
            normalized,
            reads,
            writes,
        });
        if let Ok(mut shapes) = self.shapes.lock() {
            shapes.put(shape.normalized.fingerprint, Arc::clone(&shape));
        }
        Ok(shape)
    }

    /// After a statement that writes: drop the cached results of the written tables (all of
    /// them when the tables are unknown).
    fn invalidate(&self, shape: &Shape) {
        let Some(cache) = &self.cache else { return };
        match written(shape) {
            None => {}
            Some(Some(tables)) => {
                for t in tables {
                    cache.invalidate_table(t);
                }
            }
            Some(None) => cache.clear(),
        }
    }

    /// The same for the shared cache, in every process.
    #[cfg(feature = "shared-cache")]
    async fn invalidate_shared(&self, shape: &Shape) {
        let Some(shared) = &self.shared else { return };
        match written(shape) {
            None => {}
            Some(Some(tables)) => shared.invalidate_tables(tables).await,
            Some(None) => shared.invalidate_all().await,
        }
    }

    /// True for a read the caches may serve: a `SELECT` that writes nothing and whose tables
    /// sqlparser can name.
    fn cacheable(&self, shape: &Shape) -> bool {
        self.enabled
            && shape.normalized.kind == StatementKind::Select
            && shape.writes.as_ref().is_some_and(|w| w.is_empty())
            && shape.reads.is_some()
    }

    async fn run(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Vec<Row>, Prepared)> {
        let p = self.prepare(sql).await?;
        let rows = p
            .client
            .query(&p.statement, params)
            .await
            .map_err(|e| QueryError::pg("query", 0, e))?;
        self.finish(context, &p);
        #[cfg(feature = "shared-cache")]
        self.invalidate_shared(&p.shape).await;
        Ok((rows, p))
    }

    /// The first half of running a statement: its shape, a pooled client, the prepared
    /// statement, and the instant timing started (before the prepare, so a cold prepare counts).
    async fn prepare(&self, sql: &str) -> Result<Prepared> {
        let shape = self.shape(sql)?;
        let client = pooled(&self.pool).await?;
        let start = self.clock.now();
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| QueryError::pg("prepare", 0, e))?;
        Ok(Prepared {
            shape,
            client,
            statement,
            start,
        })
    }

    /// The second half, after the statement ran: its duration goes to the N+1 detector and
    /// its writes invalidate cached results.
    fn finish(&self, context: &str, p: &Prepared) {
        let elapsed = self.clock.now().saturating_duration_since(p.start);
        if self.enabled {
            self.detector
                .record_normalized(&p.shape.normalized, context, elapsed);
        }
        self.invalidate(&p.shape);
    }

    /// Runs `sql` in `context` and returns its rows (no caching). Writes invalidate.
    ///
    /// # Errors
    ///
    /// Tokenizer, pool and driver errors.
    pub async fn query(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.run(context, sql, params).await.map(|(rows, _)| rows)
    }

    /// Runs a statement and returns the rows affected (via its rows for `RETURNING`, else
    /// the command's count). Writes invalidate the cached results of their tables.
    ///
    /// # Errors
    ///
    /// Tokenizer, pool and driver errors.
    pub async fn execute(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let p = self.prepare(sql).await?;
        let n = p
            .client
            .execute(&p.statement, params)
            .await
            .map_err(|e| QueryError::pg("execute", 0, e))?;
        self.finish(context, &p);
        #[cfg(feature = "shared-cache")]
        self.invalidate_shared(&p.shape).await;
        Ok(n)
    }

    /// A read served from the result cache when fresh, else run and cached (keyed by the
    /// statement text and the parameters' wire encoding). Statements that write, and reads
    /// whose tables sqlparser cannot name, bypass the cache.
    ///
    /// # Errors
    ///
    /// Tokenizer, pool and driver errors.
    pub async fn query_cached(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Arc<Vec<Row>>> {
        let shape = self.shape(sql)?;
        let Some(cache) = self.cache.as_ref().filter(|_| self.cacheable(&shape)) else {
            return self.query(context, sql, params).await.map(Arc::new);
        };
        let client = pooled(&self.pool).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| QueryError::pg("prepare", 0, e))?;
        let key = key_for(sql, statement.params(), params)?;
        if let Some(rows) = cache.get(&key) {
            return Ok(rows);
        }
        let rows = self
            .run_recorded(context, &shape, &client, &statement, params)
            .await?;
        let bytes = rows_bytes(&rows);
        let tables = shape.reads.clone().unwrap_or_default();
        let rows = Arc::new(rows);
        cache.insert(key, Arc::clone(&rows), bytes, tables);
        Ok(rows)
    }

    /// A read served from the [shared cache](crate::SharedResultCache) of every process when
    /// fresh, else run and stored there (keyed by the statement text, the parameters' wire
    /// encoding and the version tokens of the tables it reads). Statements that write, and
    /// reads whose tables sqlparser cannot name, run uncached (and writes invalidate). When
    /// the cache's tier is down, the read goes to the database and nothing fails.
    ///
    /// # Errors
    ///
    /// Tokenizer, pool and driver errors.
    #[cfg(feature = "shared-cache")]
    pub async fn query_shared(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<CachedRows> {
        let shape = self.shape(sql)?;
        let Some(shared) = self.shared.as_ref().filter(|_| self.cacheable(&shape)) else {
            let (rows, p) = self.run(context, sql, params).await?;
            return CachedRows::from_rows(p.statement.columns(), &rows);
        };
        let client = pooled(&self.pool).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| QueryError::pg("prepare", 0, e))?;
        let key = key_for(sql, statement.params(), params)?;
        let reads = shape.reads.as_deref().unwrap_or_default();
        let store = match shared.lookup(&key, reads, statement.columns()).await {
            Lookup::Hit(rows) => return Ok(rows),
            Lookup::Miss(vkey) => Some(vkey),
            Lookup::Bypass => None,
        };
        let rows = self
            .run_recorded(context, &shape, &client, &statement, params)
            .await?;
        let rows = CachedRows::from_rows(statement.columns(), &rows)?;
        if let Some(vkey) = store {
            shared.store(&vkey, &rows).await;
        }
        Ok(rows)
    }

    /// Runs a prepared read and records its duration for N+1 detection.
    async fn run_recorded(
        &self,
        context: &str,
        shape: &Shape,
        client: &deadpool_postgres::Object,
        statement: &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let start = self.clock.now();
        let rows = client
            .query(statement, params)
            .await
            .map_err(|e| QueryError::pg("query", 0, e))?;
        let elapsed = self.clock.now().saturating_duration_since(start);
        self.detector
            .record_normalized(&shape.normalized, context, elapsed);
        Ok(rows)
    }
}

/// Whether `shape` writes: `None` for a read, `Some(Some(tables))` for a write to known
/// tables, `Some(None)` for DDL and writes whose tables are unknown (invalidate everything).
fn written(shape: &Shape) -> Option<Option<&[TableName]>> {
    let writes = shape.normalized.kind.is_write()
        || shape.writes.as_ref().is_some_and(|w| !w.is_empty())
        || shape.normalized.kind == StatementKind::Other;
    if !writes {
        return None;
    }
    Some(shape.writes.as_deref().filter(|t| !t.is_empty()))
}

/// The cache key: statement text and each parameter encoded for its inferred type.
fn key_for(sql: &str, types: &[Type], params: &[&(dyn ToSql + Sync)]) -> Result<ResultKey> {
    let mut encoded: Vec<Option<BytesMut>> = Vec::with_capacity(params.len());
    for (p, ty) in params.iter().zip(types) {
        let mut buf = BytesMut::new();
        match p.to_sql_checked(ty, &mut buf) {
            Ok(IsNull::Yes) => encoded.push(None),
            Ok(IsNull::No) => encoded.push(Some(buf)),
            Err(e) => {
                return Err(QueryError::Refused {
                    reason: format!("parameter cannot be encoded as {ty}: {e}"),
                })
            }
        }
    }
    let refs: Vec<Option<&[u8]>> = encoded.iter().map(|b| b.as_deref()).collect();
    Ok(ResultKey::new(sql, &refs))
}
