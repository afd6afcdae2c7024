//! Query fingerprints and literal redaction: SQL normalized at the token level (sqlparser's
//! PostgreSQL tokenizer) so queries that differ only in literal values share one stable
//! blake3 fingerprint.
//!
//! Normalization works on tokens, not on a full parse, on purpose: it runs on the hot path of
//! the N+1 detector and the result cache, must accept every statement PostgreSQL accepts (also
//! syntax sqlparser's parser does not know), and stays about as cheap as tokenizing. The rules:
//!
//! - every literal (numbers, strings of every quoting style, `TRUE`/`FALSE` outside `IS …`,
//!   a unary minus before a number) and every bind parameter (`$1`, `?`) becomes a placeholder;
//!   placeholders are renumbered `$1, $2, …` in order of appearance;
//! - `IN (…)` and `ARRAY[…]` lists of placeholders collapse to one, whatever their length, and
//!   the extra rows of a multi-row `VALUES` are dropped;
//! - comments and whitespace vanish, unquoted identifiers are folded to lower case (as
//!   PostgreSQL does), reserved keywords are upper-cased, `"plain_names"` lose needless quotes,
//!   a trailing `;` is dropped.
//!
//! `= ANY($1)` keeps its own shape, so the batched rewrite of a per-row `= $1` query has a
//! different fingerprint; [`NormalizedQuery::batched`] additionally marks multi-value forms
//! (an `IN` list of two or more, `= ANY(…)`, multi-row `VALUES`) for the N+1 detector.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{QueryError, Result};

/// A stable 64-bit fingerprint of a query's shape: the first 8 bytes of the blake3 hash of the
/// normalized text. Displayed as 16 lower-case hex digits.
///
/// ```
/// let a = perf_query::fingerprint("SELECT * FROM users WHERE id = 1").unwrap();
/// let b = perf_query::fingerprint("select *  from USERS where id = 2 -- again").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.to_string().len(), 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// Fingerprint of an already normalized text.
    fn of_normalized(text: &str) -> Self {
        let hash = blake3::hash(text.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        Fingerprint(u64::from_be_bytes(first))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What a statement does, judged from its leading keyword (and, for `WITH`, from any
/// data-modifying keyword inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `TABLE`, or a `WITH` that only reads.
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// Anything else (DDL, `SET`, `COPY`, …).
    Other,
}

impl StatementKind {
    /// True for statements that change rows.
    ///
    /// ```
    /// use perf_query::StatementKind;
    /// assert!(StatementKind::Delete.is_write());
    /// assert!(!StatementKind::Select.is_write());
    /// ```
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Insert | Self::Update | Self::Delete | Self::Merge
        )
    }
}

/// A query with its literals replaced: the redacted text, its fingerprint and its shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NormalizedQuery {
    /// Normalized SQL with `$1, $2, …` in place of literals and parameters.
    pub text: String,
    /// blake3 fingerprint of `text`.
    pub fingerprint: Fingerprint,
    /// How many placeholders `text` holds.
    pub placeholders: usize,
    /// True for multi-value forms: an `IN` list of two or more, `= ANY(…)`, a multi-row
    /// `VALUES`. The N+1 detector never counts such statements.
    pub batched: bool,
    /// What the statement does.
    pub kind: StatementKind,
}

/// Normalizes `sql`: see the module documentation for the rules.
///
/// ```
/// let q = perf_query::normalize("SELECT name FROM users WHERE id IN (1, 2, 3) AND email = 'a@b.c'").unwrap();
/// assert_eq!(q.text, "SELECT name FROM users WHERE id IN ($1 /*, ... */) AND email = $2");
/// assert!(q.batched);
/// ```
///
/// # Errors
///
/// [`QueryError::Parse`] with the position when the text cannot be tokenized (for example an
/// unterminated string), [`QueryError::Empty`] when it holds no tokens.
pub fn normalize(sql: &str) -> Result<NormalizedQuery> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| QueryError::Parse {
            message: e.message,
            line: e.location.line,
            column: e.location.column,
        })?;
    let items = lex(tokens);
    if items.is_empty() {
        return Err(QueryError::Empty);
    }
    let kind = statement_kind(&items);
    let (items, batched) = collapse(items);
    let (text, placeholders) = render(&items);
    Ok(NormalizedQuery {
        fingerprint: Fingerprint::of_normalized(&text),
        text,
        placeholders,
        batched,
        kind,
    })
}

