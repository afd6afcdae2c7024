//! Catalog readers: [`TableInfo`] (row estimate, columns with `pg_stats`, existing indexes
//! with size and scan counts) for the tables a statement names.

use tokio_postgres::GenericClient;

use crate::advisor::{ColumnStats, ExistingIndex, TableInfo};
use crate::error::{QueryError, Result};
use crate::sql::TableName;

fn pg(during: &'static str) -> impl Fn(tokio_postgres::Error) -> QueryError {
    move |e| QueryError::pg(during, 0, e)
}

/// Reads [`TableInfo`] for `name` (schema-qualified, or resolved through the search path).
/// Returns `None` when no such table is visible.
pub(crate) async fn table_info<C: GenericClient + Sync>(
    client: &C,
    name: &TableName,
) -> Result<Option<TableInfo>> {
    let row = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.reltuples::float8, c.relpages::int8
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'm') AND c.relname = $1
                AND (n.nspname = $2 OR ($2::text IS NULL AND pg_table_is_visible(c.oid)))
              LIMIT 1",
            &[&name.name, &name.schema],
        )
        .await
        .map_err(pg("reading pg_class"))?;
    let Some(row) = row else { return Ok(None) };
    let oid: u32 = row.try_get(0).map_err(pg("reading pg_class"))?;
    let schema: String = row.try_get(1).map_err(pg("reading pg_class"))?;
    let relname: String = row.try_get(2).map_err(pg("reading pg_class"))?;
    let mut rows: f64 = row.try_get(3).map_err(pg("reading pg_class"))?;
    let pages: i64 = row.try_get(4).map_err(pg("reading pg_class"))?;
    if rows < 0.0 {
        // Never analyzed: count, bounded by the size guard callers apply.
        rows = 0.0;
    }
    let cols = client
        .query(
            "SELECT a.attname::text, t.typname::text, t.typlen::int2, t.typalign::text,
                    s.avg_width::float8, s.n_distinct::float8, coalesce(s.null_frac, 0)::float8
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_stats s ON s.schemaname = $2 AND s.tablename = $3 AND s.attname = a.attname
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&oid, &schema, &relname],
        )
        .await
        .map_err(pg("reading pg_attribute"))?;
    let mut columns = Vec::with_capacity(cols.len());
    for r in cols {
        let align: String = r.try_get(3).map_err(pg("reading pg_attribute"))?;
        columns.push(ColumnStats {
            name: r.try_get(0).map_err(pg("reading pg_attribute"))?,
            type_name: r.try_get(1).map_err(pg("reading pg_attribute"))?,
            type_len: r.try_get(2).map_err(pg("reading pg_attribute"))?,
            type_align: align.chars().next().unwrap_or('i'),
            avg_width: r.try_get(4).map_err(pg("reading pg_stats"))?,
            n_distinct: r.try_get(5).map_err(pg("reading pg_stats"))?,
            null_frac: r.try_get(6).map_err(pg("reading pg_stats"))?,
        });
    }
    let idx = client
        .query(
            "SELECT ic.relname::text, i.indisunique, i.indisprimary, i.indpred IS NOT NULL,
                    am.amname::text, i.indnkeyatts::int4,
                    ARRAY(SELECT coalesce(a.attname::text, '(expression)')
                            FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                            LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                           ORDER BY k.ord),
                    pg_relation_size(i.indexrelid)::int8, coalesce(s.idx_scan, 0)::int8,
                    pg_get_indexdef(i.indexrelid)
               FROM pg_index i
               JOIN pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_am am ON am.oid = ic.relam
               LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
              WHERE i.indrelid = $1
              ORDER BY ic.relname",
            &[&oid],
        )
        .await
        .map_err(pg("reading pg_index"))?;
    let mut indexes = Vec::with_capacity(idx.len());
    for r in idx {
        let nkeys: i32 = r.try_get(5).map_err(pg("reading pg_index"))?;
        let mut all: Vec<String> = r.try_get(6).map_err(pg("reading pg_index"))?;
        let include = all.split_off((nkeys.max(0) as usize).min(all.len()));
        let size: i64 = r.try_get(7).map_err(pg("reading pg_index"))?;
        indexes.push(ExistingIndex {
            name: r.try_get(0).map_err(pg("reading pg_index"))?,
            unique: r.try_get(1).map_err(pg("reading pg_index"))?,
            primary: r.try_get(2).map_err(pg("reading pg_index"))?,
            partial: r.try_get(3).map_err(pg("reading pg_index"))?,
            method: r.try_get(4).map_err(pg("reading pg_index"))?,
            columns: all,
            include,
            size_bytes: size.max(0) as u64,
            scans: r.try_get(8).map_err(pg("reading pg_index"))?,
            definition: r.try_get(9).map_err(pg("reading pg_index"))?,
        });
    }
    Ok(Some(TableInfo {
        name: TableName::qualified(schema, relname),
        rows,
        pages: pages.max(0) as u64,
        columns,
        indexes,
    }))
}

/// [`table_info`] of every base table in `schema`.
pub(crate) async fn schema_tables<C: GenericClient + Sync>(
    client: &C,
    schema: &str,
) -> Result<Vec<TableInfo>> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm') ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(pg("listing tables"))?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get(0).map_err(pg("listing tables"))?;
        if let Some(t) = table_info(client, &TableName::qualified(schema, name)).await? {
            out.push(t);
        }
    }
    Ok(out)
}
