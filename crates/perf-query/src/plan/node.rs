//! Typed plan nodes parsed from `EXPLAIN (FORMAT JSON)` output: node types, estimated vs actual
//! rows, loops, buffers, timings, conditions (redacted by default) and spill information.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{QueryError, Result};
use crate::fingerprint::redact_or_marker;

/// A plan node type, named like PostgreSQL names it in `"Node Type"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeType {
    /// `Seq Scan`.
    SeqScan,
    /// `Index Scan`.
    IndexScan,
    /// `Index Only Scan`.
    IndexOnlyScan,
    /// `Bitmap Heap Scan`.
    BitmapHeapScan,
    /// `Bitmap Index Scan`.
    BitmapIndexScan,
    /// `BitmapAnd`.
    BitmapAnd,
    /// `BitmapOr`.
    BitmapOr,
    /// `Tid Scan`.
    TidScan,
    /// `Tid Range Scan`.
    TidRangeScan,
    /// `Sample Scan`.
    SampleScan,
    /// `Subquery Scan`.
    SubqueryScan,
    /// `Function Scan`.
    FunctionScan,
    /// `Table Function Scan`.
    TableFunctionScan,
    /// `Values Scan`.
    ValuesScan,
    /// `CTE Scan`.
    CteScan,
    /// `Named Tuplestore Scan`.
    NamedTuplestoreScan,
    /// `WorkTable Scan`.
    WorkTableScan,
    /// `Foreign Scan`.
    ForeignScan,
    /// `Custom Scan`.
    CustomScan,
    /// `Nested Loop`.
    NestedLoop,
    /// `Merge Join`.
    MergeJoin,
    /// `Hash Join`.
    HashJoin,
    /// `Hash`.
    Hash,
    /// `Sort`.
    Sort,
    /// `Incremental Sort`.
    IncrementalSort,
    /// `Aggregate` (plain, sorted, hashed or mixed: see [`PlanNode::strategy`]).
    Aggregate,
    /// `Group`.
    Group,
    /// `WindowAgg`.
    WindowAgg,
    /// `Unique`.
    Unique,
    /// `SetOp`.
    SetOp,
    /// `Limit`.
    Limit,
    /// `LockRows`.
    LockRows,
    /// `Materialize`.
    Materialize,
    /// `Memoize`.
    Memoize,
    /// `Gather`.
    Gather,
    /// `Gather Merge`.
    GatherMerge,
    /// `Append`.
    Append,
    /// `Merge Append`.
    MergeAppend,
    /// `Recursive Union`.
    RecursiveUnion,
    /// `Result`.
    Result,
    /// `ProjectSet`.
    ProjectSet,
    /// `ModifyTable` (the operation is in [`PlanNode::operation`]).
    ModifyTable,
    /// A type this version does not know, with PostgreSQL's name.
    Other(String),
}

const NAMES: &[(&str, NodeType)] = &[
    ("Seq Scan", NodeType::SeqScan),
    ("Index Scan", NodeType::IndexScan),
    ("Index Only Scan", NodeType::IndexOnlyScan),
    ("Bitmap Heap Scan", NodeType::BitmapHeapScan),
    ("Bitmap Index Scan", NodeType::BitmapIndexScan),
    ("BitmapAnd", NodeType::BitmapAnd),
    ("BitmapOr", NodeType::BitmapOr),
    ("Tid Scan", NodeType::TidScan),
    ("Tid Range Scan", NodeType::TidRangeScan),
    ("Sample Scan", NodeType::SampleScan),
    ("Subquery Scan", NodeType::SubqueryScan),
    ("Function Scan", NodeType::FunctionScan),
    ("Table Function Scan", NodeType::TableFunctionScan),
    ("Values Scan", NodeType::ValuesScan),
    ("CTE Scan", NodeType::CteScan),
    ("Named Tuplestore Scan", NodeType::NamedTuplestoreScan),
    ("WorkTable Scan", NodeType::WorkTableScan),
    ("Foreign Scan", NodeType::ForeignScan),
    ("Custom Scan", NodeType::CustomScan),
    ("Nested Loop", NodeType::NestedLoop),
    ("Merge Join", NodeType::MergeJoin),
    ("Hash Join", NodeType::HashJoin),
    ("Hash", NodeType::Hash),
    ("Sort", NodeType::Sort),
    ("Incremental Sort", NodeType::IncrementalSort),
    ("Aggregate", NodeType::Aggregate),
    ("Group", NodeType::Group),
    ("WindowAgg", NodeType::WindowAgg),
    ("Unique", NodeType::Unique),
    ("SetOp", NodeType::SetOp),
    ("Limit", NodeType::Limit),
    ("LockRows", NodeType::LockRows),
    ("Materialize", NodeType::Materialize),
    ("Memoize", NodeType::Memoize),
    ("Gather", NodeType::Gather),
    ("Gather Merge", NodeType::GatherMerge),
    ("Append", NodeType::Append),
    ("Merge Append", NodeType::MergeAppend),
    ("Recursive Union", NodeType::RecursiveUnion),
    ("Result", NodeType::Result),
    ("ProjectSet", NodeType::ProjectSet),
    ("ModifyTable", NodeType::ModifyTable),
];

