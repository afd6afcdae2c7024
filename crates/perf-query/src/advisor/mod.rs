//! Index advice, the pure half: table statistics as the catalog gives them ([`TableInfo`]),
//! index candidates built from parsed predicates ([`candidates`]), the btree size model
//! ([`size`]) and the checks on existing indexes ([`existing`]). The what-if costing that
//! validates candidates against a live server is in the `postgres`-gated advisor.

pub(crate) mod candidates;
pub(crate) mod existing;
pub(crate) mod size;

use serde::{Deserialize, Serialize};

use crate::sql::{quote_ident, TableName};

/// Statistics of one column (`pg_attribute`, `pg_type`, `pg_stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ColumnStats {
    /// Column name.
    pub name: String,
    /// Type name (`int4`, `text`, …).
    pub type_name: String,
    /// `typlen`: fixed size in bytes, or -1 for variable-length types.
    pub type_len: i16,
    /// `typalign`: `c`, `s`, `i` or `d` (1, 2, 4, 8 bytes).
    pub type_align: char,
    /// `pg_stats.avg_width` in bytes, when the table was analyzed.
    pub avg_width: Option<f64>,
    /// `pg_stats.n_distinct`: a count when positive, minus a fraction of the rows when
    /// negative.
    pub n_distinct: Option<f64>,
    /// `pg_stats.null_frac`.
    pub null_frac: f64,
}

impl ColumnStats {
    /// A column with only its type known (no statistics).
    ///
    /// ```
    /// let c = perf_query::ColumnStats::new("id", "int4", 4, 'i');
    /// assert_eq!(c.width(), 4.0);
    /// ```
    pub fn new(
        name: impl Into<String>,
        type_name: impl Into<String>,
        type_len: i16,
        type_align: char,
    ) -> Self {
        ColumnStats {
            name: name.into(),
            type_name: type_name.into(),
            type_len,
            type_align,
            avg_width: None,
            n_distinct: None,
            null_frac: 0.0,
        }
    }

    /// Sets `avg_width`, `n_distinct` and `null_frac`.
    pub fn with_stats(mut self, avg_width: f64, n_distinct: f64, null_frac: f64) -> Self {
        self.avg_width = Some(avg_width);
        self.n_distinct = Some(n_distinct);
        self.null_frac = null_frac;
        self
    }

    /// Stored width in bytes: the fixed length, else `avg_width`, else a guess of 32.
    pub fn width(&self) -> f64 {
        if self.type_len > 0 {
            f64::from(self.type_len)
        } else {
            self.avg_width.unwrap_or(32.0)
        }
    }

    /// Distinct values for a table of `rows` rows.
    pub fn distinct(&self, rows: f64) -> Option<f64> {
        let nd = self.n_distinct?;
        Some(if nd < 0.0 { -nd * rows } else { nd }.max(1.0))
    }

    /// Alignment in bytes.
    pub fn align(&self) -> usize {
        match self.type_align {
            'd' => 8,
            'i' => 4,
            's' => 2,
            _ => 1,
        }
    }

    /// True when btree deduplication applies to the type (PostgreSQL 13+: types whose
    /// equality is bitwise, "equalimage"; not numeric, floats, jsonb or arrays).
    pub fn deduplicates(&self) -> bool {
        matches!(
            self.type_name.as_str(),
            "int2"
                | "int4"
                | "int8"
                | "oid"
                | "bool"
                | "char"
                | "text"
                | "varchar"
                | "bpchar"
                | "name"
                | "date"
                | "time"
                | "timestamp"
                | "timestamptz"
                | "uuid"
                | "bytea"
                | "interval"
                | "money"
        )
    }
}

/// An index that exists on a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExistingIndex {
    /// Index name.
    pub name: String,
    /// Key columns in order (`(expression)` for expression keys).
    pub columns: Vec<String>,
    /// `INCLUDE` columns.
    pub include: Vec<String>,
    /// Unique (or primary key).
    pub unique: bool,
    /// Primary key.
    pub primary: bool,
    /// Has a `WHERE` predicate.
    pub partial: bool,
    /// Access method (`btree`, `gin`, …).
    pub method: String,
    /// Size on disk in bytes.
    pub size_bytes: u64,
    /// `pg_stat_user_indexes.idx_scan`.
    pub scans: i64,
    /// `pg_get_indexdef`.
    pub definition: String,
}

/// What the advisor knows about one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TableInfo {
    /// Schema-qualified name.
    pub name: TableName,
    /// `pg_class.reltuples` (estimated rows).
    pub rows: f64,
    /// `pg_class.relpages`.
    pub pages: u64,
    /// Columns with statistics.
    pub columns: Vec<ColumnStats>,
    /// Existing indexes.
    pub indexes: Vec<ExistingIndex>,
}

