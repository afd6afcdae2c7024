//! The one error type of perf-query.

/// Everything that can go wrong in perf-query.
///
/// Variants say what failed and with what input. SQL text is never part of a message (it may
/// carry user data); positions are, so a caller can point at the offending spot. The enum is
/// `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The SQL text could not be tokenized or parsed.
    #[error("SQL syntax error at line {line}, column {column}: {message}")]
    Parse {
        /// What the tokenizer or parser reported, without the position suffix.
        message: String,
        /// 1-based line of the error (0 when the parser gave no position).
        line: u64,
        /// 1-based column of the error (0 when the parser gave no position).
        column: u64,
    },
    /// The text held no SQL statement.
    #[error("no SQL statement in the input")]
    Empty,
    /// The text held more than one statement where exactly one is needed.
    #[error("expected one SQL statement, found {count}")]
    MultipleStatements {
        /// How many statements were found.
        count: usize,
    },
    /// The EXPLAIN output did not have the documented JSON shape.
    #[error("unexpected EXPLAIN JSON: {reason}")]
    PlanFormat {
        /// What was missing or malformed.
        reason: String,
    },
    /// A configuration value is not allowed.
    #[error("invalid perf-query setting {field} = {value}: {reason}")]
    Config {
        /// The setting's name.
        field: &'static str,
        /// The offending value as written.
        value: String,
        /// Why it is not allowed.
        reason: &'static str,
    },
    /// A PostgreSQL extension the operation needs is not available.
    #[error("PostgreSQL extension {extension} is not available: {hint}")]
    ExtensionMissing {
        /// The extension's name.
        extension: &'static str,
        /// How to enable it.
        hint: String,
    },
    /// The server refused or failed a statement.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL error during {during}: {source}")]
    Postgres {
        /// What perf-query was doing (never the SQL text).
        during: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection could be taken from the pool.
    #[cfg(feature = "postgres")]
    #[error("cannot get a PostgreSQL connection from the pool: {source}")]
    Pool {
        /// The pool's error.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The pool could not be built from the given configuration.
    #[cfg(feature = "postgres")]
    #[error("cannot build the PostgreSQL pool: {reason}")]
    PoolBuild {
        /// What deadpool reported.
        reason: String,
    },
    /// The statement ran longer than the configured `statement_timeout`.
    #[error("statement cancelled after the {timeout_ms} ms statement_timeout")]
    Timeout {
        /// The timeout that applied, in milliseconds.
        timeout_ms: u64,
    },
    /// The analysis refused an input by design (for example a table too large to build a real
    /// index on inside a rolled-back transaction).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// A value of a cached result could not be read as the requested type.
    #[cfg(feature = "postgres")]
    #[error("cannot read row {row}, column {column} of a cached result: {reason}")]
    Decode {
        /// The row.
        row: usize,
        /// The column.
        column: usize,
        /// Why (never the value).
        reason: String,
    },
    /// The shared result cache's tier could not be set up.
    #[cfg(feature = "shared-cache")]
    #[error(transparent)]
    Cache(#[from] perf_cache::Error),
    /// A failure of a perf-core facility (metrics, resources, config).
    #[error(transparent)]
    Core(#[from] perf_core::Error),
}

/// `Result` with [`QueryError`].
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
    /// Builds a [`QueryError::Parse`] from sqlparser's message, which ends with
    /// ` at Line: L, Column: C` when the parser knows the position.
    pub(crate) fn from_parser_message(msg: &str) -> Self {
        let (message, line, column) = split_location(msg);
        QueryError::Parse {
            message: redact_found(message),
            line,
            column,
        }
    }

    /// Wraps a driver error, recognizing the statement-timeout cancellation (SQLSTATE 57014).
    #[cfg(feature = "postgres")]
    pub(crate) fn pg(during: &'static str, timeout_ms: u64, source: tokio_postgres::Error) -> Self {
        if source.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
            return QueryError::Timeout { timeout_ms };
        }
        if let Some(db) = source.as_db_error() {
            if db.code() == &tokio_postgres::error::SqlState::SYNTAX_ERROR {
                // PostgreSQL reports a 1-based character offset; turn it into line/column
                // against the statement is not possible here (no text), so keep the offset.
                if let Some(tokio_postgres::error::ErrorPosition::Original(pos)) = db.position() {
                    return QueryError::Parse {
                        message: db.message().to_string(),
                        line: 0,
                        column: u64::from(*pos),
                    };
                }
            }
        }
        QueryError::Postgres { during, source }
    }
}

/// Replaces a literal the parser quotes after `found: ` (a string or a number from the user's
/// SQL) with `<literal>`, so error messages never carry data.
fn redact_found(message: &str) -> String {
    if let Some(idx) = message.find("found: ") {
        let rest = &message[idx + "found: ".len()..];
        let first = rest.chars().next().unwrap_or(' ');
        if first == '\''
            || first == '$'
            || first == 'E' && rest.starts_with("E'")
            || first.is_ascii_digit()
        {
            return format!("{}found: <literal>", &message[..idx]);
        }
    }
    message.to_string()
}

/// Splits sqlparser's ` at Line: L, Column: C` suffix off a message.
fn split_location(msg: &str) -> (&str, u64, u64) {
    let Some(idx) = msg.rfind(" at Line: ") else {
        return (msg, 0, 0);
    };
    let rest = &msg[idx + " at Line: ".len()..];
    let mut parts = rest.splitn(2, ", Column: ");
    let line = parts.next().and_then(|l| l.trim().parse().ok());
    let column = parts.next().and_then(|c| c.trim().parse().ok());
    match (line, column) {
        (Some(line), Some(column)) => (&msg[..idx], line, column),
        _ => (msg, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_suffix_is_split_off() {
        let e = QueryError::from_parser_message(
            "Expected: end of statement, found: x at Line: 2, Column: 7",
        );
        match e {
            QueryError::Parse {
                message,
                line,
                column,
            } => {
                assert_eq!(message, "Expected: end of statement, found: x");
                assert_eq!((line, column), (2, 7));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = QueryError::from_parser_message(
            "Expected: end of statement, found: 'secret' at Line: 1, Column: 30",
        );
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = QueryError::from_parser_message("recursion limit exceeded");
        assert!(matches!(
            e,
            QueryError::Parse {
                line: 0,
                column: 0,
                ..
            }
        ));
    }
}