impl NodeType {
    /// Parses PostgreSQL's `"Node Type"` string; unknown names become [`NodeType::Other`].
    ///
    /// ```
    /// use perf_query::NodeType;
    /// assert_eq!(NodeType::from_pg("Seq Scan"), NodeType::SeqScan);
    /// assert_eq!(NodeType::from_pg("Quantum Scan"), NodeType::Other("Quantum Scan".into()));
    /// ```
    pub fn from_pg(name: &str) -> Self {
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| NodeType::Other(name.to_string()))
    }

    /// PostgreSQL's name of the node type.
    ///
    /// ```
    /// assert_eq!(perf_query::NodeType::IndexOnlyScan.as_pg(), "Index Only Scan");
    /// ```
    pub fn as_pg(&self) -> &str {
        match self {
            NodeType::Other(s) => s,
            known => NAMES
                .iter()
                .find(|(_, t)| t == known)
                .map_or("?", |(n, _)| n),
        }
    }

    /// True for scans that read a table through an index.
    pub fn is_index_scan(&self) -> bool {
        matches!(
            self,
            NodeType::IndexScan | NodeType::IndexOnlyScan | NodeType::BitmapHeapScan
        )
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_pg())
    }
}

impl Serialize for NodeType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_pg())
    }
}

impl<'de> Deserialize<'de> for NodeType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(NodeType::from_pg(&s))
    }
}

/// Block counters of `BUFFERS` (8 kB blocks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Buffers {
    /// Shared blocks found in cache.
    pub shared_hit: u64,
    /// Shared blocks read from disk (or the OS cache).
    pub shared_read: u64,
    /// Shared blocks dirtied.
    pub shared_dirtied: u64,
    /// Shared blocks written.
    pub shared_written: u64,
    /// Local (temporary table) blocks hit.
    pub local_hit: u64,
    /// Local blocks read.
    pub local_read: u64,
    /// Temporary-file blocks read (spills).
    pub temp_read: u64,
    /// Temporary-file blocks written (spills).
    pub temp_written: u64,
}

/// Measured figures of an `ANALYZE`d node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Actual {
    /// Milliseconds to the first row, per loop.
    pub startup_ms: f64,
    /// Milliseconds to the last row, per loop.
    pub total_ms: f64,
    /// Rows per loop.
    pub rows: f64,
    /// Loops (executions of the node).
    pub loops: f64,
}

impl Actual {
    /// Rows over all loops.
    pub fn total_rows(&self) -> f64 {
        self.rows * self.loops.max(1.0)
    }
    /// Milliseconds over all loops (inclusive of children).
    pub fn total_time_ms(&self) -> f64 {
        self.total_ms * self.loops.max(1.0)
    }
}

