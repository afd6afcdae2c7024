//! Issue detection on a typed plan: selective sequential scans of large tables, row
//! misestimates, sorts and hashes spilling to disk, nested loops over many outer rows, index
//! scans that discard most rows, and slow queries — each with a severity, the node and a
//! concrete recommendation.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::node::{NodeType, Plan, PlanNode};
use crate::sql::{condition_filters, quote_ident, FilterOp};

/// How bad an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Worth fixing.
    Medium,
    /// Fix first.
    High,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        })
    }
}

/// What kind of problem an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IssueKind {
    /// A sequential scan of a large table that keeps few of the rows it reads.
    SeqScanSelectiveFilter,
    /// Actual rows differ from the estimate by the misestimate factor or more.
    RowMisestimate,
    /// A sort that spilled to disk.
    SortSpill,
    /// A hash join or hash aggregate that spilled to disk (more than one batch).
    HashSpill,
    /// A nested loop that runs its inner side for many outer rows.
    NestedLoopManyRows,
    /// An index scan whose filter discards most of the rows the index returned.
    IndexScanDiscardsRows,
    /// The query ran longer than the slow threshold.
    SlowQuery,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Issue {
    /// The kind.
    pub kind: IssueKind,
    /// The severity.
    pub severity: Severity,
    /// Child indexes from the root to the node (empty for the root or the whole query).
    pub node_path: Vec<usize>,
    /// Label of the node, e.g. `Seq Scan on orders`.
    pub node: String,
    /// The relation concerned, when there is one.
    pub relation: Option<String>,
    /// What was found, with the figures (no literals).
    pub message: String,
    /// What to do about it.
    pub recommendation: String,
}

/// Thresholds of the detectors. `Default` holds values that suit an OLTP service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DetectorConfig {
    /// A table with at least this many rows is large.
    pub large_table_rows: f64,
    /// A scan keeping at most this fraction of the rows it reads is selective.
    pub selective_fraction: f64,
    /// Actual/estimated (or estimated/actual) ratio that counts as a misestimate.
    pub misestimate_factor: f64,
    /// Misestimates where both figures are below this many rows are ignored (noise).
    pub misestimate_min_rows: f64,
    /// A nested loop whose outer side yields at least this many rows is reported.
    pub nested_loop_outer_rows: f64,
    /// An index scan removing at least this many times the rows it returns is reported…
    pub index_discard_ratio: f64,
    /// …when it removes at least this many rows in total.
    pub index_discard_min_rows: f64,
    /// Queries slower than this (execution time, ms) are slow.
    pub slow_query_ms: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            large_table_rows: 10_000.0,
            selective_fraction: 0.05,
            misestimate_factor: 10.0,
            misestimate_min_rows: 100.0,
            nested_loop_outer_rows: 1_000.0,
            index_discard_ratio: 10.0,
            index_discard_min_rows: 1_000.0,
            slow_query_ms: 1_000.0,
        }
    }
}

impl DetectorConfig {
    /// Defaults with the slow threshold of perf-core's `[query]` section.
    ///
    /// ```
    /// let cfg = perf_core::config::QueryConfig::default();
    /// let d = perf_query::DetectorConfig::from_query_config(&cfg);
    /// assert_eq!(d.slow_query_ms, 1000.0);
    /// ```
    pub fn from_query_config(cfg: &perf_core::config::QueryConfig) -> Self {
        DetectorConfig {
            slow_query_ms: cfg.slow_query_threshold_ms as f64,
            ..DetectorConfig::default()
        }
    }
}

