//! The shared result cache (feature `shared-cache`): query results in perf-cache's L2 (Redis,
//! or any `perf_cache::tier::RemoteTier`), so every process of a service serves and invalidates the same
//! entries.
//!
//! Invalidation is by version tokens, not by scanning or tagging entries: every table has a
//! token in the tier (`tv:<table>`, plus one global token `gv` for writes whose tables are
//! unknown), and a result's key folds in the tokens of the tables it reads, taken *before*
//! the query runs. A write through [`TrackedPool`](crate::TrackedPool) replaces the tokens of
//! the tables it wrote once it has committed, so every process computes new keys and misses;
//! a read that raced with the write stored its rows under the old tokens, where nobody looks
//! again. Old entries expire by their TTL.
//!
//! A tier outage never fails a read: lookups that error are served by the database (and not
//! cached). A write whose token replacement fails is remembered and replaced again before
//! this process's next cached read; until then the other processes' reads go to the
//! database too, unless the tier comes back first (then they may see the old rows until the
//! token is replaced or the entry's TTL ends).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use perf_cache::tier::SharedTier;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Column, Row};

use crate::error::{QueryError, Result};
use crate::result_cache::ResultKey;
use crate::sql::TableName;

/// The tier key of the global version token.
const GLOBAL: &[u8] = b"gv";

/// One column of [`CachedRows`].
#[derive(Debug, Clone, PartialEq)]
pub struct CachedColumn {
    /// Its name.
    pub name: String,
    /// Its type (from the prepared statement, so custom types are exact).
    pub type_: Type,
}

/// Rows of a read served through the shared cache: values kept in PostgreSQL's binary wire
/// format and decoded on access with the same [`FromSql`] impls as `tokio_postgres::Row`.
///
/// ```
/// use perf_query::tokio_postgres::types::Type;
/// use perf_query::{CachedColumn, CachedRows};
///
/// let rows = CachedRows::new(
///     vec![CachedColumn { name: "n".into(), type_: Type::INT8 }],
///     vec![vec![Some(7i64.to_be_bytes().to_vec())], vec![None]],
/// );
/// assert_eq!(rows.len(), 2);
/// assert_eq!(rows.try_get::<i64>(0, 0).unwrap(), 7);
/// assert_eq!(rows.try_get::<Option<i64>>(1, 0).unwrap(), None);
/// assert!(rows.try_get::<String>(0, 0).is_err(), "wrong type");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRows {
    columns: Vec<CachedColumn>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
}

/// The stored form: column type oids (checked against the statement on read) and values.
#[derive(Serialize, Deserialize)]
struct Stored {
    oids: Vec<u32>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
}

/// Borrows a value's raw bytes without decoding them.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

impl CachedRows {
    /// Rows from columns and raw values (one `Vec` per row, `None` for NULL).
    pub fn new(columns: Vec<CachedColumn>, rows: Vec<Vec<Option<Vec<u8>>>>) -> Self {
        CachedRows { columns, rows }
    }

    /// The rows of a query, values copied in their wire format.
    pub(crate) fn from_rows(columns: &[Column], rows: &[Row]) -> Result<Self> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let raw: Raw<'_> = row
                    .try_get(i)
                    .map_err(|e| QueryError::pg("reading a row", 0, e))?;
                values.push(raw.0.map(<[u8]>::to_vec));
            }
            out.push(values);
        }
        Ok(CachedRows {
            columns: columns_of(columns),
            rows: out,
        })
    }

    /// Rows decoded from the tier, when their column types still match the statement's.
    fn from_stored(columns: &[Column], bytes: &[u8]) -> Option<Self> {
        let stored: Stored = perf_core::codec::decode(bytes).ok()?;
        let same = stored.oids.len() == columns.len()
            && stored
                .oids
                .iter()
                .zip(columns)
                .all(|(oid, c)| *oid == c.type_().oid());
        let width_ok = stored.rows.iter().all(|r| r.len() == columns.len());
        (same && width_ok).then(|| CachedRows {
            columns: columns_of(columns),
            rows: stored.rows,
        })
    }

    fn to_stored(&self) -> Result<Vec<u8>> {
        let stored = Stored {
            oids: self.columns.iter().map(|c| c.type_.oid()).collect(),
            rows: self.rows.clone(),
        };
        Ok(perf_core::codec::encode(&stored)?)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The columns.
    pub fn columns(&self) -> &[CachedColumn] {
        &self.columns
    }

    /// Index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Bytes of the values (what the size bound counts).
    pub fn value_bytes(&self) -> usize {
        self.rows
            .iter()
            .flatten()
            .map(|v| v.as_ref().map_or(0, Vec::len) + 1)
            .sum()
    }

    /// The value of `column` in `row`, decoded as `T`.
    ///
    /// # Errors
    ///
    /// [`QueryError::Decode`] for a row or column out of range, a type `T` does not accept,
    /// or bytes it cannot decode.
    pub fn try_get<'a, T: FromSql<'a>>(&'a self, row: usize, column: usize) -> Result<T> {
        let decode = |reason: String| QueryError::Decode {
            row,
            column,
            reason,
        };
        let values = self
            .rows
            .get(row)
            .ok_or_else(|| decode(format!("no row {row} of {}", self.rows.len())))?;
        let (col, value) = self
            .columns
            .get(column)
            .zip(values.get(column))
            .ok_or_else(|| decode(format!("no column {column} of {}", self.columns.len())))?;
        if !T::accepts(&col.type_) {
            return Err(decode(format!(
                "{} cannot be read as {}",
                col.type_,
                std::any::type_name::<T>()
            )));
        }
        T::from_sql_nullable(&col.type_, value.as_deref()).map_err(|e| decode(e.to_string()))
    }
}