/// One plan node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlanNode {
    /// Node type.
    pub node_type: NodeType,
    /// Aggregate strategy (`Plain`, `Sorted`, `Hashed`, `Mixed`), when an aggregate.
    pub strategy: Option<String>,
    /// `ModifyTable` operation (`Insert`, `Update`, `Delete`, `Merge`).
    pub operation: Option<String>,
    /// Join type (`Inner`, `Left`, `Semi`, …).
    pub join_type: Option<String>,
    /// Relation scanned or modified.
    pub relation: Option<String>,
    /// Its schema (needs `VERBOSE`; filled by the explainer otherwise when it can).
    pub schema: Option<String>,
    /// Alias the relation goes by in the query.
    pub alias: Option<String>,
    /// Index used by an index scan.
    pub index_name: Option<String>,
    /// `Outer`, `Inner`, `InitPlan`, `SubPlan`, … relative to the parent.
    pub parent_relationship: Option<String>,
    /// Estimated startup cost.
    pub startup_cost: f64,
    /// Estimated total cost.
    pub total_cost: f64,
    /// Estimated rows per loop.
    pub plan_rows: f64,
    /// Estimated row width in bytes.
    pub plan_width: u64,
    /// Measured figures, when `ANALYZE` ran.
    pub actual: Option<Actual>,
    /// `Filter` condition (literals redacted unless asked otherwise).
    pub filter: Option<String>,
    /// `Index Cond`.
    pub index_cond: Option<String>,
    /// `Recheck Cond`.
    pub recheck_cond: Option<String>,
    /// `Hash Cond`.
    pub hash_cond: Option<String>,
    /// `Merge Cond`.
    pub merge_cond: Option<String>,
    /// `Join Filter`.
    pub join_filter: Option<String>,
    /// `Rows Removed by Filter` (per loop, as PostgreSQL reports it).
    pub rows_removed_by_filter: Option<f64>,
    /// `Rows Removed by Join Filter` (per loop).
    pub rows_removed_by_join_filter: Option<f64>,
    /// `Rows Removed by Index Recheck` (per loop).
    pub rows_removed_by_index_recheck: Option<f64>,
    /// Sort keys.
    pub sort_key: Vec<String>,
    /// `Sort Method` (`quicksort`, `top-N heapsort`, `external merge`, …).
    pub sort_method: Option<String>,
    /// `Sort Space Used` in kB.
    pub sort_space_used_kb: Option<u64>,
    /// `Sort Space Type` (`Memory` or `Disk`).
    pub sort_space_type: Option<String>,
    /// `Hash Batches`.
    pub hash_batches: Option<u64>,
    /// `Original Hash Batches`.
    pub original_hash_batches: Option<u64>,
    /// `Peak Memory Usage` in kB.
    pub peak_memory_kb: Option<u64>,
    /// `Disk Usage` in kB (hash aggregates that spilled).
    pub disk_usage_kb: Option<u64>,
    /// `HashAgg Batches`.
    pub hash_agg_batches: Option<u64>,
    /// `Workers Launched`.
    pub workers_launched: Option<u64>,
    /// Buffer counters, when `BUFFERS` was asked for.
    pub buffers: Option<Buffers>,
    /// Estimated rows of the scanned relation (`pg_class.reltuples`), filled by the explainer.
    pub relation_rows: Option<f64>,
    /// Child nodes.
    pub children: Vec<PlanNode>,
}

/// A whole plan.
///
/// ```
/// let json = r#"[{"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Alias": "t",
///   "Startup Cost": 0.0, "Total Cost": 35.5, "Plan Rows": 2550, "Plan Width": 4,
///   "Filter": "(a = 42)"}}]"#;
/// let plan = perf_query::Plan::from_json_str(json).unwrap();
/// assert_eq!(plan.root.node_type, perf_query::NodeType::SeqScan);
/// assert_eq!(plan.root.filter.as_deref(), Some("(a = $1)"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// The top node.
    pub root: PlanNode,
    /// `Planning Time` in ms (with `ANALYZE` or `SUMMARY`).
    pub planning_ms: Option<f64>,
    /// `Execution Time` in ms (with `ANALYZE`).
    pub execution_ms: Option<f64>,
}