/// Runs every detector on `plan`; issues come most severe first.
///
/// ```
/// use perf_query::{detect_issues, DetectorConfig, IssueKind, Plan};
/// let json = r#"[{"Plan": {"Node Type": "Sort", "Total Cost": 1.0, "Plan Rows": 10,
///   "Actual Rows": 500000, "Actual Loops": 1, "Actual Total Time": 900.0,
///   "Sort Method": "external merge", "Sort Space Used": 20480, "Sort Space Type": "Disk",
///   "Sort Key": ["created_at"]}, "Execution Time": 950.0}]"#;
/// let plan = Plan::from_json_str(json).unwrap();
/// let issues = detect_issues(&plan, &DetectorConfig::default());
/// assert!(issues.iter().any(|i| i.kind == IssueKind::SortSpill));
/// assert!(issues.iter().any(|i| i.kind == IssueKind::RowMisestimate));
/// ```
pub fn detect_issues(plan: &Plan, cfg: &DetectorConfig) -> Vec<Issue> {
    let mut issues = Vec::new();
    for (path, node) in plan.nodes() {
        seq_scan(&path, node, cfg, &mut issues);
        misestimate(&path, node, cfg, &mut issues);
        spills(&path, node, &mut issues);
        nested_loop(&path, node, cfg, &mut issues);
        index_discards(&path, node, cfg, &mut issues);
    }
    if let Some(ms) = plan.execution_ms {
        if ms >= cfg.slow_query_ms {
            let hottest = hottest_node(plan);
            let severity = if ms >= cfg.slow_query_ms * 10.0 {
                Severity::High
            } else {
                Severity::Medium
            };
            issues.push(Issue {
                kind: IssueKind::SlowQuery,
                severity,
                node_path: Vec::new(),
                node: plan.root.label(),
                relation: None,
                message: format!(
                    "execution took {ms:.1} ms, over the {:.0} ms slow threshold{}",
                    cfg.slow_query_ms,
                    hottest
                        .map(|(label, own)| format!("; most time in {label} ({own:.1} ms)"))
                        .unwrap_or_default()
                ),
                recommendation: if issues.is_empty() {
                    "no single plan problem explains the time: check the rows returned, lock waits and I/O (EXPLAIN (ANALYZE, BUFFERS)), or cache the result".to_string()
                } else {
                    "fix the issues reported for this plan, most severe first".to_string()
                },
            });
        }
    }
    issues.sort_by_key(|i| std::cmp::Reverse(i.severity));
    issues
}

