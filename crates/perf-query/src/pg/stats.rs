//! Readers of server statistics: `pg_stat_statements` (top statements by total or mean time,
//! calls, rows) and `pg_settings`.

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;

use crate::error::{QueryError, Result};
use crate::fingerprint::redact_or_marker;
use crate::pg::pooled;
use crate::report::{StatementStat, TopBy};
use crate::settings::{PgSetting, ADVISED_SETTINGS};

/// How to enable `pg_stat_statements`.
pub const PG_STAT_STATEMENTS_HINT: &str = "add pg_stat_statements to shared_preload_libraries in postgresql.conf (ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'), restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements in this database";

/// The top `limit` statements of `pg_stat_statements` by `by`, literals redacted.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> perf_query::Result<()> {
/// for s in perf_query::top_statements(&pool, perf_query::TopBy::TotalTime, 10).await? {
///     println!("{:>10.1} ms {:>8} calls  {}", s.total_ms, s.calls, s.query);
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`QueryError::ExtensionMissing`] with how to enable it when the extension is not created
/// or not preloaded; pool and driver errors.
pub async fn top_statements(pool: &Pool, by: TopBy, limit: usize) -> Result<Vec<StatementStat>> {
    let client = pooled(pool).await?;
    let schema: Option<String> = client
        .query_opt(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'pg_stat_statements'",
            &[],
        )
        .await
        .map_err(|e| QueryError::pg("reading pg_extension", 0, e))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| QueryError::pg("reading pg_extension", 0, e))?;
    let Some(schema) = schema else {
        return Err(QueryError::ExtensionMissing {
            extension: "pg_stat_statements",
            hint: PG_STAT_STATEMENTS_HINT.to_string(),
        });
    };
    let order = match by {
        TopBy::TotalTime => "total_exec_time",
        TopBy::MeanTime => "mean_exec_time",
        TopBy::Calls => "calls",
        TopBy::Rows => "rows",
    };
    let sql = format!(
        "SELECT queryid, query, calls, total_exec_time, mean_exec_time, rows, \
                shared_blks_hit, shared_blks_read \
           FROM {}.pg_stat_statements \
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
          ORDER BY {order} DESC LIMIT $1",
        crate::sql::quote_ident(&schema)
    );
    let rows = client.query(&sql, &[&(limit as i64)]).await.map_err(|e| {
        if e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) {
            QueryError::ExtensionMissing {
                extension: "pg_stat_statements",
                hint: PG_STAT_STATEMENTS_HINT.to_string(),
            }
        } else {
            QueryError::pg("reading pg_stat_statements", 0, e)
        }
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let g = |e| QueryError::pg("reading pg_stat_statements", 0, e);
        let query: String = r.try_get(1).map_err(g)?;
        out.push(StatementStat {
            queryid: r.try_get::<_, Option<i64>>(0).map_err(g)?.unwrap_or(0),
            query: redact_or_marker(&query),
            calls: r.try_get(2).map_err(g)?,
            total_ms: r.try_get(3).map_err(g)?,
            mean_ms: r.try_get(4).map_err(g)?,
            rows: r.try_get(5).map_err(g)?,
            shared_blks_hit: r.try_get(6).map_err(g)?,
            shared_blks_read: r.try_get(7).map_err(g)?,
        });
    }
    Ok(out)
}

/// The settings [`advise_settings`](crate::advise_settings) reads, from `pg_settings`.
///
/// # Errors
///
/// Pool and driver errors.
pub async fn read_settings(pool: &Pool) -> Result<Vec<PgSetting>> {
    let client = pooled(pool).await?;
    let names: Vec<String> = ADVISED_SETTINGS.iter().map(|s| s.to_string()).collect();
    let rows = client
        .query(
            "SELECT name::text, setting::text, unit::text FROM pg_settings WHERE name = ANY($1) ORDER BY name",
            &[&names],
        )
        .await
        .map_err(|e| QueryError::pg("reading pg_settings", 0, e))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let g = |e| QueryError::pg("reading pg_settings", 0, e);
        let name: String = r.try_get(0).map_err(g)?;
        let setting: String = r.try_get(1).map_err(g)?;
        let unit: Option<String> = r.try_get(2).map_err(g)?;
        out.push(PgSetting::new(&name, &setting, unit.as_deref()));
    }
    Ok(out)
}
