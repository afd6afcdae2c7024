//! The index advisor against a live server: candidates from the parsed statement, each
//! validated by what-if costing — HypoPG hypothetical indexes when the extension is there,
//! else a real `CREATE INDEX` inside a rolled-back transaction (guarded by table size) — with
//! a cache of what-if costs per (query fingerprint, index set). The workload mode, which
//! chooses a set of indexes for many weighted statements, is in `workload.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use serde::{Deserialize, Serialize};

use crate::advisor::candidates::{generate_candidates, CandidateConfig};
use crate::advisor::existing::{existing_index_findings, IndexFinding};
use crate::advisor::size::predict_index_size;
use crate::advisor::{IndexCandidate, TableInfo};
use crate::error::{QueryError, Result};
use crate::fingerprint::{normalize, text_shape, Fingerprint};
use crate::pg::catalog::{schema_tables, table_info};
use crate::pg::{explain_json, pooled, rolled_back};
use crate::plan::node::Plan;
use crate::sql::{analyze, quote_ident};

/// How candidates are costed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WhatIfMode {
    /// HypoPG when installed (or installable inside the rolled-back transaction), else real
    /// indexes.
    Auto,
    /// HypoPG only; an error when it is not available.
    HypoPg,
    /// Real `CREATE INDEX` inside a rolled-back transaction (takes a SHARE lock on the table
    /// until the rollback: writes wait).
    RealIndex,
}

/// The method that costed an advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WhatIfMethod {
    /// HypoPG hypothetical indexes.
    HypoPg,
    /// Real indexes built and rolled back.
    RealIndexRolledBack,
}

/// One validated recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IndexRecommendation {
    /// The index.
    pub candidate: IndexCandidate,
    /// `CREATE INDEX CONCURRENTLY …` to run.
    pub statement: String,
    /// Estimated cost of the query without the index.
    pub cost_before: f64,
    /// Estimated cost with the index.
    pub cost_after: f64,
    /// `(before - after) / before`.
    pub improvement: f64,
    /// Size predicted by perf-query's btree model.
    pub predicted_size_bytes: Option<u64>,
    /// HypoPG's own size estimate (ignores deduplication), when HypoPG costed it.
    pub hypopg_size_bytes: Option<u64>,
}

/// The advice for one statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Advice {
    /// The statement, literals redacted.
    pub query: String,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// How candidates were costed.
    pub method: WhatIfMethod,
    /// Estimated cost as things are.
    pub cost_before: f64,
    /// Recommendations, best first, at most one per table, none redundant.
    pub recommendations: Vec<IndexRecommendation>,
    /// Candidates costed.
    pub candidates_considered: usize,
    /// Candidates skipped because their table is over the real-build size guard.
    pub skipped_by_size_guard: usize,
}

/// Hit and miss counts of the what-if cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatIfCacheStats {
    /// Costs served from the cache.
    pub hits: u64,
    /// Costs computed with EXPLAIN.
    pub misses: u64,
}

impl WhatIfCacheStats {
    /// `hits / (hits + misses)`, 0 when empty.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// What-if vs real cost of a recommendation built for real (and rolled back).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RealCheck {
    /// Estimated cost with the hypothetical index.
    pub whatif_cost: f64,
    /// Estimated cost with the real index.
    pub real_cost: f64,
    /// Real size of the built index.
    pub real_size_bytes: u64,
    /// perf-query's predicted size.
    pub predicted_size_bytes: Option<u64>,
}

/// Key of the what-if cache: query fingerprint and the sorted index definitions present.
pub(super) type CacheKey = (Fingerprint, Vec<String>);