impl Plan {
    /// Parses `EXPLAIN (FORMAT JSON)` text, redacting literals in conditions.
    ///
    /// # Errors
    ///
    /// [`QueryError::PlanFormat`] when the text is not JSON of the documented shape.
    pub fn from_json_str(text: &str) -> Result<Plan> {
        let json: Json = serde_json::from_str(text).map_err(|e| QueryError::PlanFormat {
            reason: format!("not JSON: {e}"),
        })?;
        Plan::from_json(&json, true)
    }

    /// Parses the JSON value of `EXPLAIN (FORMAT JSON)` (an array of one object, or the object
    /// itself). With `redact`, literals in conditions become `$n` placeholders.
    ///
    /// # Errors
    ///
    /// [`QueryError::PlanFormat`] when a required field is missing.
    pub fn from_json(json: &Json, redact: bool) -> Result<Plan> {
        let top = match json {
            Json::Array(items) => items.first().ok_or_else(|| QueryError::PlanFormat {
                reason: "empty array".into(),
            })?,
            other => other,
        };
        let plan = top.get("Plan").ok_or_else(|| QueryError::PlanFormat {
            reason: "no \"Plan\" key".into(),
        })?;
        Ok(Plan {
            root: parse_node(plan, redact, 0)?,
            planning_ms: top.get("Planning Time").and_then(Json::as_f64),
            execution_ms: top.get("Execution Time").and_then(Json::as_f64),
        })
    }

    /// True when the plan carries measured figures.
    pub fn analyzed(&self) -> bool {
        self.root.actual.is_some()
    }

    /// Every node with its path (child indexes from the root), depth first.
    ///
    /// ```
    /// let json = r#"{"Plan": {"Node Type": "Limit", "Total Cost": 1.0, "Plan Rows": 1,
    ///   "Plans": [{"Node Type": "Seq Scan", "Relation Name": "t", "Total Cost": 1.0, "Plan Rows": 1}]}}"#;
    /// let plan = perf_query::Plan::from_json_str(json).unwrap();
    /// let paths: Vec<Vec<usize>> = plan.nodes().map(|(p, _)| p).collect();
    /// assert_eq!(paths, vec![vec![], vec![0]]);
    /// ```
    pub fn nodes(&self) -> impl Iterator<Item = (Vec<usize>, &PlanNode)> {
        let mut stack = vec![(Vec::new(), &self.root)];
        std::iter::from_fn(move || {
            let (path, node) = stack.pop()?;
            for (i, child) in node.children.iter().enumerate().rev() {
                let mut p = path.clone();
                p.push(i);
                stack.push((p, child));
            }
            Some((path, node))
        })
    }

    /// Mutable access to every node (used to attach relation sizes).
    pub fn for_each_node_mut(&mut self, f: &mut dyn FnMut(&mut PlanNode)) {
        fn go(n: &mut PlanNode, f: &mut dyn FnMut(&mut PlanNode)) {
            f(n);
            for c in &mut n.children {
                go(c, f);
            }
        }
        go(&mut self.root, f);
    }

    /// The node at `path`.
    pub fn node_at(&self, path: &[usize]) -> Option<&PlanNode> {
        let mut node = &self.root;
        for &i in path {
            node = node.children.get(i)?;
        }
        Some(node)
    }
}

impl PlanNode {
    /// A short label such as `Seq Scan on orders o` or `Index Scan using orders_pkey on orders`.
    pub fn label(&self) -> String {
        let mut s = self.node_type.to_string();
        if let Some(op) = &self.operation {
            s = format!("{s} ({op})");
        }
        if let Some(index) = &self.index_name {
            s.push_str(" using ");
            s.push_str(index);
        }
        if let Some(rel) = &self.relation {
            s.push_str(" on ");
            s.push_str(rel);
            if let Some(alias) = self.alias.as_ref().filter(|a| *a != rel) {
                s.push(' ');
                s.push_str(alias);
            }
        }
        s
    }
}

const MAX_PLAN_DEPTH: usize = 256;

fn string(node: &Json, key: &str, redact: bool) -> Option<String> {
    let s = node.get(key)?.as_str()?;
    Some(if redact {
        redact_or_marker(s)
    } else {
        s.to_string()
    })
}

fn plain(node: &Json, key: &str) -> Option<String> {
    node.get(key)?.as_str().map(str::to_string)
}

