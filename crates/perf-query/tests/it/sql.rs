//! SQL understanding: tables and aliases through subqueries, CTEs and LATERAL; filter classes;
//! joins; ORDER BY / GROUP BY; LIMIT; parse errors with positions.

use perf_query::{analyze, ColumnRef, FilterOp, Limit, QueryError, StatementKind, TableName};

fn col(table: &str, column: &str) -> ColumnRef {
    ColumnRef {
        table: Some(TableName::new(table)),
        column: column.to_string(),
    }
}

fn op_of(a: &perf_query::SqlAnalysis, column: &str) -> FilterOp {
    a.filters
        .iter()
        .find(|f| f.column.column == column)
        .unwrap_or_else(|| panic!("no filter on {column}: {:?}", a.filters))
        .op
}

#[test]
fn operator_classes() {
    let a = analyze(
        "SELECT * FROM orders WHERE customer_id = $1 AND total > 100 AND created_at BETWEEN $2 AND $3 \
         AND status IN ('a', 'b') AND note LIKE 'abc%' AND email LIKE '%x' AND shipped_at IS NULL \
         AND paid_at IS NOT NULL AND region <> 'eu' AND id = ANY($4) AND lower(name) = 'x' AND 5 < qty",
    )
    .unwrap();
    assert_eq!(op_of(&a, "customer_id"), FilterOp::Equality);
    assert_eq!(op_of(&a, "total"), FilterOp::Range);
    assert_eq!(op_of(&a, "created_at"), FilterOp::Range);
    assert_eq!(op_of(&a, "status"), FilterOp::In);
    assert_eq!(op_of(&a, "note"), FilterOp::LikePrefix);
    assert_eq!(op_of(&a, "email"), FilterOp::Other);
    assert_eq!(op_of(&a, "shipped_at"), FilterOp::IsNull);
    assert_eq!(op_of(&a, "paid_at"), FilterOp::IsNotNull);
    assert_eq!(op_of(&a, "region"), FilterOp::Other);
    assert_eq!(op_of(&a, "id"), FilterOp::In);
    assert_eq!(op_of(&a, "qty"), FilterOp::Range);
    // A function of the column is not a plain column filter.
    assert!(a.filters.iter().all(|f| f.column.column != "name"));
    assert!(a
        .filters
        .iter()
        .all(|f| f.column.table == Some(TableName::new("orders"))));
    // The constant is kept for partial indexes but never serialized.
    let status = a
        .filters
        .iter()
        .find(|f| f.column.column == "total")
        .unwrap();
    assert_eq!(status.constant.as_deref(), Some("100"));
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains("100") && !json.contains("abc"), "{json}");
}

#[test]
fn aliases_and_joins_resolve_to_base_tables() {
    let a = analyze(
        "SELECT c.name, sum(l.qty) FROM public.customers AS c \
         JOIN orders o ON o.customer_id = c.id \
         LEFT JOIN order_lines l USING (order_id) \
         WHERE c.country = 'DE' GROUP BY c.name ORDER BY c.name",
    )
    .unwrap();
    assert_eq!(a.kind, Some(StatementKind::Select));
    assert_eq!(a.tables.len(), 3);
    assert_eq!(
        a.tables[0].table,
        TableName::qualified("public", "customers")
    );
    assert_eq!(a.tables[0].alias.as_deref(), Some("c"));
    assert_eq!(a.joins.len(), 2);
    assert_eq!(a.joins[0].left, col("orders", "customer_id"));
    assert_eq!(
        a.joins[0].right,
        ColumnRef {
            table: Some(TableName::qualified("public", "customers")),
            column: "id".into()
        }
    );
    assert!(!a.joins[0].correlated);
    // Two relations on the left of USING: which one has the column is the catalog's call.
    assert_eq!(a.joins[1].left.table, None);
    assert_eq!(a.joins[1].right, col("order_lines", "order_id"));
    assert_eq!(a.group_by.len(), 1);
    assert_eq!(a.order_by.len(), 1);
    assert_eq!(a.order_by[0].column.column, "name");
    assert_eq!(a.limit, None);
}

#[test]
fn ctes_and_derived_tables_are_not_base_tables() {
    let a = analyze(
        "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') \
         SELECT r.id FROM recent r JOIN (SELECT id FROM customers WHERE vip) v ON v.id = r.customer_id \
         WHERE r.total > 10",
    )
    .unwrap();
    let names: Vec<String> = a.table_names().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["customers", "orders"]);
    assert_eq!(op_of(&a, "created_at"), FilterOp::Range);
    let vip = a.filters.iter().find(|f| f.column.column == "vip").unwrap();
    assert_eq!(vip.column, col("customers", "vip"));
    assert_eq!(vip.op, FilterOp::Equality);
    // `r.total` is a column of a CTE, not of a base table: not reported.
    assert!(a.filters.iter().all(|f| f.column.column != "total"));
}

