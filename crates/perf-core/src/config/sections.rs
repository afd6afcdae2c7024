//! The four sections of `perf.toml`, their defaults and their validation.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn invalid(field: &str, value: impl ToString, reason: &str) -> Error {
    Error::ConfigInvalid {
        field: field.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

fn positive(field: &str, value: u64) -> Result<()> {
    if value == 0 {
        return Err(invalid(field, value, "must be greater than 0"));
    }
    Ok(())
}

fn dollars(field: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(invalid(
            field,
            v,
            "must be a finite, non-negative amount of US dollars",
        )),
        _ => Ok(()),
    }
}

/// Replacement policy of the in-process (L1) cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CachePolicy {
    /// Least recently used.
    Lru,
    /// Least frequently used.
    Lfu,
    /// First in, first out.
    Fifo,
    /// perf-cache's scan-resistant policy (the default): keeps frequently used entries when a
    /// one-off scan passes through.
    #[default]
    ScanResistant,
}

/// `[cache]`: the multi-level cache (perf-cache).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Rollback switch: `false` bypasses caching entirely (every get is a miss, nothing stored).
    pub enabled: bool,
    /// L1 budget in bytes of keys, values and per-entry overhead.
    pub l1_max_bytes: u64,
    /// Optional bound on the number of L1 entries.
    pub l1_max_entries: Option<u64>,
    /// L1 replacement policy.
    pub l1_policy: CachePolicy,
    /// Default L1 time to live in seconds (none: entries live until evicted).
    pub l1_ttl_secs: Option<u64>,
    /// Redis URL of the L2 tier (`redis://`, `rediss://`, `redis+cluster://`); none disables L2.
    pub l2_url: Option<String>,
    /// Default L2 time to live in seconds.
    pub l2_ttl_secs: u64,
    /// Prefix of every L2 key, so several applications can share one Redis.
    pub l2_prefix: String,
    /// Timeout of each L2 call in milliseconds.
    pub l2_timeout_ms: u64,
    /// PostgreSQL URL of the database tier; none disables it.
    pub database_url: Option<String>,
    /// Default time to live of the database tier in seconds.
    pub database_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            l1_max_bytes: 256 << 20,
            l1_max_entries: None,
            l1_policy: CachePolicy::default(),
            l1_ttl_secs: None,
            l2_url: None,
            l2_ttl_secs: 3600,
            l2_prefix: "perfkit".to_owned(),
            l2_timeout_ms: 500,
            database_url: None,
            database_ttl_secs: 3600,
        }
    }
}

impl CacheConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        positive("cache.l1_max_bytes", self.l1_max_bytes)?;
        if let Some(n) = self.l1_max_entries {
            positive("cache.l1_max_entries", n)?;
        }
        if let Some(ttl) = self.l1_ttl_secs {
            positive("cache.l1_ttl_secs", ttl)?;
        }
        positive("cache.l2_ttl_secs", self.l2_ttl_secs)?;
        positive("cache.l2_timeout_ms", self.l2_timeout_ms)?;
        positive("cache.database_ttl_secs", self.database_ttl_secs)?;
        if let Some(url) = &self.l2_url {
            let ok = [
                "redis://",
                "rediss://",
                "redis+unix://",
                "unix://",
                "redis+cluster://",
            ]
            .iter()
            .any(|scheme| url.starts_with(scheme));
            if !ok {
                return Err(invalid(
                    "cache.l2_url",
                    url,
                    "must start with redis://, rediss://, redis+cluster:// or unix://",
                ));
            }
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "cache.database_url",
                    url,
                    "must start with postgres:// or postgresql://",
                ));
            }
        }
        if self.l2_prefix.is_empty() || self.l2_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "cache.l2_prefix",
                &self.l2_prefix,
                "must be non-empty and contain no whitespace",
            ));
        }
        Ok(())
    }
}