fn columns_of(columns: &[Column]) -> Vec<CachedColumn> {
    columns
        .iter()
        .map(|c| CachedColumn {
            name: c.name().to_string(),
            type_: c.type_().clone(),
        })
        .collect()
}

/// Counters of a [`SharedResultCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SharedCacheStats {
    /// Reads served from the tier.
    pub hits: u64,
    /// Reads not found (then run and stored).
    pub misses: u64,
    /// Results written to the tier.
    pub stores: u64,
    /// Results not stored because they are over the size bound.
    pub too_large: u64,
    /// Tables whose version token was replaced after a write.
    pub invalidations: u64,
    /// Tier calls that failed; the read went to the database.
    pub errors: u64,
    /// Token replacements still owed after a failed call.
    pub pending: u64,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Fresh rows.
    Hit(CachedRows),
    /// Not there: store the result under this key.
    Miss(Vec<u8>),
    /// The tier is unavailable: run the query, do not store.
    Bypass,
}

/// Query results shared by every process through a cache tier; see the module documentation.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> perf_query::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use perf_query::{SharedResultCache, TrackedPool};
///
/// let shared = SharedResultCache::redis("redis://127.0.0.1:6379", "myapp:results", Duration::from_secs(60))?;
/// let db = TrackedPool::new(pool).with_shared_cache(Arc::new(shared));
/// let rows = db.query_shared("req-1", "SELECT sum(total) FROM orders WHERE customer_id = $1", &[&7i32]).await?;
/// let total: Option<f64> = rows.try_get(0, 0)?;
/// // Any process's write through its TrackedPool makes this read miss everywhere.
/// db.execute("req-2", "UPDATE orders SET total = total + 1 WHERE id = $1", &[&1i64]).await?;
/// # let _ = total; Ok(()) }
/// ```
#[derive(Debug)]
pub struct SharedResultCache {
    tier: SharedTier,
    ttl: Duration,
    version_ttl: Duration,
    max_value_bytes: usize,
    /// Tables (`None`: all) whose token replacement failed.
    pending: Mutex<BTreeSet<Option<String>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    stores: AtomicU64,
    too_large: AtomicU64,
    invalidations: AtomicU64,
    errors: AtomicU64,
}