#[test]
fn lateral_join_predicates_are_correlated_joins() {
    let a = analyze(
        "SELECT c.id, last.created_at FROM customers c \
         CROSS JOIN LATERAL (SELECT o.created_at FROM orders o WHERE o.customer_id = c.id \
         ORDER BY o.created_at DESC LIMIT 3) last WHERE c.id < 100",
    )
    .unwrap();
    assert_eq!(a.joins.len(), 1);
    let j = &a.joins[0];
    assert!(j.correlated);
    assert_eq!(j.left, col("orders", "customer_id"));
    assert_eq!(j.right, col("customers", "id"));
    assert_eq!(op_of(&a, "id"), FilterOp::Range);
    // ORDER BY and LIMIT of the outer query only.
    assert!(a.order_by.is_empty());
    assert_eq!(a.limit, None);
    // The LATERAL's own ORDER BY is kept apart, for `(customer_id, created_at DESC)` advice.
    assert_eq!(a.nested_order_by.len(), 1);
    assert_eq!(a.nested_order_by[0].column, col("orders", "created_at"));
    assert!(a.nested_order_by[0].descending);
    assert!(!a.star);
}

#[test]
fn correlated_subquery_in_where() {
    let a = analyze(
        "SELECT * FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.status = 'open')",
    )
    .unwrap();
    assert_eq!(a.joins.len(), 1);
    assert!(a.joins[0].correlated);
    assert_eq!(a.filters[0].column, col("orders", "status"));
}

#[test]
fn order_by_limit_and_unqualified_columns() {
    let a = analyze("SELECT id, created_at AS t FROM events WHERE kind = $1 ORDER BY created_at DESC NULLS LAST, t LIMIT 50").unwrap();
    assert_eq!(a.limit, Some(Limit::Rows(50)));
    assert_eq!(a.order_by.len(), 1, "the alias `t` is not a column");
    assert_eq!(a.order_by[0].column, col("events", "created_at"));
    assert!(a.order_by[0].descending);
    assert_eq!(a.order_by[0].nulls_first, Some(false));
    let a = analyze("SELECT * FROM events ORDER BY id LIMIT $1").unwrap();
    assert_eq!(a.limit, Some(Limit::Parameter));
    let a = analyze("SELECT * FROM events ORDER BY id FETCH FIRST 5 ROWS ONLY").unwrap();
    assert_eq!(a.limit, Some(Limit::Rows(5)));
    // Unqualified column with two tables in scope: left for the catalog to resolve.
    let a = analyze("SELECT * FROM a, b WHERE x = 1").unwrap();
    assert_eq!(a.filters[0].column.table, None);
}

#[test]
fn writes_name_their_tables() {
    let a = analyze("UPDATE orders o SET total = 0 FROM customers c WHERE o.customer_id = c.id AND c.country = $1").unwrap();
    assert_eq!(a.kind, Some(StatementKind::Update));
    assert_eq!(a.written, vec![TableName::new("orders")]);
    assert_eq!(a.filters[0].column, col("customers", "country"));
    let a = analyze("DELETE FROM sessions WHERE expires_at < now()").unwrap();
    assert_eq!(a.kind, Some(StatementKind::Delete));
    assert_eq!(a.written, vec![TableName::new("sessions")]);
    assert_eq!(op_of(&a, "expires_at"), FilterOp::Range);
    let a = analyze("INSERT INTO archive SELECT * FROM orders WHERE created_at < $1").unwrap();
    assert_eq!(a.kind, Some(StatementKind::Insert));
    assert_eq!(a.written, vec![TableName::new("archive")]);
    assert_eq!(a.table_names().len(), 2);
    let a = analyze(
        "WITH gone AS (DELETE FROM carts WHERE id = $1 RETURNING *) SELECT count(*) FROM gone",
    )
    .unwrap();
    assert_eq!(a.kind, Some(StatementKind::Delete));
    assert_eq!(a.written, vec![TableName::new("carts")]);
}

#[test]
fn or_branches_are_marked() {
    let a = analyze("SELECT * FROM t WHERE a = 1 AND (b = 2 OR c > 3)").unwrap();
    let flags: Vec<(String, bool)> = a
        .filters
        .iter()
        .map(|f| (f.column.column.clone(), f.in_disjunction))
        .collect();
    assert_eq!(
        flags,
        vec![("a".into(), false), ("b".into(), true), ("c".into(), true)]
    );
}

#[test]
fn parse_errors_carry_line_and_column() {
    match analyze("SELECT *\nFROM orders\nWHERE id = = 3") {
        Err(QueryError::Parse {
            line,
            column,
            message,
        }) => {
            assert_eq!(line, 3);
            assert!(column >= 10, "column {column}: {message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    match analyze("SELECT 1; SELECT 2") {
        Err(QueryError::MultipleStatements { count: 2 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(analyze("   "), Err(QueryError::Empty)));
    // The error message never echoes a literal.
    let err = analyze("SELECT * FROM t WHERE a = 1 'secret'").unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}
