//! Settings of the PostgreSQL tier: URL, schema and table, default TTL, timeouts, purge batch.

use std::time::Duration;

use perf_core::config::CacheConfig;

use crate::error::{Error, Result};

/// How the PostgreSQL tier connects and where it keeps its rows.
///
/// ```
/// use perf_cache::postgres::PostgresTierConfig;
///
/// let cfg = PostgresTierConfig::new("postgres://app@db/app").schema("cache").table("entries");
/// assert!(cfg.validate().is_ok());
/// assert!(PostgresTierConfig::new("postgres://x").schema("bad name").validate().is_err());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresTierConfig {
    /// `postgres://user[:password]@host[:port]/db` (plain TCP; TLS is not wired yet).
    pub url: String,
    /// Schema of the table, created if missing: lowercase `[a-z_][a-z0-9_]*`.
    pub schema: String,
    /// Table name, same rules.
    pub table: String,
    /// Time to live of a row written without one; `None`: no expiry.
    pub default_ttl: Option<Duration>,
    /// Upper bound of every call, including (re)connecting.
    pub timeout: Duration,
    /// Rows per purge batch (`DELETE … WHERE ctid IN (SELECT … LIMIT n)`).
    pub purge_batch: u32,
}

impl PostgresTierConfig {
    /// Defaults: schema `perfkit`, table `cache_entries`, TTL one hour, timeout 1 s, purge
    /// batches of 1000 rows.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "perfkit".to_owned(),
            table: "cache_entries".to_owned(),
            default_ttl: Some(Duration::from_secs(3600)),
            timeout: Duration::from_secs(1),
            purge_batch: 1000,
        }
    }

    /// From the `[cache]` section of `perf.toml`; `None` without a `database_url` or when
    /// caching is switched off. The table is named after `l2_prefix` when that is a valid
    /// identifier, so two applications sharing a database keep separate tables.
    ///
    /// ```
    /// use perf_core::config::CacheConfig;
    /// use perf_cache::postgres::PostgresTierConfig;
    ///
    /// let mut section = CacheConfig::default();
    /// section.database_url = Some("postgres://app@db/app".into());
    /// let cfg = PostgresTierConfig::from_cache_config(&section).unwrap();
    /// assert_eq!(cfg.table, "perfkit_entries");
    /// ```
    pub fn from_cache_config(section: &CacheConfig) -> Option<Self> {
        if !section.enabled {
            return None;
        }
        let url = section.database_url.as_ref()?;
        let mut cfg = Self::new(url.clone())
            .default_ttl(Some(Duration::from_secs(section.database_ttl_secs)));
        let table = format!("{}_entries", section.l2_prefix);
        if super::sql::valid_identifier(&table) {
            cfg.table = table;
        }
        Some(cfg)
    }

    /// Sets [`schema`](Self::schema).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`table`](Self::table).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Sets [`default_ttl`](Self::default_ttl).
    pub fn default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`purge_batch`](Self::purge_batch).
    pub fn purge_batch(mut self, rows: u32) -> Self {
        self.purge_batch = rows;
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return bad(
                "database_url",
                "must start with postgres:// or postgresql://",
            );
        }
        if !super::sql::valid_identifier(&self.schema) {
            return bad(
                "schema",
                "must match [a-z_][a-z0-9_]* and have at most 63 bytes",
            );
        }
        if !super::sql::valid_identifier(&self.table) {
            return bad(
                "table",
                "must match [a-z_][a-z0-9_]* and have at most 63 bytes",
            );
        }
        if self.timeout.is_zero() {
            return bad("database_timeout", "must be positive");
        }
        if self.purge_batch == 0 {
            return bad("purge_batch", "must be positive");
        }
        if self.default_ttl.is_some_and(|t| t.is_zero()) {
            return bad("database_ttl", "must be positive (use None for no expiry)");
        }
        Ok(())
    }
}