/// The node with the largest exclusive time (its time minus its children's).
fn hottest_node(plan: &Plan) -> Option<(String, f64)> {
    plan.nodes()
        .filter_map(|(_, n)| {
            let own = n.actual?.total_time_ms()
                - n.children
                    .iter()
                    .filter_map(|c| c.actual.map(|a| a.total_time_ms()))
                    .sum::<f64>();
            Some((n.label(), own.max(0.0)))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Index columns suggested by a condition: equality columns first, then ranges.
fn suggested_columns(node: &PlanNode, condition: &str) -> Vec<String> {
    let Some(rel) = &node.relation else {
        return Vec::new();
    };
    let filters = condition_filters(rel, node.alias.as_deref(), condition);
    let mut cols: Vec<(u8, String)> = filters
        .into_iter()
        .filter(|f| !f.in_disjunction)
        .filter_map(|f| {
            let rank = match f.op {
                FilterOp::Equality | FilterOp::IsNull => 0,
                FilterOp::In => 1,
                FilterOp::Range | FilterOp::LikePrefix => 2,
                _ => return None,
            };
            Some((rank, f.column.column))
        })
        .collect();
    cols.sort();
    let mut out: Vec<String> = Vec::new();
    for (_, c) in cols {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn index_hint(node: &PlanNode, columns: &[String]) -> String {
    let rel = node.relation.as_deref().unwrap_or("the table");
    if columns.is_empty() {
        return format!("rewrite the filter so an index on {rel} can serve it (no plain column condition found)");
    }
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "CREATE INDEX CONCURRENTLY ON {} ({}); validate with the index advisor",
        quote_ident(rel),
        cols.join(", ")
    )
}

fn seq_scan(path: &[usize], node: &PlanNode, cfg: &DetectorConfig, out: &mut Vec<Issue>) {
    if node.node_type != NodeType::SeqScan {
        return;
    }
    let Some(filter) = &node.filter else { return };
    // Rows read and rows kept: measured when analyzed, else from estimates and the table size.
    let (read, kept) = match node.actual {
        Some(a) => {
            let removed = node.rows_removed_by_filter.unwrap_or(0.0) * a.loops.max(1.0);
            (a.total_rows() + removed, a.total_rows())
        }
        None => match node.relation_rows {
            Some(rows) => (rows, node.plan_rows),
            None => return,
        },
    };
    let table_rows = node.relation_rows.unwrap_or(read).max(read);
    if table_rows < cfg.large_table_rows || read <= 0.0 {
        return;
    }
    let fraction = kept / read;
    if fraction > cfg.selective_fraction {
        return;
    }
    let columns = suggested_columns(node, filter);
    let severity = if table_rows >= cfg.large_table_rows * 100.0 || fraction < 0.001 {
        Severity::High
    } else {
        Severity::Medium
    };
    out.push(Issue {
        kind: IssueKind::SeqScanSelectiveFilter,
        severity,
        node_path: path.to_vec(),
        node: node.label(),
        relation: node.relation.clone(),
        message: format!(
            "sequential scan reads {read:.0} rows of a {table_rows:.0}-row table to keep {kept:.0} ({:.2} %) with filter {filter}",
            fraction * 100.0
        ),
        recommendation: index_hint(node, &columns),
    });
}

fn misestimate(path: &[usize], node: &PlanNode, cfg: &DetectorConfig, out: &mut Vec<Issue>) {
    let Some(a) = node.actual else { return };
    if a.loops <= 0.0 {
        return; // never executed
    }
    let (est, act) = (node.plan_rows, a.rows);
    if est.max(act) < cfg.misestimate_min_rows {
        return;
    }
    let factor = est.max(act) / est.min(act).max(1.0);
    if factor < cfg.misestimate_factor {
        return;
    }
    let direction = if act > est { "under" } else { "over" };
    let severity = if factor >= cfg.misestimate_factor * 100.0 {
        Severity::High
    } else if factor >= cfg.misestimate_factor * 10.0 {
        Severity::Medium
    } else {
        Severity::Low
    };
    let recommendation = match &node.relation {
        Some(rel) => format!(
            "run ANALYZE {}; if the filter combines correlated columns, CREATE STATISTICS on them, or raise the column's statistics target (ALTER TABLE … ALTER COLUMN … SET STATISTICS 1000)",
            quote_ident(rel)
        ),
        None => "refresh statistics (ANALYZE) on the tables below this node; for correlated join or filter columns, CREATE STATISTICS (dependencies, ndistinct)".to_string(),
    };
    out.push(Issue {
        kind: IssueKind::RowMisestimate,
        severity,
        node_path: path.to_vec(),
        node: node.label(),
        relation: node.relation.clone(),
        message: format!(
            "planner {direction}estimated rows by {factor:.0}x: estimated {est:.0}, actual {act:.0} per loop"
        ),
        recommendation,
    });
}

fn spills(path: &[usize], node: &PlanNode, out: &mut Vec<Issue>) {
    let sort_disk = node.sort_space_type.as_deref() == Some("Disk")
        || node
            .sort_method
            .as_deref()
            .is_some_and(|m| m.starts_with("external"));
    if sort_disk && matches!(node.node_type, NodeType::Sort | NodeType::IncrementalSort) {
        let kb = node.sort_space_used_kb.unwrap_or(0);
        out.push(Issue {
            kind: IssueKind::SortSpill,
            severity: if kb >= 100 * 1024 { Severity::High } else { Severity::Medium },
            node_path: path.to_vec(),
            node: node.label(),
            relation: None,
            message: format!(
                "sort spilled {kb} kB to disk ({})",
                node.sort_method.as_deref().unwrap_or("external sort")
            ),
            recommendation: format!(
                "raise work_mem for this query to at least {} (SET LOCAL work_mem), or add an index matching the sort key ({}) so no sort is needed",
                work_mem_hint(kb),
                node.sort_key.join(", ")
            ),
        });
    }
    let hash_batches = node.hash_batches.unwrap_or(1);
    let agg_spill = node.disk_usage_kb.unwrap_or(0) > 0 || node.hash_agg_batches.unwrap_or(1) > 1;
    if (node.node_type == NodeType::Hash && hash_batches > 1)
        || (node.node_type == NodeType::Aggregate && agg_spill)
    {
        let kb = node
            .disk_usage_kb
            .or(node.peak_memory_kb)
            .unwrap_or(0)
            .saturating_mul(hash_batches.max(1));
        out.push(Issue {
            kind: IssueKind::HashSpill,
            severity: if hash_batches >= 16 || kb >= 100 * 1024 {
                Severity::High
            } else {
                Severity::Medium
            },
            node_path: path.to_vec(),
            node: node.label(),
            relation: None,
            message: format!(
                "hash spilled to disk: {} batches (planned {}), {} kB",
                hash_batches.max(node.hash_agg_batches.unwrap_or(1)),
                node.original_hash_batches.unwrap_or(1),
                node.disk_usage_kb.or(node.peak_memory_kb).unwrap_or(0)
            ),
            recommendation: format!(
                "raise work_mem (or hash_mem_multiplier) for this query to about {} so the hash fits in memory, or reduce the rows hashed with a more selective filter",
                work_mem_hint(kb)
            ),
        });
    }
}

fn work_mem_hint(kb: u64) -> String {
    // Sorting in memory takes more than the on-disk size; double it and round to a power of two.
    let mb = (kb.saturating_mul(2) / 1024).max(4).next_power_of_two();
    format!("{mb}MB")
}

fn nested_loop(path: &[usize], node: &PlanNode, cfg: &DetectorConfig, out: &mut Vec<Issue>) {
    if node.node_type != NodeType::NestedLoop || node.children.len() < 2 {
        return;
    }
    let outer = &node.children[0];
    let inner = &node.children[1];
    let outer_rows = match outer.actual {
        Some(a) => a.total_rows(),
        None => outer.plan_rows,
    };
    if outer_rows < cfg.nested_loop_outer_rows {
        return;
    }
    // The inner side's scan (below a Materialize/Memoize, if any).
    let mut inner_scan = inner;
    while matches!(
        inner_scan.node_type,
        NodeType::Materialize | NodeType::Memoize
    ) && !inner_scan.children.is_empty()
    {
        inner_scan = &inner_scan.children[0];
    }
    let indexed =
        inner_scan.node_type.is_index_scan() || inner_scan.node_type == NodeType::BitmapIndexScan;
    if indexed && outer_rows < cfg.nested_loop_outer_rows * 100.0 {
        // An index lookup per outer row is the plan working as intended at this size.
        return;
    }
    let severity = if !indexed {
        Severity::High
    } else {
        Severity::Medium
    };
    let recommendation = match (&inner_scan.relation, indexed) {
        (Some(rel), false) => {
            let cond = node
                .join_filter
                .as_deref()
                .or(inner_scan.filter.as_deref())
                .unwrap_or("");
            let cols = suggested_columns(inner_scan, cond);
            if cols.is_empty() {
                format!("index the join key of {} so each outer row is a lookup, or let the planner choose a hash join (check the row estimates of the outer side)", quote_ident(rel))
            } else {
                format!("{} so each outer row is an index lookup", index_hint(inner_scan, &cols))
            }
        }
        _ => "the outer side returns many rows: a hash or merge join is usually cheaper; check its row estimate (ANALYZE) and whether a filter can run before the join".to_string(),
    };
    out.push(Issue {
        kind: IssueKind::NestedLoopManyRows,
        severity,
        node_path: path.to_vec(),
        node: node.label(),
        relation: inner_scan.relation.clone(),
        message: format!(
            "nested loop runs its inner side ({}) for {outer_rows:.0} outer rows",
            inner_scan.label()
        ),
        recommendation,
    });
}

fn index_discards(path: &[usize], node: &PlanNode, cfg: &DetectorConfig, out: &mut Vec<Issue>) {
    if !node.node_type.is_index_scan() {
        return;
    }
    let (Some(a), Some(removed)) = (node.actual, node.rows_removed_by_filter) else {
        return;
    };
    let removed_total = removed * a.loops.max(1.0);
    let kept = a.total_rows();
    if removed_total < cfg.index_discard_min_rows
        || removed_total < cfg.index_discard_ratio * kept.max(1.0)
    {
        return;
    }
    let mut columns: Vec<String> = node
        .index_cond
        .as_deref()
        .map(|c| suggested_columns(node, c))
        .unwrap_or_default();
    if let Some(filter) = &node.filter {
        for c in suggested_columns(node, filter) {
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
    }
    out.push(Issue {
        kind: IssueKind::IndexScanDiscardsRows,
        severity: if removed_total >= cfg.index_discard_min_rows * 100.0 {
            Severity::High
        } else {
            Severity::Medium
        },
        node_path: path.to_vec(),
        node: node.label(),
        relation: node.relation.clone(),
        message: format!(
            "index scan fetched {:.0} rows and its filter {} discarded {removed_total:.0} of them",
            kept + removed_total,
            node.filter.as_deref().unwrap_or("")
        ),
        recommendation: format!(
            "extend the index with the filter columns (equality first): {}",
            index_hint(node, &columns)
        ),
    });
}
