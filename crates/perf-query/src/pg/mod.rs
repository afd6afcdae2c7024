//! Everything that talks to a live PostgreSQL server (feature `postgres`): the pool and
//! rolled-back-transaction helpers, the explainer, the index advisor's what-if costing and
//! its workload mode, the tracked client, catalog readers, and (feature `shared-cache`) the
//! result cache shared through perf-cache's L2.

pub(crate) mod advisor;
pub(crate) mod catalog;
pub(crate) mod explain;
#[cfg(feature = "shared-cache")]
pub(crate) mod shared;
pub(crate) mod stats;
pub(crate) mod tracked;
pub(crate) mod workload;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use serde_json::Value as Json;

use crate::error::{QueryError, Result};

/// Builds a connection pool (no TLS) for `url` with at most `max_size` connections.
///
/// ```no_run
/// # async fn demo() -> perf_query::Result<()> {
/// let pool = perf_query::connect_pool("postgres://postgres@127.0.0.1:5432/test", 4)?;
/// let client = pool.get().await.map_err(|source| perf_query::QueryError::Pool { source })?;
/// # let _ = client; Ok(()) }
/// ```
///
/// # Errors
///
/// [`QueryError::PoolBuild`] when the URL does not parse or the pool cannot be built.
pub fn connect_pool(url: &str, max_size: usize) -> Result<Pool> {
    let pg_config: tokio_postgres::Config =
        url.parse()
            .map_err(|e: tokio_postgres::Error| QueryError::PoolBuild {
                reason: format!("invalid connection URL: {e}"),
            })?;
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size.max(1))
        .build()
        .map_err(|e| QueryError::PoolBuild {
            reason: e.to_string(),
        })
}

/// A connection from `pool`, the pool's error typed.
pub(crate) async fn pooled(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get()
        .await
        .map_err(|source| QueryError::Pool { source })
}

/// Runs `body` inside a transaction on a pooled connection and always rolls it back — also
/// when `body` fails (and when the future is dropped: tokio-postgres queues the `ROLLBACK`
/// before the connection can be reused). The error of `body` wins over a failed rollback,
/// which leaves the connection broken so the pool discards it.
pub(crate) async fn rolled_back<T>(
    pool: &Pool,
    timeout_ms: u64,
    body: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut client = pooled(pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| QueryError::pg("BEGIN", timeout_ms, e))?;
    let result = body(&tx).await;
    let rolled_back = tx.rollback().await;
    let value = result?;
    rolled_back.map_err(|e| QueryError::pg("ROLLBACK", timeout_ms, e))?;
    Ok(value)
}

/// Name of the prepared statement used for generic plans.
const PREPARED: &str = "perfkit_explain_generic";

/// Runs `EXPLAIN (<opts>)` of `sql` on `tx` and returns its JSON. With `generic`, the
/// statement's `parameters` placeholders get no values: it is prepared and explained as a
/// generic plan (`plan_cache_mode = force_generic_plan`), re-prepared on every call so a
/// changed index set is seen. `sql` must hold exactly one statement (callers check).
pub(crate) async fn explain_json(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    opts: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    generic: Option<usize>,
    timeout_ms: u64,
) -> Result<Json> {
    match generic {
        Some(parameters) => {
            // PREPARE is session-level and not undone by ROLLBACK: drop a leftover of a
            // cancelled call first, and deallocate before leaving.
            let leftover = tx
                .query_opt(
                    "SELECT 1 FROM pg_prepared_statements WHERE name = $1",
                    &[&PREPARED],
                )
                .await
                .map_err(|e| QueryError::pg("pg_prepared_statements", timeout_ms, e))?;
            if leftover.is_some() {
                tx.batch_execute(&format!("DEALLOCATE {PREPARED}"))
                    .await
                    .map_err(|e| QueryError::pg("DEALLOCATE", timeout_ms, e))?;
            }
            tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
                .await
                .map_err(|e| QueryError::pg("SET LOCAL plan_cache_mode", timeout_ms, e))?;
            let prefix = format!("PREPARE {PREPARED} AS ");
            tx.batch_execute(&format!("{prefix}{sql}"))
                .await
                .map_err(|e| {
                    locate(
                        QueryError::pg("PREPARE", timeout_ms, e),
                        prefix.chars().count(),
                        sql,
                    )
                })?;
            let nulls = vec!["NULL"; parameters].join(", ");
            let row = tx
                .query_one(
                    &format!("EXPLAIN ({opts}) EXECUTE {PREPARED}({nulls})"),
                    &[],
                )
                .await
                .map_err(|e| QueryError::pg("EXPLAIN EXECUTE", timeout_ms, e));
            let _ = tx.batch_execute(&format!("DEALLOCATE {PREPARED}")).await;
            row?.try_get(0)
                .map_err(|e| QueryError::pg("reading EXPLAIN output", timeout_ms, e))
        }
        None => {
            let prefix = format!("EXPLAIN ({opts}) ");
            let row = tx
                .query_one(&format!("{prefix}{sql}"), params)
                .await
                .map_err(|e| {
                    locate(
                        QueryError::pg("EXPLAIN", timeout_ms, e),
                        prefix.chars().count(),
                        sql,
                    )
                })?;
            row.try_get(0)
                .map_err(|e| QueryError::pg("reading EXPLAIN output", timeout_ms, e))
        }
    }
}

/// Turns the server's 1-based character offset into the wrapped text (stored in `column`
/// with `line` 0 by [`QueryError::pg`]) into line and column of `sql`.
fn locate(err: QueryError, prefix_chars: usize, sql: &str) -> QueryError {
    match err {
        QueryError::Parse {
            message,
            line: 0,
            column,
        } if column as usize > prefix_chars => {
            let offset = column as usize - prefix_chars - 1;
            let (mut line, mut col) = (1u64, 1u64);
            for ch in sql.chars().take(offset) {
                if ch == '\n' {
                    line += 1;
                    col = 1;
                } else {
                    col += 1;
                }
            }
            QueryError::Parse {
                message,
                line,
                column: col,
            }
        }
        other => other,
    }
}
