//! Workload mode of the index advisor: for weighted statements (e.g. from
//! `pg_stat_statements`), the set of indexes under a storage budget that minimizes the
//! total weighted cost — greedy by benefit per byte, every remaining candidate re-costed
//! against the indexes already chosen, so interactions count.
//!
//! Costs come from the same what-if machinery as single-statement advice (HypoPG, else real
//! indexes in the rolled-back transaction) and the same cache, keyed by (statement
//! fingerprint, the chosen indexes on the tables it reads): after a pick, only statements on
//! the picked index's table are costed again.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};

use super::advisor::{hypopg_reset, IndexAdvisor, WhatIfCacheStats, WhatIfMethod, SAVEPOINT};
use crate::advisor::candidates::generate_candidates;
use crate::advisor::{IndexCandidate, TableInfo};
use crate::error::{QueryError, Result};
use crate::fingerprint::{normalize, text_shape, Fingerprint};
use crate::pg::catalog::table_info;
use crate::pg::rolled_back;
use crate::report::StatementStat;
use crate::sql::{analyze, TableName};

/// One statement of a workload and how much it counts.
///
/// ```
/// use perf_query::WorkloadQuery;
/// let q = WorkloadQuery::new("SELECT * FROM orders WHERE customer_id = $1", 1200.0);
/// assert_eq!(q.weight, 1200.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkloadQuery {
    /// The statement (`$n` placeholders are costed as a generic plan).
    pub sql: String,
    /// Its weight: calls per period, or any relative importance. Costs are multiplied by it.
    pub weight: f64,
}

impl WorkloadQuery {
    /// A statement with a weight.
    pub fn new(sql: impl Into<String>, weight: f64) -> Self {
        WorkloadQuery {
            sql: sql.into(),
            weight,
        }
    }
}

impl From<&StatementStat> for WorkloadQuery {
    /// A `pg_stat_statements` row: its normalized text, weighted by its calls.
    fn from(s: &StatementStat) -> Self {
        WorkloadQuery::new(s.query.clone(), s.calls.max(0) as f64)
    }
}

/// What became of a candidate in [`IndexAdvisor::advise_workload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CandidateOutcome {
    /// In the chosen set.
    Chosen,
    /// Chosen, then replaced by a chosen index it is a prefix of.
    Replaced,
    /// A prefix of a chosen or existing index (which serves the same lookups).
    Redundant,
    /// Would help, but does not fit in the remaining budget.
    OverBudget,
    /// No marginal benefit (at least the threshold) given the indexes chosen before it.
    NoBenefit,
    /// Its table is over the real-build size guard (real what-if mode only).
    SizeGuard,
    /// The server refused it (e.g. a type without a btree operator class), its real build
    /// ran over the statement timeout, or its size cannot be predicted.
    Refused,
}

/// One candidate of a workload run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkloadCandidate {
    /// The index.
    pub candidate: IndexCandidate,
    /// Weighted cost it removes with no other new index (0 when not costed).
    pub standalone_benefit: f64,
    /// Predicted size (perf-query's btree model), when it was needed.
    pub size_bytes: Option<u64>,
    /// What became of it.
    pub outcome: CandidateOutcome,
}

/// One index of the chosen set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkloadIndex {
    /// The index.
    pub candidate: IndexCandidate,
    /// `CREATE INDEX CONCURRENTLY …` to run.
    pub statement: String,
    /// Predicted size in bytes.
    pub size_bytes: u64,
    /// Weighted workload cost it removed when it was picked, given the indexes picked before
    /// it (including the benefit of the prefixes it replaced). The benefits of the set add up
    /// to `cost_before - cost_after`.
    pub marginal_benefit: f64,
    /// Weighted cost it would remove alone.
    pub standalone_benefit: f64,
    /// Chosen indexes it replaced because they are prefixes of it.
    pub replaces: Vec<String>,
}

