//! SQL understanding with sqlparser (PostgreSQL dialect): which tables a statement reads and
//! writes, with aliases resolved through subqueries, CTEs and `LATERAL`; its filter columns with
//! their operator class; join columns; `ORDER BY` / `GROUP BY` columns; `LIMIT`.
//!
//! The result, [`SqlAnalysis`], is what the index advisor builds candidates from and what the
//! result cache uses to know which tables a query reads or writes.

mod walk;

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::{QueryError, Result};
use crate::fingerprint::StatementKind;

/// A table name as written, with unquoted parts folded to lower case like PostgreSQL does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    /// The schema, when the statement names one.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// A table without schema.
    ///
    /// ```
    /// let t = perf_query::TableName::new("orders");
    /// assert_eq!(t.to_string(), "orders");
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        TableName {
            schema: None,
            name: name.into(),
        }
    }

    /// A schema-qualified table.
    ///
    /// ```
    /// let t = perf_query::TableName::qualified("Sales", "orders");
    /// assert_eq!(t.to_string(), "\"Sales\".orders");
    /// ```
    pub fn qualified(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: Some(schema.into()),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableName {
    /// Renders the name with identifiers quoted where PostgreSQL needs quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", quote_ident(schema))?;
        }
        write!(f, "{}", quote_ident(&self.name))
    }
}

/// Quotes an identifier for PostgreSQL when it is not a plain lower-case name (or is a
/// reserved word); doubles embedded quotes.
///
/// ```
/// use perf_query::quote_ident;
/// assert_eq!(quote_ident("orders"), "orders");
/// assert_eq!(quote_ident("Order Lines"), "\"Order Lines\"");
/// assert_eq!(quote_ident("user"), "\"user\"");
/// assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
/// ```
pub fn quote_ident(ident: &str) -> String {
    let mut chars = ident.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved_word(ident);
    if plain {
        ident.to_string()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

/// PostgreSQL's reserved key words (SQL key words appendix, "reserved" in the PostgreSQL
/// column), which must be quoted as identifiers.
fn is_reserved_word(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_catalog",
        "current_date",
        "current_role",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "initially",
        "intersect",
        "into",
        "lateral",
        "leading",
        "limit",
        "localtime",
        "localtimestamp",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "placing",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "symmetric",
        "system_user",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "when",
        "where",
        "window",
        "with",
    ];
    RESERVED.binary_search(&s).is_ok()
}

/// A column reference resolved to its base table where the statement makes that possible.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ColumnRef {
    /// The base table, or `None` when the column is unqualified in a scope with several
    /// tables (the advisor resolves those through the catalog).
    pub table: Option<TableName>,
    /// The column name, folded like PostgreSQL folds it.
    pub column: String,
}

/// The operator class of a filter, as far as an index cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FilterOp {
    /// `col = value` (also a bare boolean column).
    Equality,
    /// `<`, `<=`, `>`, `>=`, `BETWEEN`.
    Range,
    /// `IN (…)`, `= ANY(…)`, `IN (SELECT …)`.
    In,
    /// `LIKE 'prefix%'` with a literal prefix.
    LikePrefix,
    /// `IS NULL`.
    IsNull,
    /// `IS NOT NULL`.
    IsNotNull,
    /// Anything a plain btree cannot use (`<>`, `LIKE '%x'`, `ILIKE`, functions of the column).
    Other,
}

/// One filter on a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The filtered column.
    pub column: ColumnRef,
    /// Its operator class.
    pub op: FilterOp,
    /// True when the filter sits under an `OR` (a single index serves it less well).
    pub in_disjunction: bool,
    /// The literal compared with, as SQL text, when the statement holds one (not a parameter);
    /// the advisor uses it for partial indexes. Never serialized: it is user data.
    #[serde(skip)]
    pub constant: Option<String>,
}

/// An equality between columns of two relations (`ON a.x = b.y`, `USING (x)`, or a
/// correlated predicate inside a subquery or `LATERAL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinPair {
    /// One side.
    pub left: ColumnRef,
    /// The other side.
    pub right: ColumnRef,
    /// True when one side comes from an enclosing query (correlated subquery or `LATERAL`).
    pub correlated: bool,
}