/// The fingerprint of `sql` (see [`normalize`]).
///
/// ```
/// use perf_query::fingerprint;
/// let one = fingerprint("SELECT * FROM orders WHERE customer_id = $1").unwrap();
/// let batched = fingerprint("SELECT * FROM orders WHERE customer_id = ANY($1)").unwrap();
/// assert_ne!(one, batched);
/// ```
///
/// # Errors
///
/// As [`normalize`].
pub fn fingerprint(sql: &str) -> Result<Fingerprint> {
    normalize(sql).map(|q| q.fingerprint)
}

/// `sql` with every literal replaced by a numbered placeholder, for logs and reports.
///
/// ```
/// let shown = perf_query::redact("UPDATE users SET password = 'hunter2' WHERE id = 7").unwrap();
/// assert_eq!(shown, "UPDATE users SET password = $1 WHERE id = $2");
/// ```
///
/// # Errors
///
/// As [`normalize`].
pub fn redact(sql: &str) -> Result<String> {
    normalize(sql).map(|q| q.text)
}

/// [`redact`] that never fails: text that cannot be tokenized is replaced by a fixed marker
/// (it could hold anything).
///
/// ```
/// assert_eq!(perf_query::redact_or_marker("SELECT 'oops"), "<unparseable SQL>");
/// ```
pub fn redact_or_marker(sql: &str) -> String {
    redact(sql).unwrap_or_else(|_| "<unparseable SQL>".to_string())
}

/// Facts about the bind parameters and statements of a text, read from its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct TextShape {
    /// Highest `$n` parameter number (0 when none).
    pub(crate) max_parameter: usize,
    /// Statements in the text (a trailing `;` does not start a new one).
    pub(crate) statements: usize,
}

/// Reads [`TextShape`] from `sql`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn text_shape(sql: &str) -> Result<TextShape> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| QueryError::Parse {
            message: e.message,
            line: e.location.line,
            column: e.location.column,
        })?;
    let mut max_parameter = 0;
    let mut statements = 0;
    let mut in_statement = false;
    for t in &tokens {
        match t {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => in_statement = false,
            other => {
                if !in_statement {
                    statements += 1;
                    in_statement = true;
                }
                if let Token::Placeholder(p) = other {
                    if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                        max_parameter = max_parameter.max(n);
                    }
                }
            }
        }
    }
    Ok(TextShape {
        max_parameter,
        statements,
    })
}

/// One normalized token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A literal or parameter.
    Lit,
    /// A reserved keyword, upper-cased.
    Keyword(&'static str),
    /// An identifier (or a non-reserved keyword used as one), case-folded or quoted.
    Ident(String),
    /// Punctuation or an operator.
    Punct(String),
    /// The `/*, ... */` marker left where a list was collapsed.
    Collapsed,
}

impl Item {
    fn is_punct(&self, p: &str) -> bool {
        matches!(self, Item::Punct(s) if s == p)
    }
    fn is_kw(&self, k: &str) -> bool {
        matches!(self, Item::Keyword(s) if *s == k)
    }
}

/// Reserved keywords rendered upper-case; everything else is an identifier.
fn reserved(kw: Keyword) -> Option<&'static str> {
    use Keyword as K;
    Some(match kw {
        K::SELECT => "SELECT",
        K::FROM => "FROM",
        K::WHERE => "WHERE",
        K::AND => "AND",
        K::OR => "OR",
        K::NOT => "NOT",
        K::IN => "IN",
        K::IS => "IS",
        K::NULL => "NULL",
        K::AS => "AS",
        K::ON => "ON",
        K::JOIN => "JOIN",
        K::INNER => "INNER",
        K::LEFT => "LEFT",
        K::RIGHT => "RIGHT",
        K::FULL => "FULL",
        K::OUTER => "OUTER",
        K::CROSS => "CROSS",
        K::LATERAL => "LATERAL",
        K::USING => "USING",
        K::GROUP => "GROUP",
        K::BY => "BY",
        K::ORDER => "ORDER",
        K::HAVING => "HAVING",
        K::LIMIT => "LIMIT",
        K::OFFSET => "OFFSET",
        K::FETCH => "FETCH",
        K::UNION => "UNION",
        K::ALL => "ALL",
        K::INTERSECT => "INTERSECT",
        K::EXCEPT => "EXCEPT",
        K::DISTINCT => "DISTINCT",
        K::INSERT => "INSERT",
        K::INTO => "INTO",
        K::VALUES => "VALUES",
        K::UPDATE => "UPDATE",
        K::SET => "SET",
        K::DELETE => "DELETE",
        K::MERGE => "MERGE",
        K::RETURNING => "RETURNING",
        K::WITH => "WITH",
        K::RECURSIVE => "RECURSIVE",
        K::CASE => "CASE",
        K::WHEN => "WHEN",
        K::THEN => "THEN",
        K::ELSE => "ELSE",
        K::END => "END",
        K::EXISTS => "EXISTS",
        K::BETWEEN => "BETWEEN",
        K::LIKE => "LIKE",
        K::ILIKE => "ILIKE",
        K::ANY => "ANY",
        K::SOME => "SOME",
        K::ASC => "ASC",
        K::DESC => "DESC",
        K::NULLS => "NULLS",
        K::FOR => "FOR",
        K::CONFLICT => "CONFLICT",
        K::DO => "DO",
        K::NOTHING => "NOTHING",
        K::DEFAULT => "DEFAULT",
        K::CAST => "CAST",
        K::ARRAY => "ARRAY",
        K::TRUE => "TRUE",
        K::FALSE => "FALSE",
        K::EXPLAIN => "EXPLAIN",
        K::ANALYZE => "ANALYZE",
        _ => return None,
    })
}