/// Validated index advice; see the module documentation.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> perf_query::Result<()> {
/// let advisor = perf_query::IndexAdvisor::new(pool);
/// let advice = advisor.advise("SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 10").await?;
/// for r in &advice.recommendations {
///     println!("{}  -- {:.0}% cheaper, ~{} bytes", r.statement, r.improvement * 100.0,
///              r.predicted_size_bytes.unwrap_or(0));
/// }
/// println!("what-if cache hit rate {:.0}%", advisor.cache_stats().hit_rate() * 100.0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct IndexAdvisor {
    pub(super) pool: Pool,
    min_improvement: f64,
    pub(super) workload_min_benefit: f64,
    statement_timeout: Duration,
    mode: WhatIfMode,
    pub(super) max_real_build_bytes: u64,
    fillfactor: u32,
    pub(super) candidates: CandidateConfig,
    cache: Mutex<HashMap<CacheKey, f64>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Savepoint name of real what-if builds.
pub(super) const SAVEPOINT: &str = "perfkit_whatif";

impl IndexAdvisor {
    /// An advisor recommending candidates that cut the estimated cost by 20 % or more.
    pub fn new(pool: Pool) -> Self {
        IndexAdvisor {
            pool,
            min_improvement: 0.20,
            workload_min_benefit: 0.01,
            statement_timeout: Duration::from_secs(30),
            mode: WhatIfMode::Auto,
            max_real_build_bytes: 256 << 20,
            fillfactor: 90,
            candidates: CandidateConfig::default(),
            cache: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// An advisor with the threshold and timeout of perf-core's `[query]` section.
    pub fn from_config(pool: Pool, cfg: &perf_core::config::QueryConfig) -> Self {
        IndexAdvisor::new(pool)
            .min_improvement(f64::from(cfg.index_min_improvement_percent) / 100.0)
            .statement_timeout(Duration::from_millis(cfg.statement_timeout_ms))
    }

    /// Smallest cost reduction (fraction, e.g. 0.2) a recommendation needs.
    pub fn min_improvement(mut self, fraction: f64) -> Self {
        self.min_improvement = fraction.clamp(0.0, 1.0);
        self
    }

    /// Smallest cut of the total workload cost (fraction of its initial value, default
    /// 0.01) an index needs to be picked by
    /// [`advise_workload`](Self::advise_workload).
    pub fn workload_min_benefit(mut self, fraction: f64) -> Self {
        self.workload_min_benefit = fraction.clamp(0.0, 1.0);
        self
    }

    /// `statement_timeout` of every statement the advisor runs.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How candidates are costed.
    pub fn mode(mut self, mode: WhatIfMode) -> Self {
        self.mode = mode;
        self
    }

    /// Largest table (heap bytes) on which a real index is built for costing.
    pub fn max_real_build_bytes(mut self, bytes: u64) -> Self {
        self.max_real_build_bytes = bytes;
        self
    }

    /// Candidate generation knobs.
    pub fn candidates(mut self, cfg: CandidateConfig) -> Self {
        self.candidates = cfg;
        self
    }

    /// Hit and miss counts of the what-if cache.
    pub fn cache_stats(&self) -> WhatIfCacheStats {
        WhatIfCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Forgets cached costs (after data or statistics changed).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    pub(super) fn timeout_ms(&self) -> u64 {
        self.statement_timeout.as_millis().max(1) as u64
    }

    /// Advice for one statement: candidates, what-if costs, the recommendations that pass the
    /// threshold (non-redundant, one per table), with sizes.
    ///
    /// # Errors
    ///
    /// [`QueryError::Parse`] when sqlparser cannot parse the statement,
    /// [`QueryError::ExtensionMissing`] in [`WhatIfMode::HypoPg`] without HypoPG, and the
    /// driver and pool errors.
    pub async fn advise(&self, sql: &str) -> Result<Advice> {
        let shape = text_shape(sql)?;
        if shape.statements != 1 {
            return Err(QueryError::MultipleStatements {
                count: shape.statements,
            });
        }
        let normalized = normalize(sql)?;
        let analysis = analyze(sql)?;
        let generic = (shape.max_parameter > 0).then_some(shape.max_parameter);
        let timeout_ms = self.timeout_ms();

        rolled_back(&self.pool, timeout_ms, async |tx| {
            let advice = self
                .advise_in(
                    tx,
                    sql,
                    &normalized.text,
                    normalized.fingerprint,
                    &analysis,
                    generic,
                )
                .await?;
            if advice.method == WhatIfMethod::HypoPg {
                if let Ok(Some(schema)) = hypopg_schema(tx, timeout_ms).await {
                    let _ = tx
                        .batch_execute(&format!("SELECT {}.hypopg_reset()", quote_ident(&schema)))
                        .await;
                }
            }
            Ok(advice)
        })
        .await
    }

    async fn advise_in(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        redacted: &str,
        fp: Fingerprint,
        analysis: &crate::sql::SqlAnalysis,
        generic: Option<usize>,
    ) -> Result<Advice> {
        let timeout_ms = self.timeout_ms();
        tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
            .await
            .map_err(|e| QueryError::pg("SET LOCAL statement_timeout", timeout_ms, e))?;
        let (method, hypo) = self.method(tx).await?;
        let mut tables: Vec<TableInfo> = Vec::new();
        for name in analysis.table_names() {
            if let Some(info) = table_info(&**tx, &name).await? {
                tables.push(info);
            }
        }
        let candidates = generate_candidates(analysis, &tables, &self.candidates);
        let cost_before = self.cost(tx, sql, fp, generic, &[]).await?;
        let mut costed: Vec<IndexRecommendation> = Vec::new();
        let mut skipped = 0;
        for cand in &candidates {
            let table = tables.iter().find(|t| t.matches(&cand.table));
            if method == WhatIfMethod::RealIndexRolledBack
                && table.is_some_and(|t| t.pages.saturating_mul(8192) > self.max_real_build_bytes)
            {
                skipped += 1;
                continue;
            }
            let (cost_after, hypo_size) = match self
                .cost_with(tx, sql, fp, generic, cand, method, &hypo)
                .await
            {
                Ok(v) => v,
                // A candidate the server refuses (e.g. a type without a btree opclass) is
                // simply not recommended.
                Err(QueryError::Postgres { .. }) => continue,
                Err(e) => return Err(e),
            };
            let improvement = if cost_before > 0.0 {
                (cost_before - cost_after) / cost_before
            } else {
                0.0
            };
            costed.push(IndexRecommendation {
                statement: cand.create_statement(true),
                candidate: cand.clone(),
                cost_before,
                cost_after,
                improvement,
                predicted_size_bytes: None,
                hypopg_size_bytes: hypo_size,
            });
        }
        let mut recommendations = select(costed, self.min_improvement);
        for r in &mut recommendations {
            if let Some(t) = tables.iter().find(|t| t.matches(&r.candidate.table)) {
                r.predicted_size_bytes = self.predict_in(&**tx, t, &r.candidate).await?;
            }
        }
        Ok(Advice {
            query: redacted.to_string(),
            fingerprint: fp,
            method,
            cost_before,
            recommendations,
            candidates_considered: candidates.len() - skipped,
            skipped_by_size_guard: skipped,
        })
    }

    /// Picks HypoPG or real builds; installs HypoPG inside the (rolled-back) transaction
    /// when it is available but not created.
    pub(super) async fn method(&self, tx: &Transaction<'_>) -> Result<(WhatIfMethod, String)> {
        let t = self.timeout_ms();
        if self.mode == WhatIfMode::RealIndex {
            return Ok((WhatIfMethod::RealIndexRolledBack, String::new()));
        }
        let installed = hypopg_schema(tx, t).await?.is_some();
        let usable = if installed {
            true
        } else {
            tx.batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
                .await
                .map_err(|e| QueryError::pg("SAVEPOINT", t, e))?;
            match tx.batch_execute("CREATE EXTENSION hypopg").await {
                Ok(()) => true,
                Err(_) => {
                    tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
                        .await
                        .map_err(|e| QueryError::pg("ROLLBACK TO SAVEPOINT", t, e))?;
                    false
                }
            }
        };
        let schema = if usable {
            hypopg_schema(tx, t).await?
        } else {
            None
        };
        match (schema, self.mode) {
            (Some(schema), _) => {
                // Functions are called schema-qualified: the extension may live in a schema
                // that is not on the search path.
                let prefix = format!("{}.", quote_ident(&schema));
                hypopg_reset(tx, &prefix, t).await?;
                Ok((WhatIfMethod::HypoPg, prefix))
            }
            (None, WhatIfMode::HypoPg) => Err(QueryError::ExtensionMissing {
                extension: "hypopg",
                hint: "install the package (Debian: apt-get install postgresql-15-hypopg) and run CREATE EXTENSION hypopg".into(),
            }),
            (None, _) => Ok((WhatIfMethod::RealIndexRolledBack, String::new())),
        }
    }

    pub(super) fn cached(&self, key: &CacheKey) -> Option<f64> {
        let hit = self.cache.lock().ok()?.get(key).copied();
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    pub(super) fn store(&self, key: CacheKey, cost: f64) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, cost);
        }
    }

    pub(super) async fn plan_cost(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        generic: Option<usize>,
    ) -> Result<f64> {
        let json = explain_json(tx, sql, "FORMAT JSON", &[], generic, self.timeout_ms()).await?;
        Ok(Plan::from_json(&json, true)?.root.total_cost)
    }

    /// Cost with the current index set (cached by fingerprint and the set).
    async fn cost(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        fp: Fingerprint,
        generic: Option<usize>,
        indexes: &[String],
    ) -> Result<f64> {
        let key = (fp, indexes.to_vec());
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        let c = self.plan_cost(tx, sql, generic).await?;
        self.store(key, c);
        Ok(c)
    }

    /// Cost with `cand` added (hypothetically or for real, rolled back), and HypoPG's size.
    #[allow(clippy::too_many_arguments)]
    async fn cost_with(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        fp: Fingerprint,
        generic: Option<usize>,
        cand: &IndexCandidate,
        method: WhatIfMethod,
        hypo: &str,
    ) -> Result<(f64, Option<u64>)> {
        let t = self.timeout_ms();
        let key = (fp, vec![cand.key()]);
        let cached = self.cached(&key);
        if let (Some(c), WhatIfMethod::RealIndexRolledBack) = (cached, method) {
            return Ok((c, None));
        }
        match method {
            WhatIfMethod::HypoPg => {
                // A savepoint, so a candidate the server refuses does not abort the
                // transaction the other candidates run in.
                tx.batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
                    .await
                    .map_err(|e| QueryError::pg("SAVEPOINT", t, e))?;
                let attempt = async {
                    // The definition goes in as a bound text parameter.
                    let row = tx
                        .query_one(
                            &format!("SELECT {hypo}hypopg_relation_size(indexrelid)::int8 FROM {hypo}hypopg_create_index($1)"),
                            &[&cand.create_statement(false)],
                        )
                        .await
                        .map_err(|e| QueryError::pg("hypopg_create_index", t, e))?;
                    let size: i64 = row
                        .try_get(0)
                        .map_err(|e| QueryError::pg("hypopg_create_index", t, e))?;
                    let cost = match cached {
                        Some(c) => c,
                        None => self.plan_cost(tx, sql, generic).await?,
                    };
                    Ok::<_, QueryError>((cost, size))
                }
                .await;
                if attempt.is_err() {
                    tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
                        .await
                        .map_err(|e| QueryError::pg("ROLLBACK TO SAVEPOINT", t, e))?;
                }
                // Hypothetical indexes live in backend memory, outside transactions.
                hypopg_reset(tx, hypo, t).await?;
                let (cost, size) = attempt?;
                if cached.is_none() {
                    self.store(key, cost);
                }
                Ok((cost, Some(size.max(0) as u64)))
            }
            WhatIfMethod::RealIndexRolledBack => {
                tx.batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
                    .await
                    .map_err(|e| QueryError::pg("SAVEPOINT", t, e))?;
                let built = tx.batch_execute(&cand.create_statement(false)).await;
                let cost = match built {
                    Ok(()) => self.plan_cost(tx, sql, generic).await,
                    Err(e) => Err(QueryError::pg("CREATE INDEX", t, e)),
                };
                tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
                    .await
                    .map_err(|e| QueryError::pg("ROLLBACK TO SAVEPOINT", t, e))?;
                let cost = cost?;
                self.store(key, cost);
                Ok((cost, None))
            }
        }
    }

    /// Builds `rec` for real inside a rolled-back transaction (not concurrently: it takes a
    /// SHARE lock on the table until the rollback) and compares what-if with real cost and
    /// predicted with real size. Guarded by the real-build size limit.
    ///
    /// # Errors
    ///
    /// [`QueryError::Refused`] when the table is over the size guard; driver errors.
    pub async fn verify_real(&self, sql: &str, rec: &IndexRecommendation) -> Result<RealCheck> {
        let shape = text_shape(sql)?;
        if shape.statements != 1 {
            return Err(QueryError::MultipleStatements {
                count: shape.statements,
            });
        }
        let generic = (shape.max_parameter > 0).then_some(shape.max_parameter);
        let t = self.timeout_ms();
        rolled_back(&self.pool, t, async |tx| {
            tx.batch_execute(&format!("SET LOCAL statement_timeout = {t}"))
                .await
                .map_err(|e| QueryError::pg("SET LOCAL statement_timeout", t, e))?;
            let info = table_info(&**tx, &rec.candidate.table)
                .await?
                .ok_or_else(|| QueryError::Refused {
                    reason: format!("table {} not found", rec.candidate.table),
                })?;
            if info.pages.saturating_mul(8192) > self.max_real_build_bytes {
                return Err(QueryError::Refused {
                    reason: format!(
                        "table {} is {} bytes, over the {}-byte real-build guard",
                        info.name,
                        info.pages.saturating_mul(8192),
                        self.max_real_build_bytes
                    ),
                });
            }
            let name = rec.candidate.suggested_name();
            tx.batch_execute(&rec.candidate.create_statement(false))
                .await
                .map_err(|e| QueryError::pg("CREATE INDEX", t, e))?;
            let real_cost = self.plan_cost(tx, sql, generic).await?;
            let qualified = match &info.name.schema {
                Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&name)),
                None => quote_ident(&name),
            };
            let row = tx
                .query_one(
                    "SELECT pg_relation_size($1::text::regclass)::int8",
                    &[&qualified],
                )
                .await
                .map_err(|e| QueryError::pg("pg_relation_size", t, e))?;
            let size: i64 = row
                .try_get(0)
                .map_err(|e| QueryError::pg("pg_relation_size", t, e))?;
            Ok(RealCheck {
                whatif_cost: rec.cost_after,
                real_cost,
                real_size_bytes: size.max(0) as u64,
                predicted_size_bytes: rec.predicted_size_bytes,
            })
        })
        .await
    }

    /// Unused, duplicate and prefix-redundant indexes of the tables in `schema`.
    ///
    /// # Errors
    ///
    /// Driver and pool errors.
    pub async fn existing_indexes(&self, schema: &str) -> Result<Vec<IndexFinding>> {
        let client = pooled(&self.pool).await?;
        let tables = schema_tables(&**client, schema).await?;
        Ok(existing_index_findings(&tables))
    }

    /// Distinct values of the column combination `columns` of `table`, estimated from a
    /// row sample of about 100 000 rows with the Haas–Stokes estimator (as `ANALYZE` does for
    /// one column). Multi-column index sizes need it: correlated columns have far fewer
    /// combinations than the product of their distinct counts.
    ///
    /// # Errors
    ///
    /// [`QueryError::Refused`] for an unknown table; driver and pool errors.
    pub async fn estimate_distinct(
        &self,
        table: &crate::sql::TableName,
        columns: &[&str],
    ) -> Result<f64> {
        let client = pooled(&self.pool).await?;
        let info = table_info(&**client, table)
            .await?
            .ok_or_else(|| QueryError::Refused {
                reason: format!("table {table} not found"),
            })?;
        sample_distinct(&**client, &info, columns, self.timeout_ms()).await
    }

    /// Predicted size of `candidate` once built (see
    /// [`predict_index_size`](crate::predict_index_size)): the partial predicate's rows come
    /// from the planner; the distinct keys of multi-column keys, and of single columns with
    /// few duplicates per value (where `ANALYZE`'s 30 000-row estimate is least reliable and
    /// deduplication most sensitive), are measured on a larger sample.
    ///
    /// # Errors
    ///
    /// [`QueryError::Refused`] for an unknown table; driver and pool errors.
    pub async fn predict_size(&self, candidate: &IndexCandidate) -> Result<Option<u64>> {
        let client = pooled(&self.pool).await?;
        let info = table_info(&**client, &candidate.table)
            .await?
            .ok_or_else(|| QueryError::Refused {
                reason: format!("table {} not found", candidate.table),
            })?;
        self.predict_in(&**client, &info, candidate).await
    }

    pub(super) async fn predict_in<C: tokio_postgres::GenericClient + Sync>(
        &self,
        client: &C,
        t: &TableInfo,
        cand: &IndexCandidate,
    ) -> Result<Option<u64>> {
        let timeout_ms = self.timeout_ms();
        let rows = match &cand.predicate {
            Some(p) => {
                let sql = format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}", t.name, p);
                let row = client
                    .query_one(&sql, &[])
                    .await
                    .map_err(|e| QueryError::pg("estimating partial index rows", timeout_ms, e))?;
                let json: serde_json::Value = row
                    .try_get(0)
                    .map_err(|e| QueryError::pg("estimating partial index rows", timeout_ms, e))?;
                Some(Plan::from_json(&json, true)?.root.plan_rows)
            }
            None => None,
        };
        // ANALYZE reads 30 000 rows: when most values it sees are singletons it calls the
        // column unique (n_distinct = -1) even with a few duplicates per value, which is
        // exactly where deduplication changes the size most. Only a unique index proves it.
        let uncertain = |name: &str| {
            let proven_unique = t
                .indexes
                .iter()
                .any(|i| i.unique && !i.partial && i.columns.len() == 1 && i.columns[0] == name);
            t.column(name).is_some_and(|c| {
                c.deduplicates()
                    && !proven_unique
                    && c.distinct(t.rows)
                        .is_some_and(|d| t.rows / d.max(1.0) < 50.0)
            })
        };
        let distinct = if cand.columns.len() > 1
            || (cand.include.is_empty() && uncertain(&cand.columns[0].name))
        {
            let cols = cand.column_names();
            Some(sample_distinct(client, t, &cols, timeout_ms).await?)
        } else {
            None
        };
        Ok(predict_index_size(cand, t, self.fillfactor, rows, distinct))
    }

    /// [`TableInfo`] of a table as the advisor sees it (statistics, indexes).
    ///
    /// # Errors
    ///
    /// Driver and pool errors.
    pub async fn table_info(&self, name: &crate::sql::TableName) -> Result<Option<TableInfo>> {
        let client = pooled(&self.pool).await?;
        table_info(&**client, name).await
    }
}