impl SharedResultCache {
    /// Results kept `ttl` in `tier`; version tokens kept a day; results over 1 MiB of values
    /// are not stored.
    pub fn new(tier: SharedTier, ttl: Duration) -> Self {
        SharedResultCache {
            tier,
            ttl,
            version_ttl: Duration::from_secs(86_400),
            max_value_bytes: 1 << 20,
            pending: Mutex::new(BTreeSet::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stores: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// On perf-cache's Redis tier at `url`, every key under `prefix` (building it does not
    /// connect). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`QueryError::Cache`] for a bad URL or prefix.
    pub fn redis(url: &str, prefix: &str, ttl: Duration) -> Result<Self> {
        let config = perf_cache::redis::RedisTierConfig::new(url).prefix(prefix);
        let tier = perf_cache::redis::RedisTier::new(config)?;
        Ok(SharedResultCache::new(std::sync::Arc::new(tier), ttl))
    }

    /// Time to live of the version tokens (an expired token only costs misses).
    pub fn version_ttl(mut self, ttl: Duration) -> Self {
        self.version_ttl = ttl;
        self
    }

    /// Largest result (bytes of values) stored.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// The tier.
    pub fn tier(&self) -> &SharedTier {
        &self.tier
    }

    /// Counters.
    pub fn stats(&self) -> SharedCacheStats {
        SharedCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stores: self.stores.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            pending: self.pending.lock().map_or(0, |p| p.len() as u64),
        }
    }

    fn failed(&self, during: &'static str, e: &perf_cache::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(during, error = %e, "shared result cache: tier call failed");
    }

    /// Makes every cached result that read one of `tables` invisible to every process.
    /// Never fails: a token that cannot be replaced now is replaced before this cache's next
    /// lookup.
    pub async fn invalidate_tables(&self, tables: &[TableName]) {
        let names: BTreeSet<Option<String>> = tables.iter().map(|t| Some(t.name.clone())).collect();
        self.replace_tokens(names).await;
    }

    /// Makes every cached result invisible to every process (a write whose tables are
    /// unknown, DDL).
    pub async fn invalidate_all(&self) {
        self.replace_tokens(BTreeSet::from([None])).await;
    }

    async fn replace_tokens(&self, names: BTreeSet<Option<String>>) {
        for name in names {
            let token = fresh_token();
            match self
                .tier
                .set(
                    &version_key(name.as_deref()),
                    &token,
                    Some(self.version_ttl),
                    &[],
                )
                .await
            {
                Ok(()) => {
                    self.invalidations.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut p) = self.pending.lock() {
                        p.remove(&name);
                    }
                }
                Err(e) => {
                    self.failed("replacing a version token", &e);
                    if let Ok(mut p) = self.pending.lock() {
                        p.insert(name);
                    }
                }
            }
        }
    }

    /// Looks `key` (reading `tables`) up; the key includes the current version tokens.
    pub(crate) async fn lookup(
        &self,
        key: &ResultKey,
        tables: &[TableName],
        columns: &[Column],
    ) -> Lookup {
        let owed: BTreeSet<Option<String>> =
            self.pending.lock().map(|p| p.clone()).unwrap_or_default();
        if !owed.is_empty() {
            self.replace_tokens(owed).await;
            if self.pending.lock().map_or(true, |p| !p.is_empty()) {
                return Lookup::Bypass;
            }
        }
        let mut names: Vec<Option<&str>> = tables.iter().map(|t| Some(t.name.as_str())).collect();
        names.sort();
        names.dedup();
        names.push(None);
        let vkeys: Vec<Vec<u8>> = names.iter().map(|n| version_key(*n)).collect();
        let refs: Vec<&[u8]> = vkeys.iter().map(Vec::as_slice).collect();
        let mut tokens = match self.tier.mget(&refs).await {
            Ok(t) => t,
            Err(e) => {
                self.failed("reading version tokens", &e);
                return Lookup::Bypass;
            }
        };
        // A table never written (or whose token expired) gets a token now, before the
        // query runs, so a write racing with this read still changes the key.
        for (i, token) in tokens.iter_mut().enumerate() {
            if token.is_none() {
                let fresh = fresh_token();
                if let Err(e) = self
                    .tier
                    .set(&vkeys[i], &fresh, Some(self.version_ttl), &[])
                    .await
                {
                    self.failed("creating a version token", &e);
                    return Lookup::Bypass;
                }
                *token = Some(fresh.to_vec());
            }
        }
        let mut h = blake3::Hasher::new();
        h.update(&key.0);
        for (name, token) in names.iter().zip(&tokens) {
            let name = name.unwrap_or("");
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            let token = token.as_deref().unwrap_or(&[]);
            h.update(&(token.len() as u64).to_le_bytes());
            h.update(token);
        }
        let mut vkey = b"r:".to_vec();
        vkey.extend_from_slice(h.finalize().to_hex().as_bytes());
        match self.tier.get(&vkey).await {
            Ok(Some(bytes)) => match CachedRows::from_stored(columns, &bytes) {
                Some(rows) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    Lookup::Hit(rows)
                }
                None => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    Lookup::Miss(vkey)
                }
            },
            Ok(None) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Lookup::Miss(vkey)
            }
            Err(e) => {
                self.failed("reading a result", &e);
                Lookup::Bypass
            }
        }
    }

    /// Stores `rows` under the key a [`Lookup::Miss`] gave (errors are counted, not
    /// returned: the caller has its rows).
    pub(crate) async fn store(&self, vkey: &[u8], rows: &CachedRows) {
        if rows.value_bytes() > self.max_value_bytes {
            self.too_large.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let bytes = match rows.to_stored() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "shared result cache: cannot encode a result");
                return;
            }
        };
        match self.tier.set(vkey, &bytes, Some(self.ttl), &[]).await {
            Ok(()) => {
                self.stores.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed("storing a result", &e),
        }
    }
}

/// `tv:<table>`, or the global `gv`.
fn version_key(table: Option<&str>) -> Vec<u8> {
    match table {
        Some(t) => [b"tv:".as_slice(), t.as_bytes()].concat(),
        None => GLOBAL.to_vec(),
    }
}

/// 16 bytes no other process or call produces: the time, the process, a counter.
fn fresh_token() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}