/// True for identifiers PostgreSQL would read back unchanged without quotes.
fn plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// Turns tokens into normalized items: literals and parameters become [`Item::Lit`].
fn lex(tokens: Vec<Token>) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity(tokens.len());
    let mut iter = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .peekable();
    while let Some(tok) = iter.next() {
        // Whether the previous item ends an operand (so a following `-` is binary).
        let prev_operand = matches!(
            out.last(),
            Some(Item::Lit | Item::Ident(_) | Item::Collapsed)
        ) || matches!(out.last(), Some(Item::Punct(p)) if p == ")" || p == "]")
            || matches!(out.last(), Some(Item::Keyword(k)) if *k == "NULL" || *k == "END");
        let item = match tok {
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Placeholder(_) => Item::Lit,
            Token::Minus if !prev_operand && matches!(iter.peek(), Some(Token::Number(..))) => {
                iter.next();
                Item::Lit
            }
            Token::Word(w) => match w.quote_style {
                None => match reserved(w.keyword) {
                    Some(kw @ ("TRUE" | "FALSE")) => {
                        let after_is = matches!(out.last(), Some(Item::Keyword(k)) if *k == "IS")
                            || (matches!(out.last(), Some(Item::Keyword(k)) if *k == "NOT")
                                && matches!(out.iter().rev().nth(1), Some(Item::Keyword(k)) if *k == "IS"));
                        if after_is {
                            Item::Keyword(kw)
                        } else {
                            Item::Lit
                        }
                    }
                    Some(kw) => Item::Keyword(kw),
                    None => Item::Ident(w.value.to_lowercase()),
                },
                Some('"') if plain_identifier(&w.value) && reserved(w.keyword).is_none() => {
                    Item::Ident(w.value)
                }
                Some(q) => Item::Ident(format!("{q}{}{q}", w.value)),
            },
            other => Item::Punct(other.to_string()),
        };
        out.push(item);
    }
    while out.last().is_some_and(|i| i.is_punct(";")) {
        out.pop();
    }
    out
}

/// The statement kind from the leading keyword; for `WITH`, the first data-modifying keyword.
fn statement_kind(items: &[Item]) -> StatementKind {
    let kind_of = |k: &str| match k {
        "SELECT" | "VALUES" => Some(StatementKind::Select),
        "INSERT" => Some(StatementKind::Insert),
        "UPDATE" => Some(StatementKind::Update),
        "DELETE" => Some(StatementKind::Delete),
        "MERGE" => Some(StatementKind::Merge),
        _ => None,
    };
    match items.first() {
        Some(Item::Keyword("WITH")) => {
            // `FOR UPDATE` is a lock clause, not a write.
            let mut prev_for = false;
            for item in items {
                if let Item::Keyword(k) = item {
                    if !prev_for {
                        if let Some(
                            kind @ (StatementKind::Insert
                            | StatementKind::Update
                            | StatementKind::Delete
                            | StatementKind::Merge),
                        ) = kind_of(k)
                        {
                            return kind;
                        }
                    }
                    prev_for = *k == "FOR";
                } else {
                    prev_for = false;
                }
            }
            StatementKind::Select
        }
        Some(Item::Keyword(k)) => kind_of(k).unwrap_or(StatementKind::Other),
        Some(Item::Ident(t)) if t == "table" => StatementKind::Select,
        _ => StatementKind::Other,
    }
}