impl TableInfo {
    /// A table with `rows` rows and the given columns, no indexes.
    ///
    /// ```
    /// use perf_query::{ColumnStats, TableInfo, TableName};
    /// let t = TableInfo::new(TableName::new("t"), 1000.0, vec![ColumnStats::new("id", "int4", 4, 'i')]);
    /// assert!(t.column("id").is_some());
    /// ```
    pub fn new(name: TableName, rows: f64, columns: Vec<ColumnStats>) -> Self {
        TableInfo {
            name,
            rows,
            pages: 0,
            columns,
            indexes: Vec::new(),
        }
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnStats> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// True when `name` designates this table (a missing schema matches any).
    pub fn matches(&self, name: &TableName) -> bool {
        self.name.name == name.name
            && match (&name.schema, &self.name.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// One key column of an index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexColumn {
    /// Column name.
    pub name: String,
    /// `DESC`.
    pub descending: bool,
}

/// A proposed btree index.
///
/// ```
/// use perf_query::{IndexCandidate, IndexColumn, TableName};
/// let c = IndexCandidate::new(TableName::new("orders"), &["customer_id", "created_at"])
///     .with_include(&["total"]);
/// assert_eq!(
///     c.create_statement(true),
///     "CREATE INDEX CONCURRENTLY orders_customer_id_created_at_idx ON orders (customer_id, created_at) INCLUDE (total)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IndexCandidate {
    /// The table.
    pub table: TableName,
    /// Key columns in order.
    pub columns: Vec<IndexColumn>,
    /// `INCLUDE` columns (for index-only scans).
    pub include: Vec<String>,
    /// `WHERE` predicate of a partial index, as SQL.
    pub predicate: Option<String>,
    /// Why it was proposed.
    pub reason: String,
}

impl IndexCandidate {
    /// A plain candidate on `columns` (ascending).
    pub fn new(table: TableName, columns: &[&str]) -> Self {
        IndexCandidate {
            table,
            columns: columns
                .iter()
                .map(|c| IndexColumn {
                    name: (*c).to_string(),
                    descending: false,
                })
                .collect(),
            include: Vec::new(),
            predicate: None,
            reason: String::new(),
        }
    }

    /// Adds `INCLUDE` columns.
    pub fn with_include(mut self, include: &[&str]) -> Self {
        self.include = include.iter().map(|c| (*c).to_string()).collect();
        self
    }

    /// Sets a partial-index predicate (SQL text).
    pub fn with_predicate(mut self, predicate: impl Into<String>) -> Self {
        self.predicate = Some(predicate.into());
        self
    }

    /// The key column names.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// `ON table (cols) [INCLUDE (…)] [WHERE …]`, identifiers quoted.
    pub fn definition(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                if c.descending {
                    format!("{} DESC", quote_ident(&c.name))
                } else {
                    quote_ident(&c.name)
                }
            })
            .collect();
        let mut s = format!("ON {} ({})", self.table, cols.join(", "));
        if !self.include.is_empty() {
            let inc: Vec<String> = self.include.iter().map(|c| quote_ident(c)).collect();
            s.push_str(&format!(" INCLUDE ({})", inc.join(", ")));
        }
        if let Some(p) = &self.predicate {
            s.push_str(" WHERE ");
            s.push_str(p);
        }
        s
    }

    /// A name like `orders_customer_id_created_at_idx`, at most 63 bytes.
    pub fn suggested_name(&self) -> String {
        let mut name = self.table.name.clone();
        for c in &self.columns {
            name.push('_');
            name.push_str(&c.name);
        }
        if self.predicate.is_some() {
            name.push_str("_part");
        }
        let mut name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        if name.len() > 59 {
            // Keep it unique-ish: a short hash of the full definition.
            let h = blake3::hash(self.definition().as_bytes()).to_hex();
            name.truncate(50);
            name.push('_');
            name.push_str(&h[..8]);
        }
        name.push_str("_idx");
        name
    }

    /// The `CREATE INDEX` statement (with `CONCURRENTLY` when asked: what to run in
    /// production, since it does not block writes).
    pub fn create_statement(&self, concurrently: bool) -> String {
        format!(
            "CREATE INDEX {}{} {}",
            if concurrently { "CONCURRENTLY " } else { "" },
            quote_ident(&self.suggested_name()),
            self.definition()
        )
    }

    /// Canonical identity for de-duplication and caches.
    pub fn key(&self) -> String {
        self.definition()
    }

    /// True when this candidate's keys are a prefix of `columns` (so an index on `columns`
    /// serves the same lookups) and it needs no predicate or INCLUDE of its own.
    pub fn is_prefix_of(&self, columns: &[String]) -> bool {
        self.predicate.is_none()
            && self.include.is_empty()
            && self.columns.len() <= columns.len()
            && self.columns.iter().zip(columns).all(|(a, b)| &a.name == b)
    }
}