/// One statement's costs before and after the chosen set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkloadQueryCost {
    /// The statement, literals redacted.
    pub query: String,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Its weight (statements with one fingerprint are merged, weights added).
    pub weight: f64,
    /// Estimated cost of one execution today.
    pub cost_before: f64,
    /// Estimated cost with the chosen set.
    pub cost_after: f64,
}

/// The result of [`IndexAdvisor::advise_workload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkloadAdvice {
    /// How configurations were costed.
    pub method: WhatIfMethod,
    /// The storage budget.
    pub budget_bytes: u64,
    /// Predicted bytes of the chosen set (at most the budget).
    pub used_bytes: u64,
    /// Σ weight × estimated cost, as things are.
    pub cost_before: f64,
    /// Σ weight × estimated cost with the chosen set.
    pub cost_after: f64,
    /// The chosen indexes, in the order they were picked.
    pub indexes: Vec<WorkloadIndex>,
    /// Every candidate and what became of it.
    pub candidates: Vec<WorkloadCandidate>,
    /// Per statement costs.
    pub queries: Vec<WorkloadQueryCost>,
    /// Statements left out (not one parseable statement, or EXPLAIN failed), with the reason.
    pub skipped_queries: Vec<(String, String)>,
    /// What-if cache hits and misses of this run.
    pub cache: WhatIfCacheStats,
}

impl WorkloadAdvice {
    /// `(cost_before - cost_after) / cost_before`, 0 for an empty workload.
    pub fn improvement(&self) -> f64 {
        if self.cost_before > 0.0 {
            (self.cost_before - self.cost_after) / self.cost_before
        } else {
            0.0
        }
    }
}

/// A statement being costed.
#[derive(Debug)]
struct Stmt {
    sql: String,
    redacted: String,
    fp: Fingerprint,
    generic: Option<usize>,
    weight: f64,
    /// Indexes into the run's table list.
    tables: Vec<usize>,
}

/// A candidate being considered.
#[derive(Debug)]
struct Cand {
    index: IndexCandidate,
    table: usize,
    standalone: f64,
    size: Option<Option<u64>>,
    outcome: Option<CandidateOutcome>,
}

/// The best candidate of a round.
struct Pick {
    /// Weighted benefit per net byte.
    score: f64,
    cand: usize,
    /// Chosen indexes it replaces (prefixes of it).
    replaced: Vec<usize>,
    benefit: f64,
    /// New costs of the statements on its table.
    new: Vec<(usize, f64)>,
}

/// The state of one run inside its transaction.
struct Run<'a> {
    advisor: &'a IndexAdvisor,
    tx: &'a Transaction<'a>,
    method: WhatIfMethod,
    hypo: String,
    tables: Vec<TableInfo>,
    stmts: Vec<Stmt>,
    cands: Vec<Cand>,
}