/// Drops every hypothetical index of the session; `prefix` is HypoPG's schema, quoted, with
/// a trailing dot.
pub(super) async fn hypopg_reset(
    tx: &Transaction<'_>,
    prefix: &str,
    timeout_ms: u64,
) -> Result<()> {
    tx.batch_execute(&format!("SELECT {prefix}hypopg_reset()"))
        .await
        .map_err(|e| QueryError::pg("hypopg_reset", timeout_ms, e))
}

/// The schema HypoPG is installed in, if it is.
async fn hypopg_schema(tx: &Transaction<'_>, timeout_ms: u64) -> Result<Option<String>> {
    let row = tx
        .query_opt(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'hypopg'",
            &[],
        )
        .await
        .map_err(|e| QueryError::pg("reading pg_extension", timeout_ms, e))?;
    row.map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| QueryError::pg("reading pg_extension", timeout_ms, e))
}

/// Rows sampled by [`sample_distinct`].
const DISTINCT_SAMPLE_ROWS: f64 = 100_000.0;

/// Haas–Stokes estimate of the distinct combinations of `columns` from a Bernoulli sample.
async fn sample_distinct<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    table: &TableInfo,
    columns: &[&str],
    timeout_ms: u64,
) -> Result<f64> {
    let rows = table.rows.max(1.0);
    let percent = (DISTINCT_SAMPLE_ROWS / rows * 100.0).clamp(0.0001, 100.0);
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let cols = cols.join(", ");
    // Identifiers are quoted; the percentage is a number we computed.
    let sql = format!(
        "WITH g AS (SELECT count(*) AS c FROM {} TABLESAMPLE BERNOULLI ({percent}) GROUP BY {cols}) \
         SELECT coalesce(sum(c), 0)::float8, count(*)::float8, count(*) FILTER (WHERE c = 1)::float8 FROM g",
        table.name
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| QueryError::pg("sampling distinct keys", timeout_ms, e))?;
    let get = |i: usize| -> Result<f64> {
        row.try_get(i)
            .map_err(|e| QueryError::pg("sampling distinct keys", timeout_ms, e))
    };
    let (n, d, f1) = (get(0)?, get(1)?, get(2)?);
    let est = haas_stokes(n, d, f1, rows);
    tracing::debug!(table = %table.name, n, d, f1, est, "sampled distinct keys");
    Ok(est)
}

