//! Settings of the Redis tier: URL, namespace prefix, default TTL, per-call timeout, reconnect
//! backoff and batch sizes.

use std::path::PathBuf;
use std::time::Duration;

use perf_core::config::CacheConfig;

use super::url::is_tls;
use crate::error::{Error, Result};

/// How the Redis tier connects and behaves. Build with [`RedisTierConfig::new`] and the
/// chained setters; every default is safe for production.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::redis::RedisTierConfig;
///
/// let cfg = RedisTierConfig::new("redis://127.0.0.1:6379")
///     .prefix("myapp")
///     .default_ttl(Some(Duration::from_secs(600)))
///     .timeout(Duration::from_millis(200));
/// assert_eq!(cfg.prefix, "myapp");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisTierConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS), `unix://…`, or a cluster's
    /// seed list `redis+cluster://…` / `rediss+cluster://…` (TLS; for `RedisClusterTier`).
    pub url: String,
    /// Namespace of every key this tier writes: `{prefix}:k:{key}`, `{prefix}:tag:{tag}`.
    pub prefix: String,
    /// Time to live of a value written without one; `None`: no expiry.
    pub default_ttl: Option<Duration>,
    /// Upper bound of every call, including waiting for a reconnection.
    pub timeout: Duration,
    /// First delay between reconnection attempts.
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max_delay: Duration,
    /// Attempts per reconnection round; the next call after a failed round starts a new one.
    pub reconnect_attempts: usize,
    /// Bound of one TCP (and TLS) connection attempt.
    pub connect_timeout: Duration,
    /// Keys per `MGET`, `SCAN` page and `UNLINK` batch.
    pub batch: usize,
    /// PEM file of the certificate authorities that a `rediss://` server's certificate (or every
    /// `rediss+cluster://` node's) must chain to, used instead of the system's trust store (a private CA). `None`: the
    /// system's roots. Read when the tier is built.
    pub tls_root_cert: Option<PathBuf>,
    /// PEM files of a client certificate and its private key, presented to `rediss://`
    /// servers (and `rediss+cluster://` nodes) that authenticate clients (`tls-auth-clients yes`). Read when the tier is
    /// built.
    pub tls_client_cert: Option<(PathBuf, PathBuf)>,
}

impl RedisTierConfig {
    /// Defaults: prefix `perfkit`, TTL one hour, timeout 500 ms, reconnect backoff 50 → 200 ms
    /// (so a restarted server is used again within about a second), batches of 500 keys.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "perfkit".to_owned(),
            default_ttl: Some(Duration::from_secs(3600)),
            timeout: Duration::from_millis(500),
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_millis(200),
            reconnect_attempts: 4,
            connect_timeout: Duration::from_millis(250),
            batch: 500,
            tls_root_cert: None,
            tls_client_cert: None,
        }
    }

    /// From the `[cache]` section of `perf.toml`; `None` when it names no L2 URL or caching is
    /// switched off.
    ///
    /// ```
    /// use perf_core::config::CacheConfig;
    /// use perf_cache::redis::RedisTierConfig;
    ///
    /// let mut section = CacheConfig::default();
    /// assert!(RedisTierConfig::from_cache_config(&section).is_none());
    /// section.l2_url = Some("redis://127.0.0.1:6379".into());
    /// let cfg = RedisTierConfig::from_cache_config(&section).unwrap();
    /// assert_eq!(cfg.timeout.as_millis(), 500);
    /// ```
    pub fn from_cache_config(section: &CacheConfig) -> Option<Self> {
        if !section.enabled {
            return None;
        }
        let url = section.l2_url.as_ref()?;
        Some(
            Self::new(url.clone())
                .prefix(section.l2_prefix.clone())
                .default_ttl(Some(Duration::from_secs(section.l2_ttl_secs)))
                .timeout(Duration::from_millis(section.l2_timeout_ms)),
        )
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
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

    /// Sets the reconnect backoff bounds.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min_delay = min;
        self.reconnect_max_delay = max;
        self
    }

    /// Sets [`batch`](Self::batch).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Sets [`tls_root_cert`](Self::tls_root_cert): trust the certificate authorities in
    /// this PEM file for `rediss://` (feature `redis-tls`).
    ///
    /// ```
    /// use perf_cache::redis::RedisTierConfig;
    ///
    /// let cfg = RedisTierConfig::new("rediss://cache.internal:6380")
    ///     .tls_root_cert("/etc/perfkit/redis-ca.pem")
    ///     .tls_client_cert("/etc/perfkit/client.pem", "/etc/perfkit/client.key");
    /// assert!(cfg.validate().is_ok());
    /// // The same files for every node of a TLS cluster.
    /// assert!(RedisTierConfig::new("rediss+cluster://10.0.0.1:7000,10.0.0.2:7000")
    ///     .tls_root_cert("/etc/perfkit/redis-ca.pem")
    ///     .validate()
    ///     .is_ok());
    /// // TLS files need a rediss:// or rediss+cluster:// URL.
    /// assert!(RedisTierConfig::new("redis://127.0.0.1:6379")
    ///     .tls_root_cert("/etc/perfkit/redis-ca.pem")
    ///     .validate()
    ///     .is_err());
    /// ```
    pub fn tls_root_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_root_cert = Some(pem_file.into());
        self
    }

    /// Sets [`tls_client_cert`](Self::tls_client_cert): the client certificate and private
    /// key (PEM files) for servers that authenticate clients (feature `redis-tls`).
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_client_cert = Some((cert.into(), key.into()));
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
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return bad("l2_prefix", "must be non-empty and contain no whitespace");
        }
        if self.timeout.is_zero() {
            return bad("l2_timeout", "must be positive");
        }
        if self.batch == 0 {
            return bad("batch", "must be positive");
        }
        if self.reconnect_min_delay > self.reconnect_max_delay {
            return bad("reconnect_min_delay", "must not exceed reconnect_max_delay");
        }
        if self.default_ttl.is_some_and(|t| t.is_zero()) {
            return bad("l2_ttl", "must be positive (use None for no expiry)");
        }
        // TLS files need a TLS URL: one server (`rediss://`) or a cluster (`rediss+cluster://`).
        if !is_tls(&self.url) {
            let reason = "needs a rediss:// or rediss+cluster:// URL";
            if self.tls_root_cert.is_some() {
                return bad("tls_root_cert", reason);
            }
            if self.tls_client_cert.is_some() {
                return bad("tls_client_cert", reason);
            }
        }
        Ok(())
    }
}