impl IndexAdvisor {
    /// Chooses a set of indexes for a weighted workload under `budget_bytes` of predicted
    /// index size, minimizing Σ weight × estimated cost.
    ///
    /// Candidates come from every statement. Each round costs every remaining candidate
    /// together with the indexes already chosen (what-if: HypoPG, else real builds in the
    /// rolled-back transaction, cached per statement and relevant index set) and picks the
    /// best weighted benefit per byte; so an index that only helps what a chosen one already
    /// serves loses its benefit, and one that helps more next to a chosen one gains. A
    /// candidate that is a prefix of a chosen or existing index is redundant; a chosen index
    /// that becomes a prefix of a new pick is replaced by it (its bytes return to the
    /// budget). A pick must cut the workload cost by at least
    /// [`workload_min_benefit`](Self::workload_min_benefit) of its initial total.
    ///
    /// Statements that are not one parseable statement, or that the server cannot explain,
    /// are skipped and listed. Nothing is changed outside the rolled-back transaction.
    ///
    /// ```no_run
    /// # async fn demo(pool: deadpool_postgres::Pool) -> perf_query::Result<()> {
    /// use perf_query::{IndexAdvisor, TopBy, WorkloadQuery};
    /// let top = perf_query::top_statements(&pool, TopBy::TotalTime, 50).await?;
    /// let workload: Vec<WorkloadQuery> = top.iter().map(WorkloadQuery::from).collect();
    /// let advisor = IndexAdvisor::new(pool);
    /// let advice = advisor.advise_workload(&workload, 512 << 20).await?;
    /// for i in &advice.indexes {
    ///     println!("{}  -- saves {:.0}, {} bytes", i.statement, i.marginal_benefit, i.size_bytes);
    /// }
    /// println!("workload cost {:.0} -> {:.0}, what-if cache hit rate {:.0}%",
    ///          advice.cost_before, advice.cost_after, advice.cache.hit_rate() * 100.0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`QueryError::ExtensionMissing`] in HypoPG mode without HypoPG; driver and pool
    /// errors. Problems of single statements or candidates are reported in the advice.
    pub async fn advise_workload(
        &self,
        workload: &[WorkloadQuery],
        budget_bytes: u64,
    ) -> Result<WorkloadAdvice> {
        let start = self.cache_stats();
        let timeout_ms = self.timeout_ms();
        let mut advice = rolled_back(&self.pool, timeout_ms, async |tx| {
            tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
                .await
                .map_err(|e| QueryError::pg("SET LOCAL statement_timeout", timeout_ms, e))?;
            let (method, hypo) = self.method(tx).await?;
            let mut run = Run {
                advisor: self,
                tx,
                method,
                hypo,
                tables: Vec::new(),
                stmts: Vec::new(),
                cands: Vec::new(),
            };
            let result = run.advise(workload, budget_bytes).await;
            if method == WhatIfMethod::HypoPg {
                let _ = hypopg_reset(tx, &run.hypo, timeout_ms).await;
            }
            result
        })
        .await?;
        let end = self.cache_stats();
        advice.cache = WhatIfCacheStats {
            hits: end.hits.saturating_sub(start.hits),
            misses: end.misses.saturating_sub(start.misses),
        };
        Ok(advice)
    }
}

