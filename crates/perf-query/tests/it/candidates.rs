//! Index candidates from parsed statements (no server): key order, ORDER BY … LIMIT,
//! covering, partial, LATERAL; existing-index checks.

use perf_query::{
    analyze, existing_index_findings, generate_candidates, CandidateConfig, ColumnStats,
    ExistingIndexBuilder, IndexFindingKind, TableInfo, TableName,
};

fn defs(sql: &str, tables: &[TableInfo]) -> Vec<String> {
    let a = analyze(sql).unwrap();
    generate_candidates(&a, tables, &CandidateConfig::default())
        .iter()
        .map(|c| c.definition())
        .collect()
}

fn orders() -> TableInfo {
    let mut t = TableInfo::new(
        TableName::qualified("shop", "orders"),
        1e6,
        vec![
            ColumnStats::new("id", "int8", 8, 'd').with_stats(8.0, -1.0, 0.0),
            ColumnStats::new("customer_id", "int4", 4, 'i').with_stats(4.0, 50_000.0, 0.0),
            ColumnStats::new("status", "text", -1, 'i').with_stats(8.0, 4.0, 0.0),
            ColumnStats::new("created_at", "timestamptz", 8, 'd').with_stats(8.0, -0.9, 0.0),
            ColumnStats::new("total", "numeric", -1, 'i').with_stats(7.0, 10_000.0, 0.0),
            ColumnStats::new("shipped_at", "timestamptz", 8, 'd').with_stats(8.0, -0.5, 0.3),
        ],
    );
    t.indexes = vec![ExistingIndexBuilder::new("orders_pkey", &["id"])
        .unique()
        .scans(100)
        .build()];
    t
}

#[test]
fn equality_then_range_and_existing_indexes_skip() {
    let d = defs(
        "SELECT * FROM orders WHERE created_at >= $1 AND customer_id = $2",
        &[orders()],
    );
    assert_eq!(d[0], "ON shop.orders (customer_id, created_at)");
    assert!(d.contains(&"ON shop.orders (created_at)".to_string()));
    // The primary key already serves `id = …`.
    assert!(defs("SELECT * FROM orders WHERE id = $1", &[orders()]).is_empty());
}

#[test]
fn order_by_limit_gets_sort_keys_with_direction() {
    let d = defs(
        "SELECT id FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 10",
        &[orders()],
    );
    assert!(
        d.contains(&"ON shop.orders (customer_id, created_at DESC)".to_string()),
        "{d:?}"
    );
    // Covering variant: the projection's `id` rides along.
    assert!(
        d.contains(&"ON shop.orders (customer_id, created_at DESC) INCLUDE (id)".to_string()),
        "{d:?}"
    );
}

#[test]
fn covering_only_without_star() {
    let d = defs(
        "SELECT total FROM orders WHERE customer_id = $1",
        &[orders()],
    );
    assert!(
        d.contains(&"ON shop.orders (customer_id) INCLUDE (total)".to_string()),
        "{d:?}"
    );
    let d = defs("SELECT * FROM orders WHERE customer_id = $1", &[orders()]);
    assert!(d.iter().all(|x| !x.contains("INCLUDE")), "{d:?}");
}

#[test]
fn partial_indexes_for_constant_low_cardinality_filters() {
    let d = defs(
        "SELECT * FROM orders WHERE status = 'pending' AND created_at < $1",
        &[orders()],
    );
    assert!(
        d.contains(&"ON shop.orders (created_at) WHERE status = 'pending'".to_string()),
        "{d:?}"
    );
    let d = defs(
        "SELECT * FROM orders WHERE shipped_at IS NULL AND customer_id = $1",
        &[orders()],
    );
    assert!(
        d.contains(&"ON shop.orders (customer_id) WHERE shipped_at IS NULL".to_string()),
        "{d:?}"
    );
    // A parameter is no constant: no partial index.
    let d = defs(
        "SELECT * FROM orders WHERE status = $1 AND created_at < $2",
        &[orders()],
    );
    assert!(d.iter().all(|x| !x.contains("WHERE")), "{d:?}");
}

#[test]
fn lateral_join_key_and_inner_order() {
    let d = defs(
        "SELECT c.id, l.total FROM customers c CROSS JOIN LATERAL \
         (SELECT o.total FROM orders o WHERE o.customer_id = c.id ORDER BY o.created_at DESC LIMIT 3) l \
         WHERE c.country = $1",
        &[orders()],
    );
    assert!(
        d.contains(&"ON shop.orders (customer_id, created_at DESC)".to_string()),
        "{d:?}"
    );
    assert!(d.contains(&"ON customers (country)".to_string()), "{d:?}");
}

#[test]
fn quoting_and_create_statement() {
    let t = TableInfo::new(
        TableName::qualified("Sales", "Order Lines"),
        10.0,
        vec![ColumnStats::new("user", "int4", 4, 'i')],
    );
    let a = analyze("SELECT * FROM \"Sales\".\"Order Lines\" WHERE \"user\" = 3").unwrap();
    let c = generate_candidates(&a, &[t], &CandidateConfig::default());
    assert_eq!(
        c[0].create_statement(true),
        "CREATE INDEX CONCURRENTLY order_lines_user_idx ON \"Sales\".\"Order Lines\" (\"user\")"
    );
}

#[test]
fn existing_index_findings_cover_unused_duplicate_prefix() {
    let mut t = orders();
    t.indexes.extend([
        ExistingIndexBuilder::new("o_cust", &["customer_id"])
            .scans(9)
            .build(),
        ExistingIndexBuilder::new("o_cust_created", &["customer_id", "created_at"])
            .scans(3)
            .build(),
        ExistingIndexBuilder::new("o_status", &["status"])
            .scans(0)
            .size_bytes(1 << 20)
            .build(),
        ExistingIndexBuilder::new("o_status_again", &["status"])
            .scans(0)
            .build(),
    ]);
    let f = existing_index_findings(&[t]);
    let got: Vec<(&str, IndexFindingKind)> = f.iter().map(|f| (f.index.as_str(), f.kind)).collect();
    assert_eq!(
        got,
        vec![
            ("o_cust", IndexFindingKind::RedundantPrefix),
            ("o_status", IndexFindingKind::Unused),
            ("o_status_again", IndexFindingKind::Duplicate),
        ]
    );
    assert!(f[1]
        .recommendation
        .starts_with("DROP INDEX CONCURRENTLY shop.o_status"));
}