/// Length of a run `Lit (, Lit)*` starting at `start` and ending before `close`; returns the
/// number of literals and the index of `close`.
fn literal_list(items: &[Item], start: usize, close: &str) -> Option<(usize, usize)> {
    let mut i = start;
    let mut count = 0;
    loop {
        match items.get(i) {
            Some(Item::Lit) => count += 1,
            _ => return None,
        }
        // Casts of a literal (`$1::int`) stay part of the element.
        while items.get(i + 1).is_some_and(|t| t.is_punct("::")) {
            match items.get(i + 2) {
                Some(Item::Ident(_) | Item::Keyword(_)) => i += 2,
                _ => return None,
            }
        }
        match items.get(i + 1) {
            Some(t) if t.is_punct(",") => i += 2,
            Some(t) if t.is_punct(close) => return Some((count, i + 1)),
            _ => return None,
        }
    }
}

/// Collapses `IN (…)`, `ARRAY[…]` and multi-row `VALUES`; reports whether the statement has a
/// multi-value (batched) form.
fn collapse(items: Vec<Item>) -> (Vec<Item>, bool) {
    let mut out = Vec::with_capacity(items.len());
    let mut batched = false;
    let mut i = 0;
    while i < items.len() {
        let item = &items[i];
        // `IN ( lit, … )` and `ARRAY [ lit, … ]`.
        let list_open = if item.is_kw("IN") && items.get(i + 1).is_some_and(|t| t.is_punct("(")) {
            Some(")")
        } else if item.is_kw("ARRAY") && items.get(i + 1).is_some_and(|t| t.is_punct("[")) {
            Some("]")
        } else {
            None
        };
        if let Some(close) = list_open {
            if let Some((count, end)) = literal_list(&items, i + 2, close) {
                batched |= count >= 2 || item.is_kw("ARRAY");
                out.push(item.clone());
                out.push(items[i + 1].clone());
                out.push(Item::Lit);
                out.push(Item::Collapsed);
                out.push(items[end].clone());
                i = end + 1;
                continue;
            }
        }
        // `ANY ( lit )` / `ANY ( ARRAY … )`: the batched form of an equality.
        if (item.is_kw("ANY") || item.is_kw("SOME"))
            && items.get(i + 1).is_some_and(|t| t.is_punct("("))
            && matches!(
                items.get(i + 2),
                Some(Item::Lit) | Some(Item::Keyword("ARRAY"))
            )
        {
            batched = true;
        }
        // `VALUES ( lit, … ), ( lit, … ), …`: keep the first row.
        if item.is_kw("VALUES") && items.get(i + 1).is_some_and(|t| t.is_punct("(")) {
            if let Some((arity, end)) = literal_list(&items, i + 2, ")") {
                out.extend_from_slice(&items[i..=end]);
                let mut j = end + 1;
                let mut extra = 0;
                while items.get(j).is_some_and(|t| t.is_punct(","))
                    && items.get(j + 1).is_some_and(|t| t.is_punct("("))
                {
                    match literal_list(&items, j + 2, ")") {
                        Some((n, row_end)) if n == arity => {
                            extra += 1;
                            j = row_end + 1;
                        }
                        _ => break,
                    }
                }
                if extra > 0 {
                    batched = true;
                    out.push(Item::Collapsed);
                }
                i = j;
                continue;
            }
        }
        out.push(item.clone());
        i += 1;
    }
    (out, batched)
}