/// The Haas–Stokes "Duj1" estimator PostgreSQL's `ANALYZE` uses: `n·d / (n − f1 + f1·n/N)`
/// for a sample of `n` rows with `d` distinct values, `f1` of them seen once, from `total`
/// rows.
fn haas_stokes(n: f64, d: f64, f1: f64, total: f64) -> f64 {
    if n <= 0.0 {
        return 1.0;
    }
    if n >= total || f1 >= n {
        // The whole table, or every sampled value unique: as many values as rows.
        return if n >= total { d } else { total };
    }
    let est = n * d / (n - f1 + f1 * n / total);
    est.clamp(d, total)
}

/// Keeps candidates over the threshold, best first, dropping redundant ones (a prefix of a
/// kept one, or extending a kept one without doing better), at most one per table.
fn select(mut costed: Vec<IndexRecommendation>, min_improvement: f64) -> Vec<IndexRecommendation> {
    costed.retain(|r| r.improvement >= min_improvement);
    // Best first; among near-equal improvements, fewer columns first (smaller index).
    costed.sort_by(|a, b| {
        let width = |r: &IndexRecommendation| r.candidate.columns.len() + r.candidate.include.len();
        if (a.improvement - b.improvement).abs() < 0.01 {
            width(a).cmp(&width(b))
        } else {
            b.improvement.total_cmp(&a.improvement)
        }
    });
    let mut kept: Vec<IndexRecommendation> = Vec::new();
    for r in costed {
        if kept.iter().any(|k| k.candidate.table == r.candidate.table) {
            continue;
        }
        kept.push(r);
    }
    kept
}

impl From<&Advice> for Vec<crate::report::ReportIndex> {
    fn from(a: &Advice) -> Self {
        a.recommendations
            .iter()
            .map(|r| crate::report::ReportIndex {
                query: a.query.clone(),
                statement: r.statement.clone(),
                cost_before: r.cost_before,
                cost_after: r.cost_after,
                improvement: r.improvement,
                predicted_size_bytes: r.predicted_size_bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::haas_stokes;

    #[test]
    fn haas_stokes_bounds() {
        // Every sampled value seen many times: the sample saw them all.
        assert_eq!(haas_stokes(30_000.0, 100.0, 0.0, 1e6), 100.0);
        // All unique in the sample: unique in the table.
        assert_eq!(haas_stokes(30_000.0, 30_000.0, 30_000.0, 1e6), 1e6);
        // Whole table sampled: exact.
        assert_eq!(haas_stokes(500.0, 20.0, 3.0, 500.0), 20.0);
        let mid = haas_stokes(30_000.0, 20_000.0, 12_000.0, 1e6);
        assert!(mid > 20_000.0 && mid < 1e6, "{mid}");
    }
}