fn num(node: &Json, key: &str) -> Option<f64> {
    node.get(key)?.as_f64()
}

fn int(node: &Json, key: &str) -> Option<u64> {
    let v = node.get(key)?;
    v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
}

fn parse_node(node: &Json, redact: bool, depth: usize) -> Result<PlanNode> {
    if depth > MAX_PLAN_DEPTH {
        return Err(QueryError::PlanFormat {
            reason: format!("plan deeper than {MAX_PLAN_DEPTH} levels"),
        });
    }
    let node_type = node
        .get("Node Type")
        .and_then(Json::as_str)
        .map(NodeType::from_pg)
        .ok_or_else(|| QueryError::PlanFormat {
            reason: "node without \"Node Type\"".into(),
        })?;
    let actual = match (num(node, "Actual Rows"), num(node, "Actual Loops")) {
        (Some(rows), Some(loops)) => Some(Actual {
            startup_ms: num(node, "Actual Startup Time").unwrap_or(0.0),
            total_ms: num(node, "Actual Total Time").unwrap_or(0.0),
            rows,
            loops,
        }),
        _ => None,
    };
    let buffers = node.get("Shared Hit Blocks").map(|_| Buffers {
        shared_hit: int(node, "Shared Hit Blocks").unwrap_or(0),
        shared_read: int(node, "Shared Read Blocks").unwrap_or(0),
        shared_dirtied: int(node, "Shared Dirtied Blocks").unwrap_or(0),
        shared_written: int(node, "Shared Written Blocks").unwrap_or(0),
        local_hit: int(node, "Local Hit Blocks").unwrap_or(0),
        local_read: int(node, "Local Read Blocks").unwrap_or(0),
        temp_read: int(node, "Temp Read Blocks").unwrap_or(0),
        temp_written: int(node, "Temp Written Blocks").unwrap_or(0),
    });
    let children = match node.get("Plans").and_then(Json::as_array) {
        Some(plans) => plans
            .iter()
            .map(|p| parse_node(p, redact, depth + 1))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let sort_key = node
        .get("Sort Key")
        .and_then(Json::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(Json::as_str)
                .map(|k| {
                    if redact {
                        redact_or_marker(k)
                    } else {
                        k.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(PlanNode {
        node_type,
        strategy: plain(node, "Strategy"),
        operation: plain(node, "Operation"),
        join_type: plain(node, "Join Type"),
        relation: plain(node, "Relation Name"),
        schema: plain(node, "Schema"),
        alias: plain(node, "Alias"),
        index_name: plain(node, "Index Name"),
        parent_relationship: plain(node, "Parent Relationship"),
        startup_cost: num(node, "Startup Cost").unwrap_or(0.0),
        total_cost: num(node, "Total Cost").unwrap_or(0.0),
        plan_rows: num(node, "Plan Rows").unwrap_or(0.0),
        plan_width: int(node, "Plan Width").unwrap_or(0),
        actual,
        filter: string(node, "Filter", redact),
        index_cond: string(node, "Index Cond", redact),
        recheck_cond: string(node, "Recheck Cond", redact),
        hash_cond: string(node, "Hash Cond", redact),
        merge_cond: string(node, "Merge Cond", redact),
        join_filter: string(node, "Join Filter", redact),
        rows_removed_by_filter: num(node, "Rows Removed by Filter"),
        rows_removed_by_join_filter: num(node, "Rows Removed by Join Filter"),
        rows_removed_by_index_recheck: num(node, "Rows Removed by Index Recheck"),
        sort_key,
        sort_method: plain(node, "Sort Method"),
        sort_space_used_kb: int(node, "Sort Space Used"),
        sort_space_type: plain(node, "Sort Space Type"),
        hash_batches: int(node, "Hash Batches"),
        original_hash_batches: int(node, "Original Hash Batches"),
        peak_memory_kb: int(node, "Peak Memory Usage"),
        disk_usage_kb: int(node, "Disk Usage"),
        hash_agg_batches: int(node, "HashAgg Batches"),
        workers_launched: int(node, "Workers Launched"),
        buffers,
        relation_rows: None,
        children,
    })
}