impl Run<'_> {
    async fn advise(&mut self, workload: &[WorkloadQuery], budget: u64) -> Result<WorkloadAdvice> {
        let mut skipped = Vec::new();
        self.load(workload, &mut skipped).await?;
        // Today's costs; a statement the server cannot explain is left out.
        let mut current = Vec::with_capacity(self.stmts.len());
        let mut i = 0;
        while i < self.stmts.len() {
            match self.costs(&[i], &[]).await {
                Ok(c) => {
                    current.push(c[0]);
                    i += 1;
                }
                Err(QueryError::Postgres { .. } | QueryError::Timeout { .. }) => {
                    let s = self.stmts.remove(i);
                    skipped.push((s.redacted, "EXPLAIN failed".to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        let before: Vec<f64> = current.clone();
        let total_before: f64 = self.weighted(&before);
        let min_benefit = total_before * self.advisor.workload_min_benefit;

        // Each candidate alone: what a one-query-at-a-time advisor would see.
        for c in 0..self.cands.len() {
            if self.method == WhatIfMethod::RealIndexRolledBack
                && self.tables[self.cands[c].table].pages.saturating_mul(8192)
                    > self.advisor.max_real_build_bytes
            {
                self.cands[c].outcome = Some(CandidateOutcome::SizeGuard);
                continue;
            }
            match self.benefit(&[c], &current).await {
                Ok((b, _)) => self.cands[c].standalone = b,
                // Refused by the server, or a real build over the statement timeout.
                Err(QueryError::Postgres { .. } | QueryError::Timeout { .. }) => {
                    self.cands[c].outcome = Some(CandidateOutcome::Refused)
                }
                Err(e) => return Err(e),
            }
        }

        let mut chosen: Vec<usize> = Vec::new();
        let mut picks: Vec<WorkloadIndex> = Vec::new();
        let mut used: u64 = 0;
        loop {
            let mut best: Option<Pick> = None;
            for c in 0..self.cands.len() {
                if self.cands[c].outcome.is_some() {
                    continue;
                }
                if self.redundant(c, &chosen) {
                    self.cands[c].outcome = Some(CandidateOutcome::Redundant);
                    continue;
                }
                let replaced: Vec<usize> = chosen
                    .iter()
                    .copied()
                    .filter(|&k| self.is_prefix(k, c))
                    .collect();
                let mut config: Vec<usize> = chosen
                    .iter()
                    .copied()
                    .filter(|k| !replaced.contains(k))
                    .collect();
                config.push(c);
                let (benefit, new) = self.benefit(&config, &current).await?;
                if benefit < min_benefit || benefit <= 0.0 {
                    continue;
                }
                let Some(size) = self.size(c).await? else {
                    self.cands[c].outcome = Some(CandidateOutcome::Refused);
                    continue;
                };
                let freed: u64 = replaced.iter().filter_map(|&k| self.known_size(k)).sum();
                let net = size.saturating_sub(freed);
                if used.saturating_add(net) > budget {
                    continue;
                }
                let score = benefit / net.max(1) as f64;
                if best.as_ref().is_none_or(|b| score > b.score) {
                    best = Some(Pick {
                        score,
                        cand: c,
                        replaced,
                        benefit,
                        new,
                    });
                }
            }
            let Some(Pick {
                cand: c,
                replaced,
                benefit,
                new,
                ..
            }) = best
            else {
                break;
            };
            for (s, cost) in new {
                current[s] = cost;
            }
            let mut marginal = benefit;
            let mut replaces = Vec::new();
            for k in &replaced {
                self.cands[*k].outcome = Some(CandidateOutcome::Replaced);
                used = used.saturating_sub(self.known_size(*k).unwrap_or(0));
                if let Some(p) = picks
                    .iter()
                    .position(|p| p.candidate == self.cands[*k].index)
                {
                    let old = picks.remove(p);
                    marginal += old.marginal_benefit;
                    replaces.push(old.statement);
                }
            }
            chosen.retain(|k| !replaced.contains(k));
            chosen.push(c);
            let size = self.known_size(c).unwrap_or(0);
            used = used.saturating_add(size);
            self.cands[c].outcome = Some(CandidateOutcome::Chosen);
            picks.push(WorkloadIndex {
                statement: self.cands[c].index.create_statement(true),
                candidate: self.cands[c].index.clone(),
                size_bytes: size,
                marginal_benefit: marginal,
                standalone_benefit: self.cands[c].standalone,
                replaces,
            });
        }

        // What is left: would help but did not fit, or did not help enough.
        for c in 0..self.cands.len() {
            if self.cands[c].outcome.is_some() {
                continue;
            }
            let mut config = chosen.clone();
            config.push(c);
            let (benefit, _) = self.benefit(&config, &current).await?;
            self.cands[c].outcome = Some(if benefit >= min_benefit && benefit > 0.0 {
                CandidateOutcome::OverBudget
            } else {
                CandidateOutcome::NoBenefit
            });
        }

        let total_after = self.weighted(&current);
        Ok(WorkloadAdvice {
            method: self.method,
            budget_bytes: budget,
            used_bytes: used,
            cost_before: total_before,
            cost_after: total_after,
            indexes: picks,
            candidates: self
                .cands
                .iter()
                .map(|c| WorkloadCandidate {
                    candidate: c.index.clone(),
                    standalone_benefit: c.standalone,
                    size_bytes: c.size.flatten(),
                    outcome: c.outcome.unwrap_or(CandidateOutcome::NoBenefit),
                })
                .collect(),
            queries: self
                .stmts
                .iter()
                .zip(before.iter().zip(&current))
                .map(|(s, (b, a))| WorkloadQueryCost {
                    query: s.redacted.clone(),
                    fingerprint: s.fp,
                    weight: s.weight,
                    cost_before: *b,
                    cost_after: *a,
                })
                .collect(),
            skipped_queries: skipped,
            cache: WhatIfCacheStats::default(),
        })
    }

    /// Parses the workload (merging statements of one fingerprint), reads the tables, and
    /// collects the candidates of every statement (one per definition).
    async fn load(
        &mut self,
        workload: &[WorkloadQuery],
        skipped: &mut Vec<(String, String)>,
    ) -> Result<()> {
        let mut by_fp: HashMap<Fingerprint, usize> = HashMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for q in workload {
            let parsed = text_shape(&q.sql).and_then(|shape| {
                if shape.statements != 1 {
                    return Err(QueryError::MultipleStatements {
                        count: shape.statements,
                    });
                }
                Ok((shape, normalize(&q.sql)?, analyze(&q.sql)?))
            });
            let (shape, normalized, analysis) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    skipped.push((crate::fingerprint::redact_or_marker(&q.sql), e.to_string()));
                    continue;
                }
            };
            if let Some(&i) = by_fp.get(&normalized.fingerprint) {
                self.stmts[i].weight += q.weight;
                continue;
            }
            let mut tables = Vec::new();
            for name in analysis.table_names() {
                if let Some(t) = self.table(&name).await? {
                    tables.push(t);
                }
            }
            let infos: Vec<TableInfo> = tables.iter().map(|&t| self.tables[t].clone()).collect();
            for cand in generate_candidates(&analysis, &infos, &self.advisor.candidates) {
                let key = cand.key();
                if seen.contains_key(&key) {
                    continue;
                }
                let Some(table) = self.tables.iter().position(|t| t.matches(&cand.table)) else {
                    continue;
                };
                seen.insert(key, self.cands.len());
                self.cands.push(Cand {
                    index: cand,
                    table,
                    standalone: 0.0,
                    size: None,
                    outcome: None,
                });
            }
            by_fp.insert(normalized.fingerprint, self.stmts.len());
            self.stmts.push(Stmt {
                sql: q.sql.clone(),
                redacted: normalized.text,
                fp: normalized.fingerprint,
                generic: (shape.max_parameter > 0).then_some(shape.max_parameter),
                weight: q.weight,
                tables,
            });
        }
        Ok(())
    }

    /// The run's index of table `name`, read from the catalog the first time.
    async fn table(&mut self, name: &TableName) -> Result<Option<usize>> {
        if let Some(i) = self.tables.iter().position(|t| t.matches(name)) {
            return Ok(Some(i));
        }
        Ok(match table_info(&**self.tx, name).await? {
            Some(info) => {
                self.tables.push(info);
                Some(self.tables.len() - 1)
            }
            None => None,
        })
    }

    fn weighted(&self, costs: &[f64]) -> f64 {
        self.stmts
            .iter()
            .zip(costs)
            .map(|(s, c)| s.weight * c)
            .sum()
    }

    /// True when candidate `a`'s keys are a prefix of candidate `b`'s (same table).
    fn is_prefix(&self, a: usize, b: usize) -> bool {
        let (a, b) = (&self.cands[a], &self.cands[b]);
        a.table == b.table && a.index.is_prefix_of(&names(&b.index))
    }

    /// A prefix of a chosen index or of an existing one.
    fn redundant(&self, c: usize, chosen: &[usize]) -> bool {
        chosen.iter().any(|&k| self.is_prefix(c, k))
            || self.tables[self.cands[c].table].indexes.iter().any(|i| {
                !i.partial && i.method == "btree" && self.cands[c].index.is_prefix_of(&i.columns)
            })
    }

    fn known_size(&self, c: usize) -> Option<u64> {
        self.cands[c].size.flatten()
    }

    /// Predicted size of candidate `c` (computed once).
    async fn size(&mut self, c: usize) -> Result<Option<u64>> {
        if let Some(s) = self.cands[c].size {
            return Ok(s);
        }
        let table = &self.tables[self.cands[c].table];
        let s = self
            .advisor
            .predict_in(&**self.tx, table, &self.cands[c].index)
            .await?;
        self.cands[c].size = Some(s);
        Ok(s)
    }

    /// Weighted benefit of index set `config` over `current`, and the new costs of the
    /// statements on the tables `config`'s last index is on.
    async fn benefit(
        &mut self,
        config: &[usize],
        current: &[f64],
    ) -> Result<(f64, Vec<(usize, f64)>)> {
        let Some(&last) = config.last() else {
            return Ok((0.0, Vec::new()));
        };
        let table = self.cands[last].table;
        let affected: Vec<usize> = (0..self.stmts.len())
            .filter(|&s| self.stmts[s].tables.contains(&table))
            .collect();
        let costs = self.costs(&affected, config).await?;
        let mut benefit = 0.0;
        let mut new = Vec::with_capacity(affected.len());
        for (&s, cost) in affected.iter().zip(costs) {
            benefit += self.stmts[s].weight * (current[s] - cost);
            new.push((s, cost));
        }
        Ok((benefit, new))
    }

    /// Estimated costs of statements `stmts` with the indexes `config` present: from the
    /// cache (keyed by fingerprint and the indexes of `config` on the statement's tables),
    /// else by materializing what the missing statements need and explaining them.
    async fn costs(&mut self, stmts: &[usize], config: &[usize]) -> Result<Vec<f64>> {
        let mut out = vec![0.0; stmts.len()];
        let mut missing: Vec<(usize, (Fingerprint, Vec<String>))> = Vec::new();
        for (slot, &s) in stmts.iter().enumerate() {
            let stmt = &self.stmts[s];
            let mut keys: Vec<String> = config
                .iter()
                .filter(|&&c| stmt.tables.contains(&self.cands[c].table))
                .map(|&c| self.cands[c].index.key())
                .collect();
            keys.sort();
            let key = (stmt.fp, keys);
            match self.advisor.cached(&key) {
                Some(c) => out[slot] = c,
                None => missing.push((slot, key)),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let needed: Vec<usize> = config
            .iter()
            .copied()
            .filter(|&c| {
                missing.iter().any(|(slot, _)| {
                    self.stmts[stmts[*slot]]
                        .tables
                        .contains(&self.cands[c].table)
                })
            })
            .collect();
        let t = self.advisor.timeout_ms();
        let tx = self.tx;
        tx.batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
            .await
            .map_err(|e| QueryError::pg("SAVEPOINT", t, e))?;
        let attempt = async {
            for &c in &needed {
                let stmt = self.cands[c].index.create_statement(false);
                match self.method {
                    WhatIfMethod::HypoPg => {
                        // The definition goes in as a bound text parameter.
                        tx.query_one(
                            &format!("SELECT 1 FROM {}hypopg_create_index($1)", self.hypo),
                            &[&stmt],
                        )
                        .await
                        .map_err(|e| QueryError::pg("hypopg_create_index", t, e))?;
                    }
                    WhatIfMethod::RealIndexRolledBack => {
                        tx.batch_execute(&stmt)
                            .await
                            .map_err(|e| QueryError::pg("CREATE INDEX", t, e))?;
                    }
                }
            }
            let mut costs = Vec::with_capacity(missing.len());
            for (slot, _) in &missing {
                let s = &self.stmts[stmts[*slot]];
                costs.push(self.advisor.plan_cost(tx, &s.sql, s.generic).await?);
            }
            Ok::<_, QueryError>(costs)
        }
        .await;
        tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
            .await
            .map_err(|e| QueryError::pg("ROLLBACK TO SAVEPOINT", t, e))?;
        if self.method == WhatIfMethod::HypoPg {
            // Hypothetical indexes live in backend memory, outside transactions.
            hypopg_reset(tx, &self.hypo, t).await?;
        }
        for ((slot, key), cost) in missing.into_iter().zip(attempt?) {
            self.advisor.store(key, cost);
            out[slot] = cost;
        }
        Ok(out)
    }
}

fn names(c: &IndexCandidate) -> Vec<String> {
    c.columns.iter().map(|c| c.name.clone()).collect()
}
