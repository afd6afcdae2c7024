//! Index candidates from a parsed statement: single columns, then multi-column keys ordered
//! equality → `IN` → range, equality + sort order for `ORDER BY … LIMIT`, covering
//! (`INCLUDE`) variants, and partial indexes for constant filters on low-cardinality columns.

use super::{IndexCandidate, IndexColumn, TableInfo};
use crate::sql::{quote_ident, ColumnRef, FilterOp, SortKey, SqlAnalysis, TableName};

/// Knobs of candidate generation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CandidateConfig {
    /// Most key columns in one candidate.
    pub max_key_columns: usize,
    /// Most columns (keys + INCLUDE) of a covering candidate.
    pub max_covering_columns: usize,
    /// A column with at most this many distinct values is low-cardinality (partial indexes).
    pub partial_max_distinct: f64,
    /// Most candidates per table.
    pub max_per_table: usize,
}

impl Default for CandidateConfig {
    fn default() -> Self {
        CandidateConfig {
            max_key_columns: 4,
            max_covering_columns: 6,
            partial_max_distinct: 20.0,
            max_per_table: 12,
        }
    }
}

/// Candidates for `analysis`. `tables` resolves unqualified columns and orders equality
/// columns by selectivity; candidates already served by an existing index (a prefix of its
/// keys) are left out.
///
/// ```
/// use perf_query::{analyze, generate_candidates, CandidateConfig};
/// let a = analyze("SELECT id FROM orders WHERE customer_id = $1 AND created_at > $2").unwrap();
/// let c = generate_candidates(&a, &[], &CandidateConfig::default());
/// let defs: Vec<String> = c.iter().map(|c| c.definition()).collect();
/// assert!(defs.contains(&"ON orders (customer_id, created_at)".to_string()), "{defs:?}");
/// ```
pub fn generate_candidates(
    analysis: &SqlAnalysis,
    tables: &[TableInfo],
    cfg: &CandidateConfig,
) -> Vec<IndexCandidate> {
    let mut out = Vec::new();
    for table in analysis.table_names() {
        let info = tables.iter().find(|t| t.matches(&table));
        let mut per_table = for_table(analysis, &table, info, cfg);
        per_table.truncate(cfg.max_per_table);
        out.extend(per_table);
    }
    out
}

/// True when `col` belongs to `table`: qualified to it, or unqualified and present in the
/// table's catalog entry (or the statement reads only this table).
fn belongs(col: &ColumnRef, table: &TableName, info: Option<&TableInfo>, single: bool) -> bool {
    match &col.table {
        Some(t) => t == table,
        None => match info {
            Some(i) => i.column(&col.column).is_some(),
            None => single,
        },
    }
}

fn push_unique(list: &mut Vec<String>, c: &str) {
    if !list.iter().any(|x| x == c) {
        list.push(c.to_string());
    }
}

