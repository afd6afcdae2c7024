//! Checks on existing indexes: never used (`idx_scan = 0`), exact duplicates, and btree
//! indexes whose keys are a prefix of another's (redundant for lookups).

use serde::{Deserialize, Serialize};

use super::TableInfo;
use crate::sql::{quote_ident, TableName};

/// What is wrong with an existing index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IndexFindingKind {
    /// No scan since statistics were last reset.
    Unused,
    /// Same keys, method, predicate and INCLUDE as another index.
    Duplicate,
    /// Its keys are a leading prefix of another btree index's keys.
    RedundantPrefix,
}

/// One finding on an existing index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IndexFinding {
    /// The kind.
    pub kind: IndexFindingKind,
    /// The table.
    pub table: TableName,
    /// The index.
    pub index: String,
    /// The index that makes this one redundant, for duplicates and prefixes.
    pub covered_by: Option<String>,
    /// Bytes a drop would free.
    pub size_bytes: u64,
    /// What to do.
    pub recommendation: String,
}

/// Findings on the indexes of `tables`. Unique and primary-key indexes are never reported as
/// unused or redundant (they enforce constraints).
///
/// ```
/// use perf_query::{existing_index_findings, ExistingIndexBuilder, IndexFindingKind, TableInfo, TableName};
/// let mut t = TableInfo::new(TableName::new("orders"), 1e6, vec![]);
/// t.indexes = vec![
///     ExistingIndexBuilder::new("a_idx", &["customer_id"]).scans(10).build(),
///     ExistingIndexBuilder::new("ab_idx", &["customer_id", "created_at"]).scans(5).build(),
/// ];
/// let f = existing_index_findings(&[t]);
/// assert_eq!(f[0].kind, IndexFindingKind::RedundantPrefix);
/// assert_eq!(f[0].index, "a_idx");
/// ```
pub fn existing_index_findings(tables: &[TableInfo]) -> Vec<IndexFinding> {
    let mut out = Vec::new();
    for t in tables {
        for (i, idx) in t.indexes.iter().enumerate() {
            let drop = format!(
                "DROP INDEX CONCURRENTLY {}",
                match &t.name.schema {
                    Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&idx.name)),
                    None => quote_ident(&idx.name),
                }
            );
            let constraint = idx.unique || idx.primary;
            // Duplicates: report the later one of an identical pair once.
            let dup = t.indexes[..i].iter().find(|o| {
                o.columns == idx.columns
                    && o.include == idx.include
                    && o.method == idx.method
                    && o.partial == idx.partial
                    && !idx.partial
                    && (!constraint || o.unique)
            });
            if let Some(o) = dup {
                out.push(IndexFinding {
                    kind: IndexFindingKind::Duplicate,
                    table: t.name.clone(),
                    index: idx.name.clone(),
                    covered_by: Some(o.name.clone()),
                    size_bytes: idx.size_bytes,
                    recommendation: format!("{drop}; it duplicates {}", o.name),
                });
                continue;
            }
            if constraint {
                continue;
            }
            let prefix_of = t.indexes.iter().find(|o| {
                o.name != idx.name
                    && idx.method == "btree"
                    && o.method == "btree"
                    && !idx.partial
                    && !o.partial
                    && idx.include.is_empty()
                    && idx.columns.len() < o.columns.len()
                    && o.columns.starts_with(&idx.columns)
                    && !idx.columns.iter().any(|c| c == "(expression)")
            });
            if let Some(o) = prefix_of {
                out.push(IndexFinding {
                    kind: IndexFindingKind::RedundantPrefix,
                    table: t.name.clone(),
                    index: idx.name.clone(),
                    covered_by: Some(o.name.clone()),
                    size_bytes: idx.size_bytes,
                    recommendation: format!(
                        "{drop}; {} starts with the same columns and serves the same lookups",
                        o.name
                    ),
                });
                continue;
            }
            if idx.scans == 0 {
                out.push(IndexFinding {
                    kind: IndexFindingKind::Unused,
                    table: t.name.clone(),
                    index: idx.name.clone(),
                    covered_by: None,
                    size_bytes: idx.size_bytes,
                    recommendation: format!(
                        "{drop} if it stays unused over a full business cycle (idx_scan = 0 since the last statistics reset; check replicas too)"
                    ),
                });
            }
        }
    }
    out
}

/// Builds an [`ExistingIndex`](super::ExistingIndex) by hand (tests, offline analysis).
#[derive(Debug, Clone)]
pub struct ExistingIndexBuilder {
    inner: super::ExistingIndex,
}

impl ExistingIndexBuilder {
    /// A non-unique btree on `columns`.
    pub fn new(name: &str, columns: &[&str]) -> Self {
        ExistingIndexBuilder {
            inner: super::ExistingIndex {
                name: name.to_string(),
                columns: columns.iter().map(|c| (*c).to_string()).collect(),
                include: Vec::new(),
                unique: false,
                primary: false,
                partial: false,
                method: "btree".to_string(),
                size_bytes: 0,
                scans: 0,
                definition: String::new(),
            },
        }
    }
    /// Sets `idx_scan`.
    pub fn scans(mut self, scans: i64) -> Self {
        self.inner.scans = scans;
        self
    }
    /// Marks it unique.
    pub fn unique(mut self) -> Self {
        self.inner.unique = true;
        self
    }
    /// Sets the size.
    pub fn size_bytes(mut self, size: u64) -> Self {
        self.inner.size_bytes = size;
        self
    }
    /// The index.
    pub fn build(self) -> super::ExistingIndex {
        self.inner
    }
}