/// Renders items with canonical spacing and numbered placeholders.
fn render(items: &[Item]) -> (String, usize) {
    let mut text = String::with_capacity(items.len() * 6);
    let mut n = 0usize;
    let mut prev: Option<&Item> = None;
    for item in items {
        let space = match (prev, item) {
            (None, _) => false,
            (_, Item::Collapsed) => true,
            (_, Item::Punct(p)) if matches!(p.as_str(), "," | ")" | "]" | "." | "::" | ";") => {
                false
            }
            // `count(`, `arr[`: no space after a name; `IN (`, `= (`: a space.
            (Some(Item::Ident(_)), Item::Punct(p)) if p == "(" || p == "[" => false,
            (Some(Item::Keyword("ARRAY")), Item::Punct(p)) if p == "[" => false,
            (Some(Item::Keyword("ANY" | "SOME")), Item::Punct(p)) if p == "(" => false,
            (Some(Item::Punct(p)), _) if matches!(p.as_str(), "(" | "[" | "." | "::") => false,
            _ => true,
        };
        if space {
            text.push(' ');
        }
        match item {
            Item::Lit => {
                n += 1;
                text.push('$');
                text.push_str(&n.to_string());
            }
            Item::Keyword(k) => text.push_str(k),
            Item::Ident(s) | Item::Punct(s) => text.push_str(s),
            Item::Collapsed => text.push_str("/*, ... */"),
        }
        prev = Some(item);
    }
    (text, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str) -> String {
        normalize(sql).unwrap().text
    }

    #[test]
    fn literals_become_numbered_placeholders() {
        assert_eq!(
            text("select a from t where x = -5 and y = 'it''s' and z = $7 and w > 1.5e3"),
            "SELECT a FROM t WHERE x = $1 AND y = $2 AND z = $3 AND w > $4"
        );
    }

    #[test]
    fn binary_minus_is_kept() {
        assert_eq!(text("SELECT a - 1 FROM t"), "SELECT a - $1 FROM t");
        assert_eq!(text("SELECT (a) - 1 FROM t"), "SELECT (a) - $1 FROM t");
    }

    #[test]
    fn booleans_are_literals_except_after_is() {
        assert_eq!(
            text("SELECT * FROM t WHERE a = true AND b IS NOT FALSE"),
            "SELECT * FROM t WHERE a = $1 AND b IS NOT FALSE"
        );
    }

    #[test]
    fn in_lists_and_arrays_collapse() {
        let one = normalize("SELECT * FROM t WHERE id IN (1)").unwrap();
        let many = normalize("SELECT * FROM t WHERE id IN (1, 2, 3, 4)").unwrap();
        assert_eq!(one.fingerprint, many.fingerprint);
        assert!(!one.batched);
        assert!(many.batched);
        assert_eq!(
            text("SELECT * FROM t WHERE id = ANY(ARRAY[1,2,3])"),
            "SELECT * FROM t WHERE id = ANY(ARRAY[$1 /*, ... */])"
        );
    }

    #[test]
    fn any_is_batched_and_distinct_from_equality() {
        let eq = normalize("SELECT * FROM t WHERE id = $1").unwrap();
        let any = normalize("SELECT * FROM t WHERE id = ANY($1)").unwrap();
        assert_ne!(eq.fingerprint, any.fingerprint);
        assert!(any.batched);
        assert!(!eq.batched);
    }

    #[test]
    fn multi_row_values_collapse() {
        let a = normalize("INSERT INTO t (a, b) VALUES (1, 'x')").unwrap();
        let b = normalize("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')").unwrap();
        assert_eq!(b.text, "INSERT INTO t(a, b) VALUES ($1, $2) /*, ... */");
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(b.batched && !a.batched);
        assert_eq!(a.kind, StatementKind::Insert);
    }

    #[test]
    fn case_quotes_comments_and_semicolon_are_normalized() {
        let a = fingerprint("SELECT \"id\" FROM \"Users\" WHERE id = 1;").unwrap();
        let b = fingerprint("/* c */ select ID\n  from \"Users\"\twhere ID=2 -- x").unwrap();
        assert_eq!(a, b);
        // A quoted mixed-case name is a different table than the folded one.
        assert_ne!(a, fingerprint("SELECT id FROM users WHERE id = 1").unwrap());
    }

    #[test]
    fn text_shape_counts_parameters_and_statements() {
        let s = text_shape("SELECT $2, '$9' FROM t WHERE a = $1;").unwrap();
        assert_eq!(
            s,
            TextShape {
                max_parameter: 2,
                statements: 1
            }
        );
        let s = text_shape("SELECT 1; COMMIT; DROP TABLE t").unwrap();
        assert_eq!(s.statements, 3);
    }

    #[test]
    fn kinds() {
        assert_eq!(
            normalize("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
                .unwrap()
                .kind,
            StatementKind::Delete
        );
        assert_eq!(
            normalize("WITH d AS (SELECT 1) SELECT * FROM d FOR UPDATE")
                .unwrap()
                .kind,
            StatementKind::Select
        );
        assert_eq!(
            normalize("CREATE TABLE x (a int)").unwrap().kind,
            StatementKind::Other
        );
    }

    #[test]
    fn tokenizer_errors_have_positions() {
        match normalize("SELECT 1;\nSELECT 'open") {
            Err(QueryError::Parse { line, column, .. }) => {
                assert_eq!(line, 2);
                assert!(column >= 8, "column {column}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            normalize("  -- only a comment"),
            Err(QueryError::Empty)
        ));
    }
}