/// How a batch is cut into chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChunkStrategy {
    /// `chunk_size` items per chunk.
    #[default]
    Fixed,
    /// Sized from the current CPU and memory load.
    Dynamic,
    /// Re-sized during the run to hit `target_chunk_ms`.
    Adaptive,
    /// Sized from measured item memory to stay under `memory_threshold_mb`.
    MemoryBased,
}

/// The largest `[batch] checkpoint_min_gap_ms`: one hour. A longer gap would leave a crashed run
/// with almost nothing recorded.
const MAX_CHECKPOINT_MIN_GAP_MS: u64 = 3_600_000;

/// `[batch]`: batch and stream processing (perf-batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BatchConfig {
    /// Rollback switch: `false` turns batching optimizations off (items run one at a time, in
    /// order, with no chunk re-sizing).
    pub enabled: bool,
    /// Items per chunk (the starting size for adaptive strategies).
    pub chunk_size: u64,
    /// Chunking strategy.
    pub strategy: ChunkStrategy,
    /// Items or chunks processed at the same time.
    pub max_concurrency: u64,
    /// Retries per item after the first attempt.
    pub max_retries: u32,
    /// First retry delay in milliseconds; doubles each retry, with jitter.
    pub retry_base_delay_ms: u64,
    /// Items between durable checkpoints.
    pub checkpoint_interval: u64,
    /// Shortest time between two checkpoint writes, in milliseconds: items finished meanwhile
    /// join the next segment, so fast items do not become a stream of fsyncs. A crash loses at
    /// most the items finished since the last write (they run again on resume). 0 writes at
    /// every `checkpoint_interval`; at most 3600000 (one hour).
    pub checkpoint_min_gap_ms: u64,
    /// Resident memory ceiling for the memory-based strategy and stream backpressure, in MiB.
    pub memory_threshold_mb: u64,
    /// Target duration of one chunk for the adaptive strategy, in milliseconds.
    pub target_chunk_ms: u64,
    /// Stop at the first failed item.
    pub fail_fast: bool,
    /// Return results in input order.
    pub preserve_order: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            chunk_size: 100,
            strategy: ChunkStrategy::default(),
            max_concurrency: 10,
            max_retries: 3,
            retry_base_delay_ms: 200,
            checkpoint_interval: 100,
            checkpoint_min_gap_ms: 500,
            memory_threshold_mb: 1000,
            target_chunk_ms: 1000,
            fail_fast: false,
            preserve_order: true,
        }
    }
}

impl BatchConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        positive("batch.chunk_size", self.chunk_size)?;
        positive("batch.max_concurrency", self.max_concurrency)?;
        positive("batch.checkpoint_interval", self.checkpoint_interval)?;
        if self.checkpoint_min_gap_ms > MAX_CHECKPOINT_MIN_GAP_MS {
            return Err(invalid(
                "batch.checkpoint_min_gap_ms",
                self.checkpoint_min_gap_ms,
                "must be at most 3600000 (one hour)",
            ));
        }
        positive("batch.memory_threshold_mb", self.memory_threshold_mb)?;
        positive("batch.target_chunk_ms", self.target_chunk_ms)?;
        if self.max_concurrency > 100_000 {
            return Err(invalid(
                "batch.max_concurrency",
                self.max_concurrency,
                "must be at most 100000",
            ));
        }
        Ok(())
    }
}

