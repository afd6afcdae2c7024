//! The explainer: runs `EXPLAIN (FORMAT JSON [, ANALYZE, BUFFERS])` through a pooled
//! connection inside a transaction that is always rolled back, under `SET LOCAL
//! statement_timeout`, and returns a typed [`Plan`] annotated with table sizes.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::types::ToSql;

use crate::error::{QueryError, Result};
use crate::fingerprint::text_shape;
use crate::pg::{explain_json, rolled_back};
use crate::plan::detect::{detect_issues, DetectorConfig, Issue};
use crate::plan::node::Plan;

/// What to ask `EXPLAIN` for.
///
/// ```
/// let opts = perf_query::ExplainOptions::analyze().with_setting("work_mem", "64MB");
/// assert!(opts.analyze && opts.buffers);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExplainOptions {
    /// Run the statement (inside the rolled-back transaction) and measure it.
    pub analyze: bool,
    /// Report buffer usage (needs `analyze`).
    pub buffers: bool,
    /// Settings applied with `set_config(name, value, true)` (transaction-local, bound as
    /// parameters) before explaining, to see a plan under other settings ("what if
    /// `work_mem` were 64MB").
    pub settings: Vec<(String, String)>,
}

impl ExplainOptions {
    /// Plan only (no execution).
    pub fn plan_only() -> Self {
        ExplainOptions::default()
    }
    /// `ANALYZE, BUFFERS`.
    pub fn analyze() -> Self {
        ExplainOptions {
            analyze: true,
            buffers: true,
            settings: Vec::new(),
        }
    }

    /// Adds a transaction-local setting.
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A plan with the issues found in it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Analysis {
    /// The plan.
    pub plan: Plan,
    /// Issues, most severe first.
    pub issues: Vec<Issue>,
}

/// Runs `EXPLAIN` safely; see the module documentation.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> perf_query::Result<()> {
/// use perf_query::{ExplainOptions, Explainer};
/// let explainer = Explainer::new(pool);
/// // A DELETE is really executed to measure it, then rolled back: no row is lost.
/// let analysis = explainer
///     .analyze("DELETE FROM sessions WHERE expires_at < now()", &[], &ExplainOptions::analyze())
///     .await?;
/// for issue in &analysis.issues {
///     println!("{}: {}", issue.severity, issue.recommendation);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Explainer {
    pool: Pool,
    statement_timeout: Duration,
    lock_timeout: Duration,
    detector: DetectorConfig,
    redact: bool,
}

impl Explainer {
    /// An explainer with a 30 s statement timeout, 5 s lock timeout and default detectors.
    pub fn new(pool: Pool) -> Self {
        Explainer {
            pool,
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            detector: DetectorConfig::default(),
            redact: true,
        }
    }

    /// An explainer with the timeout and slow threshold of perf-core's `[query]` section.
    pub fn from_config(pool: Pool, cfg: &perf_core::config::QueryConfig) -> Self {
        Explainer {
            statement_timeout: Duration::from_millis(cfg.statement_timeout_ms),
            detector: DetectorConfig::from_query_config(cfg),
            ..Explainer::new(pool)
        }
    }

    /// Sets the `statement_timeout` applied to every analyzed statement.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets the `lock_timeout` (a write being analyzed may wait for row locks).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Sets the detector thresholds.
    pub fn detector(mut self, cfg: DetectorConfig) -> Self {
        self.detector = cfg;
        self
    }

    /// Keeps literals in plan conditions (off by default: they may hold user data).
    pub fn reveal_literals(mut self, reveal: bool) -> Self {
        self.redact = !reveal;
        self
    }

    /// The pool this explainer uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Explains `sql` and runs the detectors on the plan.
    ///
    /// # Errors
    ///
    /// As [`explain`](Self::explain).
    pub async fn analyze(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        options: &ExplainOptions,
    ) -> Result<Analysis> {
        let plan = self.explain(sql, params, options).await?;
        let issues = detect_issues(&plan, &self.detector);
        Ok(Analysis { plan, issues })
    }

