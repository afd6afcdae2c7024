//! Predicted on-disk size of a btree index built by `CREATE INDEX`: tuple widths from column
//! statistics with alignment, posting lists of btree deduplication (PostgreSQL 13+), leaf
//! fill factor, high keys, internal levels and the metapage.
//!
//! The model follows nbtsort.c: leaf pages are filled up to the fill factor; with
//! deduplication, equal keys are merged into posting-list tuples of at most 10 % of a page
//! (`maxpostingsize` during a build); each heap TID in a posting list takes 6 bytes.

use super::{ColumnStats, IndexCandidate, TableInfo};

const BLCKSZ: f64 = 8192.0;
/// Page header (24) + btree special space (16).
const PAGE_OVERHEAD: f64 = 40.0;
/// Line pointer per tuple.
const ITEM_ID: f64 = 4.0;
/// `IndexTupleData`: heap TID (6) + `t_info` (2).
const TUPLE_HEADER: usize = 8;
/// Heap TID size inside a posting list.
const TID: f64 = 6.0;

fn maxalign(n: f64) -> f64 {
    (n / 8.0).ceil() * 8.0
}

/// Size of the key data of one index tuple (header included, MAXALIGNed), from the columns'
/// widths and alignments.
fn tuple_size(columns: &[&ColumnStats]) -> f64 {
    let mut off = TUPLE_HEADER as f64;
    let any_nulls = columns.iter().any(|c| c.null_frac > 0.0);
    if any_nulls {
        // Null bitmap, padded so the data starts aligned.
        off += 4.0;
    }
    for c in columns {
        let width = c.width() * (1.0 - c.null_frac);
        // Short varlena values (1-byte header) need no alignment.
        let align = if c.type_len < 0 && c.width() < 127.0 {
            1.0
        } else {
            c.align() as f64
        };
        off = (off / align).ceil() * align + width;
    }
    maxalign(off)
}

/// Predicted size in bytes of `candidate` built on `table` with `fillfactor` (btree
/// default 90). `None` when a key column is not in the table's statistics. `rows` overrides
/// the row count (e.g. the rows a partial index keeps); `key_distinct` overrides the number
/// of distinct keys, which for several columns is otherwise the product of the columns'
/// `n_distinct` (right for independent columns, too high for correlated ones: the advisor
/// measures it on a sample instead).
///
/// ```
/// use perf_query::{predict_index_size, ColumnStats, IndexCandidate, TableInfo, TableName};
/// let t = TableInfo::new(TableName::new("t"), 1_000_000.0, vec![
///     ColumnStats::new("id", "int4", 4, 'i').with_stats(4.0, -1.0, 0.0),
/// ]);
/// let size = predict_index_size(&IndexCandidate::new(TableName::new("t"), &["id"]), &t, 90, None, None).unwrap();
/// // 1M unique int4 keys: about 22 MB, like a real primary key index.
/// assert!((20_000_000..24_000_000).contains(&size), "{size}");
/// ```
pub fn predict_index_size(
    candidate: &IndexCandidate,
    table: &TableInfo,
    fillfactor: u32,
    rows: Option<f64>,
    key_distinct: Option<f64>,
) -> Option<u64> {
    let keys: Vec<&ColumnStats> = candidate
        .columns
        .iter()
        .map(|c| table.column(&c.name))
        .collect::<Option<Vec<_>>>()?;
    let include: Vec<&ColumnStats> = candidate
        .include
        .iter()
        .map(|c| table.column(c))
        .collect::<Option<Vec<_>>>()?;
    let n = rows.unwrap_or(table.rows).max(0.0);
    let mut all = keys.clone();
    all.extend(include.iter().copied());
    let plain = tuple_size(&all);

    // Deduplication: not with INCLUDE columns, and only for "equalimage" types.
    let dedup = include.is_empty() && keys.iter().all(|c| c.deduplicates());
    let distinct = key_distinct
        .or_else(|| {
            keys.iter()
                .map(|c| c.distinct(table.rows).map(|d| d.min(n.max(1.0))))
                .try_fold(1.0f64, |acc, d| d.map(|d| acc * d))
        })
        .map(|d| d.min(n).max(1.0));
    let leaf_bytes = match (dedup, distinct) {
        (true, Some(d)) if n / d >= 1.5 => {
            let dup = n / d;
            // Build-time posting list limit: 10 % of a page, minus a line pointer.
            let max_posting = (BLCKSZ * 0.10 / 8.0).floor() * 8.0 - ITEM_ID;
            let per_tuple = ((max_posting - plain) / TID).floor().max(1.0);
            // Bytes of one key value with exactly `k` duplicates.
            let value_bytes = |k: f64| {
                let full = (k / per_tuple).floor();
                let rest = k - full * per_tuple;
                let full_bytes = full * (maxalign(plain + per_tuple * TID) + ITEM_ID);
                let rest_bytes = if rest <= 0.0 {
                    0.0
                } else if rest < 2.0 {
                    plain + ITEM_ID
                } else {
                    maxalign(plain + rest * TID) + ITEM_ID
                };
                full_bytes + rest_bytes
            };
            // Values have ⌊dup⌋ or ⌈dup⌉ duplicates: mix the two so a fractional average does
            // not jump over an alignment boundary.
            let lo = dup.floor();
            let frac = dup - lo;
            d * ((1.0 - frac) * value_bytes(lo) + frac * value_bytes(lo + 1.0))
        }
        _ => n * (plain + ITEM_ID),
    };
    let ff = f64::from(fillfactor.clamp(10, 100)) / 100.0;
    // Leaf pages are filled until the free space drops below (1 - fillfactor) of a page;
    // each also carries a high key.
    let usable = BLCKSZ - PAGE_OVERHEAD - BLCKSZ * (1.0 - ff);
    let leaf_pages = (leaf_bytes / (usable - plain - ITEM_ID)).ceil().max(1.0);
    // Internal levels: one downlink (a key tuple) per child page, pages filled to 70 %.
    let key_tuple = tuple_size(&keys) + ITEM_ID;
    let fanout = ((BLCKSZ - PAGE_OVERHEAD) * 0.70 / key_tuple)
        .floor()
        .max(2.0);
    let mut internal = 0.0;
    let mut level = leaf_pages;
    while level > 1.0 {
        level = (level / fanout).ceil();
        internal += level;
    }
    Some(((leaf_pages + internal + 1.0) * BLCKSZ) as u64)
}