/// `[cost]`: LLM cost tracking and budgets (perf-cost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CostConfig {
    /// Rollback switch: `false` turns enforcement off (usage is still tracked and alerts still
    /// fire, but no call is refused).
    pub enabled: bool,
    /// Daily budget in US dollars.
    pub daily_budget_usd: Option<f64>,
    /// Weekly budget in US dollars.
    pub weekly_budget_usd: Option<f64>,
    /// Monthly budget in US dollars.
    pub monthly_budget_usd: Option<f64>,
    /// Lifetime budget in US dollars.
    pub total_budget_usd: Option<f64>,
    /// Alert thresholds in percent of a budget, ascending.
    pub alert_thresholds_percent: Vec<u32>,
    /// Largest cost of one request allowed without explicit approval, in US dollars.
    pub per_request_cap_usd: Option<f64>,
    /// IANA time zone of calendar budget periods, such as `UTC` or `Europe/Berlin`.
    pub timezone: String,
    /// Seconds after which a reservation that was never committed is released.
    pub reservation_ttl_secs: u64,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            daily_budget_usd: None,
            weekly_budget_usd: None,
            monthly_budget_usd: None,
            total_budget_usd: None,
            alert_thresholds_percent: vec![80, 90, 100],
            per_request_cap_usd: Some(1.0),
            timezone: "UTC".to_owned(),
            reservation_ttl_secs: 300,
        }
    }
}

impl CostConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        dollars("cost.daily_budget_usd", self.daily_budget_usd)?;
        dollars("cost.weekly_budget_usd", self.weekly_budget_usd)?;
        dollars("cost.monthly_budget_usd", self.monthly_budget_usd)?;
        dollars("cost.total_budget_usd", self.total_budget_usd)?;
        dollars("cost.per_request_cap_usd", self.per_request_cap_usd)?;
        let thresholds = &self.alert_thresholds_percent;
        if thresholds.iter().any(|&t| t == 0 || t > 1000)
            || thresholds.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(invalid(
                "cost.alert_thresholds_percent",
                format!("{thresholds:?}"),
                "must be strictly ascending percentages between 1 and 1000",
            ));
        }
        if self.timezone.trim().is_empty() {
            return Err(invalid(
                "cost.timezone",
                &self.timezone,
                "must name an IANA time zone such as UTC",
            ));
        }
        positive("cost.reservation_ttl_secs", self.reservation_ttl_secs)?;
        Ok(())
    }
}

/// `[query]`: PostgreSQL query analysis (perf-query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QueryConfig {
    /// Rollback switch: `false` bypasses query analysis, N+1 detection and the result cache.
    pub enabled: bool,
    /// Queries slower than this are reported as slow, in milliseconds.
    pub slow_query_threshold_ms: u64,
    /// Time to live of cached query results in seconds.
    pub cache_ttl_secs: u64,
    /// Byte bound of the query result cache.
    pub cache_max_bytes: u64,
    /// `statement_timeout` applied to analyzed statements, in milliseconds.
    pub statement_timeout_ms: u64,
    /// Repeats of one query shape in one context before it is reported as N+1.
    pub n_plus_one_min_repeats: u32,
    /// Total duration of those repeats before it is reported as N+1, in milliseconds.
    pub n_plus_one_min_total_ms: u64,
    /// Smallest estimated cost reduction, in percent, for an index to be recommended.
    pub index_min_improvement_percent: u32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            slow_query_threshold_ms: 1000,
            cache_ttl_secs: 300,
            cache_max_bytes: 64 << 20,
            statement_timeout_ms: 30_000,
            n_plus_one_min_repeats: 5,
            n_plus_one_min_total_ms: 50,
            index_min_improvement_percent: 20,
        }
    }
}

impl QueryConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        positive(
            "query.slow_query_threshold_ms",
            self.slow_query_threshold_ms,
        )?;
        positive("query.cache_ttl_secs", self.cache_ttl_secs)?;
        positive("query.cache_max_bytes", self.cache_max_bytes)?;
        positive("query.statement_timeout_ms", self.statement_timeout_ms)?;
        if self.n_plus_one_min_repeats < 2 {
            return Err(invalid(
                "query.n_plus_one_min_repeats",
                self.n_plus_one_min_repeats,
                "must be at least 2",
            ));
        }
        if self.index_min_improvement_percent == 0 || self.index_min_improvement_percent >= 100 {
            return Err(invalid(
                "query.index_min_improvement_percent",
                self.index_min_improvement_percent,
                "must be between 1 and 99",
            ));
        }
        Ok(())
    }
}