    /// Explains `sql` with `params` bound. A statement with `$n` parameters and no values is
    /// explained as a generic plan (`plan_cache_mode = force_generic_plan`), which needs no
    /// values but cannot be `ANALYZE`d.
    ///
    /// Whatever the statement does, it runs inside a transaction that is rolled back — also
    /// when it fails, times out, or this future is dropped (tokio-postgres queues the
    /// `ROLLBACK` before the connection can be reused).
    ///
    /// # Errors
    ///
    /// [`QueryError::MultipleStatements`] for more than one statement,
    /// [`QueryError::Parse`] for a syntax error (with the server's position),
    /// [`QueryError::Timeout`], [`QueryError::Refused`] for `ANALYZE` without parameter
    /// values, [`QueryError::Pool`] / [`QueryError::Postgres`] otherwise.
    pub async fn explain(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        options: &ExplainOptions,
    ) -> Result<Plan> {
        let shape = text_shape(sql)?;
        if shape.statements == 0 {
            return Err(QueryError::Empty);
        }
        if shape.statements > 1 {
            return Err(QueryError::MultipleStatements {
                count: shape.statements,
            });
        }
        let generic = shape.max_parameter > 0 && params.is_empty();
        if generic && options.analyze {
            return Err(QueryError::Refused {
                reason: format!(
                    "EXPLAIN ANALYZE needs values for the statement's {} parameters",
                    shape.max_parameter
                ),
            });
        }
        let timeout_ms = self.statement_timeout.as_millis().max(1) as u64;
        rolled_back(&self.pool, timeout_ms, async |tx| {
            self.explain_in(
                tx,
                sql,
                params,
                options,
                generic,
                shape.max_parameter,
                timeout_ms,
            )
            .await
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn explain_in(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        options: &ExplainOptions,
        generic: bool,
        parameters: usize,
        timeout_ms: u64,
    ) -> Result<Plan> {
        let lock_ms = self.lock_timeout.as_millis().max(1) as u64;
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {timeout_ms}; SET LOCAL lock_timeout = {lock_ms}"
        ))
        .await
        .map_err(|e| QueryError::pg("SET LOCAL statement_timeout", timeout_ms, e))?;
        for (name, value) in &options.settings {
            tx.query_one("SELECT set_config($1, $2, true)", &[name, value])
                .await
                .map_err(|e| QueryError::pg("set_config", timeout_ms, e))?;
        }
        let mut opts = String::from("FORMAT JSON");
        if options.analyze {
            opts.push_str(", ANALYZE");
            if options.buffers {
                opts.push_str(", BUFFERS");
            }
        }
        let json = explain_json(
            tx,
            sql,
            &opts,
            params,
            generic.then_some(parameters),
            timeout_ms,
        )
        .await?;
        let mut plan = Plan::from_json(&json, self.redact)?;
        annotate_sizes(tx, &mut plan, timeout_ms).await?;
        Ok(plan)
    }
}

/// Fills [`PlanNode::relation_rows`](crate::PlanNode::relation_rows) from `pg_class.reltuples`
/// of the relations visible on the search path.
async fn annotate_sizes(tx: &Transaction<'_>, plan: &mut Plan, timeout_ms: u64) -> Result<()> {
    let mut names: Vec<String> = plan
        .nodes()
        .filter_map(|(_, n)| n.relation.clone())
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(());
    }
    let rows = tx
        .query(
            "SELECT c.relname::text, c.reltuples::float8 FROM pg_class c \
             WHERE c.relname = ANY($1) AND pg_table_is_visible(c.oid)",
            &[&names],
        )
        .await
        .map_err(|e| QueryError::pg("reading pg_class", timeout_ms, e))?;
    let mut sizes = HashMap::new();
    for row in rows {
        let name: String = row
            .try_get(0)
            .map_err(|e| QueryError::pg("reading pg_class", timeout_ms, e))?;
        let tuples: f64 = row
            .try_get(1)
            .map_err(|e| QueryError::pg("reading pg_class", timeout_ms, e))?;
        if tuples >= 0.0 {
            sizes.insert(name, tuples);
        }
    }
    plan.for_each_node_mut(&mut |n| {
        if let Some(rel) = &n.relation {
            n.relation_rows = sizes.get(rel).copied();
        }
    });
    Ok(())
}