/// One `ORDER BY` key that is a plain column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKey {
    /// The column.
    pub column: ColumnRef,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST` (`Some(true)`), `NULLS LAST` (`Some(false)`) or unspecified.
    pub nulls_first: Option<bool>,
}

/// The row limit of the outermost query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// A literal count.
    Rows(u64),
    /// A bind parameter or an expression.
    Parameter,
}

/// One base table with the alias it goes by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRef {
    /// The table.
    pub table: TableName,
    /// The alias, when the statement gives one.
    pub alias: Option<String>,
}

/// What a statement does to which tables and columns.
///
/// ```
/// use perf_query::{analyze, FilterOp};
/// let a = analyze(
///     "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id \
///      WHERE c.country = 'DE' AND o.created_at >= $1 ORDER BY o.created_at DESC LIMIT 20",
/// ).unwrap();
/// assert_eq!(a.tables.len(), 2);
/// let country = a.filters.iter().find(|f| f.column.column == "country").unwrap();
/// assert_eq!(country.op, FilterOp::Equality);
/// assert_eq!(country.column.table.as_ref().unwrap().name, "customers");
/// assert_eq!(a.joins.len(), 1);
/// assert!(a.order_by[0].descending);
/// assert_eq!(a.limit, Some(perf_query::Limit::Rows(20)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SqlAnalysis {
    /// What the statement does (data-modifying CTEs make a `WITH … SELECT` a write).
    pub kind: Option<StatementKind>,
    /// Base tables read or written, once per (table, alias); CTE names and derived tables are
    /// resolved away.
    pub tables: Vec<TableRef>,
    /// Base tables the statement writes.
    pub written: Vec<TableName>,
    /// Filters on columns.
    pub filters: Vec<Filter>,
    /// Join equalities.
    pub joins: Vec<JoinPair>,
    /// `ORDER BY` of the outermost query, when its keys are plain columns.
    pub order_by: Vec<SortKey>,
    /// `ORDER BY` keys of subqueries (`LATERAL (… ORDER BY … LIMIT n)`, CTEs), when plain
    /// columns.
    pub nested_order_by: Vec<SortKey>,
    /// True when a projection uses `*` (no index can cover it).
    pub star: bool,
    /// `GROUP BY` columns.
    pub group_by: Vec<ColumnRef>,
    /// Every column the statement references (projection included), for covering indexes.
    pub columns: Vec<ColumnRef>,
    /// `LIMIT` / `FETCH FIRST` of the outermost query.
    pub limit: Option<Limit>,
}

impl SqlAnalysis {
    /// The distinct base tables (without aliases).
    ///
    /// ```
    /// let a = perf_query::analyze("SELECT * FROM t a JOIN t b ON a.p = b.id").unwrap();
    /// assert_eq!(a.table_names().len(), 1);
    /// ```
    pub fn table_names(&self) -> Vec<TableName> {
        let mut names: Vec<TableName> = self.tables.iter().map(|t| t.table.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The filters on `table` (unresolved columns are not included).
    pub fn filters_on<'a>(&'a self, table: &'a TableName) -> impl Iterator<Item = &'a Filter> + 'a {
        self.filters
            .iter()
            .filter(move |f| f.column.table.as_ref() == Some(table))
    }
}

/// Parses exactly one statement with sqlparser's PostgreSQL dialect.
///
/// ```
/// let err = perf_query::parse_statement("SELECT * FROM WHERE id = 1").unwrap_err();
/// assert!(matches!(err, perf_query::QueryError::Parse { line: 1, .. }));
/// ```
///
/// # Errors
///
/// [`QueryError::Parse`] with line and column, [`QueryError::Empty`],
/// [`QueryError::MultipleStatements`].
pub fn parse_statement(sql: &str) -> Result<Statement> {
    let dialect = PostgreSqlDialect {};
    let mut statements = Parser::parse_sql(&dialect, sql).map_err(|e| {
        match QueryError::from_parser_message(&parser_message(e)) {
            // The parser gives no position for an unexpected end: it is the end of the text.
            QueryError::Parse {
                message,
                line: 0,
                column: 0,
            } if message.contains("EOF") => {
                let line = sql.lines().count().max(1) as u64;
                let last = sql.lines().last().unwrap_or("");
                QueryError::Parse {
                    message,
                    line,
                    column: last.chars().count() as u64 + 1,
                }
            }
            other => other,
        }
    })?;
    match statements.len() {
        0 => Err(QueryError::Empty),
        1 => Ok(statements.remove(0)),
        count => Err(QueryError::MultipleStatements { count }),
    }
}

fn parser_message(e: sqlparser::parser::ParserError) -> String {
    use sqlparser::parser::ParserError as P;
    match e {
        P::TokenizerError(m) | P::ParserError(m) => m,
        P::RecursionLimitExceeded => "recursion limit exceeded".to_string(),
    }
}

/// Parses one statement and analyzes it: see [`SqlAnalysis`].
///
/// # Errors
///
/// As [`parse_statement`].
pub fn analyze(sql: &str) -> Result<SqlAnalysis> {
    let statement = parse_statement(sql)?;
    Ok(walk::analyze_statement(&statement))
}

/// Analyzes an already parsed statement.
///
/// ```
/// let st = perf_query::parse_statement("DELETE FROM sessions WHERE expires_at < now()").unwrap();
/// let a = perf_query::analyze_statement(&st);
/// assert_eq!(a.written[0].name, "sessions");
/// ```
pub fn analyze_statement(statement: &Statement) -> SqlAnalysis {
    walk::analyze_statement(statement)
}

/// The column filters of a condition as PostgreSQL prints it in a plan (`Filter`, `Index
/// Cond`), against `relation`. Implicit casts around columns are looked through. Returns an
/// empty list when the condition does not parse.
pub(crate) fn condition_filters(
    relation: &str,
    alias: Option<&str>,
    condition: &str,
) -> Vec<Filter> {
    let sql = match alias {
        Some(a) if a != relation => format!(
            "SELECT 1 FROM {} AS {} WHERE {}",
            quote_ident(relation),
            quote_ident(a),
            condition
        ),
        _ => format!(
            "SELECT 1 FROM {} WHERE {}",
            quote_ident(relation),
            condition
        ),
    };
    match parse_statement(&sql) {
        Ok(st) => walk::analyze_with(&st, true).filters,
        Err(_) => Vec::new(),
    }
}