fn for_table(
    a: &SqlAnalysis,
    table: &TableName,
    info: Option<&TableInfo>,
    cfg: &CandidateConfig,
) -> Vec<IndexCandidate> {
    let single = a.table_names().len() == 1;
    let mine = |c: &ColumnRef| belongs(c, table, info, single);
    let (mut eq, mut inn, mut range) = (Vec::new(), Vec::new(), Vec::new());
    let mut constants: Vec<(String, String, FilterOp)> = Vec::new();
    for f in a
        .filters
        .iter()
        .filter(|f| mine(&f.column) && !f.in_disjunction)
    {
        let c = f.column.column.as_str();
        match f.op {
            FilterOp::Equality | FilterOp::IsNull => push_unique(&mut eq, c),
            FilterOp::In => push_unique(&mut inn, c),
            FilterOp::Range | FilterOp::LikePrefix => push_unique(&mut range, c),
            _ => {}
        }
        if let Some(k) = &f.constant {
            if matches!(
                f.op,
                FilterOp::Equality | FilterOp::IsNull | FilterOp::IsNotNull
            ) {
                constants.push((c.to_string(), k.clone(), f.op));
            }
        }
    }
    // Join columns of this table: an index on them turns each probe into a lookup.
    for j in &a.joins {
        for side in [&j.left, &j.right] {
            if mine(side) && side.table.is_some() {
                push_unique(&mut eq, &side.column);
            }
        }
    }
    inn.retain(|c| !eq.contains(c));
    range.retain(|c| !eq.contains(c) && !inn.contains(c));
    // Most selective equality column first.
    if let Some(info) = info {
        let distinct = |c: &String| {
            info.column(c)
                .and_then(|s| s.distinct(info.rows))
                .unwrap_or(0.0)
        };
        eq.sort_by(|x, y| distinct(y).total_cmp(&distinct(x)));
    }
    let sort: Vec<&SortKey> = {
        let top: Vec<&SortKey> = a.order_by.iter().collect();
        let pick = if !top.is_empty() && top.iter().all(|k| mine(&k.column)) {
            top
        } else {
            a.nested_order_by
                .iter()
                .filter(|k| mine(&k.column))
                .collect()
        };
        pick
    };

    let mut out: Vec<IndexCandidate> = Vec::new();
    let mut add =
        |cols: Vec<IndexColumn>, include: Vec<String>, predicate: Option<String>, reason: &str| {
            if cols.is_empty() || cols.len() > cfg.max_key_columns {
                return;
            }
            let cand = IndexCandidate {
                table: info.map_or_else(|| table.clone(), |i| i.name.clone()),
                columns: cols,
                include,
                predicate,
                reason: reason.to_string(),
            };
            let served = info.is_some_and(|i| {
                i.indexes
                    .iter()
                    .any(|x| !x.partial && x.method == "btree" && cand.is_prefix_of(&x.columns))
            });
            if !served && !out.iter().any(|c| c.key() == cand.key()) {
                out.push(cand);
            }
        };
    let asc = |names: &[String]| -> Vec<IndexColumn> {
        names
            .iter()
            .map(|n| IndexColumn {
                name: n.clone(),
                descending: false,
            })
            .collect()
    };

    // Multi-column first (they are the likelier winners), then single columns.
    let mut keys = eq.clone();
    keys.extend(inn.iter().take(1).cloned());
    let mut with_range = keys.clone();
    with_range.extend(range.iter().take(1).cloned());
    if with_range.len() >= 2 {
        add(
            asc(&with_range),
            Vec::new(),
            None,
            "equality columns, then IN, then the range column",
        );
    }
    if keys.len() >= 2 && keys != with_range {
        add(asc(&keys), Vec::new(), None, "equality columns");
    }
    // ORDER BY … LIMIT: equality keys then the sort keys, so the index returns rows in order.
    let mut sorted_keys: Vec<IndexColumn> = asc(&eq);
    if !sort.is_empty() && sort.iter().all(|k| !eq.contains(&k.column.column)) {
        for k in &sort {
            sorted_keys.push(IndexColumn {
                name: k.column.column.clone(),
                descending: k.descending,
            });
        }
        let why = if a.limit.is_some() || !a.nested_order_by.is_empty() {
            "equality columns, then the ORDER BY keys: rows come out in order and LIMIT stops early"
        } else {
            "equality columns, then the ORDER BY keys (no sort step)"
        };
        add(sorted_keys.clone(), Vec::new(), None, why);
    }
    for c in eq.iter().chain(&inn).chain(&range) {
        add(
            asc(std::slice::from_ref(c)),
            Vec::new(),
            None,
            "single filtered or joined column",
        );
    }

    // Covering: the best multi-column key plus every other column the statement reads.
    if !a.star {
        // With an ORDER BY served by the index, cover that key; else the filter key.
        let base: Vec<IndexColumn> = if sorted_keys.len() > eq.len() || with_range.is_empty() {
            sorted_keys.clone()
        } else {
            asc(&with_range)
        };
        let mut include = Vec::new();
        for c in a.columns.iter().filter(|c| mine(c)) {
            if !base.iter().any(|k| k.name == c.column) {
                push_unique(&mut include, &c.column);
            }
        }
        if !base.is_empty()
            && !include.is_empty()
            && base.len() + include.len() <= cfg.max_covering_columns
        {
            add(
                base,
                include,
                None,
                "covering: an index-only scan needs no heap access",
            );
        }
    }

    // Partial: a constant filter on a low-cardinality column becomes the predicate.
    for (col, value, op) in &constants {
        let low_card = match op {
            FilterOp::IsNull | FilterOp::IsNotNull => true,
            _ => info
                .and_then(|i| i.column(col))
                .and_then(|s| s.distinct(info.map_or(0.0, |i| i.rows)))
                .is_some_and(|d| d <= cfg.partial_max_distinct),
        };
        if !low_card {
            continue;
        }
        let predicate = match op {
            FilterOp::IsNull => format!("{} IS NULL", quote_ident(col)),
            FilterOp::IsNotNull => format!("{} IS NOT NULL", quote_ident(col)),
            _ => format!("{} = {}", quote_ident(col), value),
        };
        let mut rest: Vec<IndexColumn> = asc(&eq).into_iter().filter(|k| &k.name != col).collect();
        rest.extend(asc(&range).into_iter().take(1));
        if rest.is_empty() {
            rest = sorted_keys
                .iter()
                .filter(|k| &k.name != col)
                .cloned()
                .collect();
        }
        add(
            rest,
            Vec::new(),
            Some(predicate),
            "partial: only the rows the constant filter keeps",
        );
    }
    out
}
