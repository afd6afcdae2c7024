//! Plan analysis against the real PostgreSQL: each detector fires on a purpose-built case and
//! stays quiet on a good plan; ANALYZE of writes leaves data unchanged (also on timeout and
//! cancellation); syntax errors carry their position.

use std::time::Duration;

use perf_query::{
    DetectorConfig, ExplainOptions, Explainer, IssueKind, NodeType, QueryError, Severity,
};

use crate::support::TestDb;

/// `big`: 50k rows; `k` random-ish 0..9999, `a`/`b` perfectly correlated, `k2` ten values,
/// a wide `payload` so sorts and hashes outgrow the default work_mem; `small`: 2000 rows.
async fn setup(prefix: &str, max_size: usize) -> TestDb {
    let url = std::env::var("DATABASE_URL").unwrap();
    let db = TestDb::new(&url, prefix, max_size).await;
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, k int NOT NULL, a int, b int, k2 int, status text, payload text);
         INSERT INTO big SELECT i, (i * 7919) % 10000, i % 100, i % 100, i % 10,
                CASE WHEN i % 5000 = 0 THEN 'rare' ELSE 'common' END, repeat(md5(i::text), 8)
           FROM generate_series(1, 50000) i;
         CREATE INDEX big_k2 ON big (k2);
         CREATE TABLE small (id int PRIMARY KEY, k int NOT NULL);
         INSERT INTO small SELECT i, i * 3 FROM generate_series(1, 2000) i;
         ANALYZE big; ANALYZE small;",
    )
    .await;
    db
}

fn kinds(a: &perf_query::Analysis) -> Vec<IssueKind> {
    a.issues.iter().map(|i| i.kind).collect()
}

#[tokio::test]
async fn detectors_fire_on_their_case_and_not_on_a_good_plan() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("explain_detect", 2).await;
    let ex = Explainer::new(db.pool.clone());

    // A good plan: primary-key lookup.
    let good = ex
        .analyze(
            "SELECT * FROM big WHERE id = 42",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap();
    assert!(good.issues.is_empty(), "{:?}", good.issues);
    assert!(good.plan.analyzed());
    assert!(good.plan.root.buffers.is_some());

    // Selective filter on a large table without an index.
    let seq = ex
        .analyze(
            "SELECT * FROM big WHERE k = 7",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap();
    let issue = seq
        .issues
        .iter()
        .find(|i| i.kind == IssueKind::SeqScanSelectiveFilter)
        .unwrap_or_else(|| panic!("{:?}", seq.issues));
    assert_eq!(issue.relation.as_deref(), Some("big"));
    assert!(
        issue
            .recommendation
            .contains("CREATE INDEX CONCURRENTLY ON big (k)"),
        "{}",
        issue.recommendation
    );
    assert!(
        !issue.message.contains(" 7"),
        "literal leaked: {}",
        issue.message
    );
    // Without ANALYZE the table size from pg_class is enough.
    let seq_plan = ex
        .analyze(
            "SELECT * FROM big WHERE k = 7",
            &[],
            &ExplainOptions::plan_only(),
        )
        .await
        .unwrap();
    assert!(kinds(&seq_plan).contains(&IssueKind::SeqScanSelectiveFilter));
    assert_eq!(seq_plan.plan.root.relation_rows, Some(50000.0));

    // Correlated columns: the planner multiplies selectivities and underestimates 100x.
    let mis = ex
        .analyze(
            "SELECT * FROM big WHERE a = 1 AND b = 1",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap();
    let issue = mis
        .issues
        .iter()
        .find(|i| i.kind == IssueKind::RowMisestimate)
        .unwrap();
    assert!(
        issue.message.contains("underestimated"),
        "{}",
        issue.message
    );
    assert!(issue.recommendation.contains("CREATE STATISTICS"));
    assert!(!kinds(&good).contains(&IssueKind::RowMisestimate));

    // Sort and hash spills with the default 4MB work_mem...
    let sort = ex
        .analyze(
            "SELECT * FROM big ORDER BY payload",
            &[],
            &ExplainOptions::analyze().with_setting("work_mem", "1MB"),
        )
        .await
        .unwrap();
    assert!(
        kinds(&sort).contains(&IssueKind::SortSpill),
        "{:?}",
        sort.issues
    );
    let hash = ex
        .analyze(
            "SELECT count(*) FROM big b1 JOIN big b2 ON b1.payload = b2.payload",
            &[],
            &ExplainOptions::analyze()
                .with_setting("work_mem", "1MB")
                .with_setting("max_parallel_workers_per_gather", "0"),
        )
        .await
        .unwrap();
    assert!(
        kinds(&hash).contains(&IssueKind::HashSpill),
        "{:?}",
        hash.issues
    );
    // ...and none with enough memory.
    let sort_ok = ex
        .analyze(
            "SELECT * FROM big ORDER BY payload",
            &[],
            &ExplainOptions::analyze().with_setting("work_mem", "256MB"),
        )
        .await
        .unwrap();
    assert!(
        !kinds(&sort_ok).contains(&IssueKind::SortSpill),
        "{:?}",
        sort_ok.issues
    );

    // Nested loop over 2000 outer rows with an unindexed inner side (plan only: running it
    // would compare 100M row pairs).
    let nl_opts = ExplainOptions::plan_only()
        .with_setting("enable_hashjoin", "off")
        .with_setting("enable_mergejoin", "off");
    let nl = ex
        .analyze(
            "SELECT * FROM small s JOIN big b ON b.k = s.k",
            &[],
            &nl_opts,
        )
        .await
        .unwrap();
    let issue = nl
        .issues
        .iter()
        .find(|i| i.kind == IssueKind::NestedLoopManyRows)
        .unwrap_or_else(|| panic!("{:?} {:#?}", nl.issues, nl.plan.root));
    assert_eq!(issue.severity, Severity::High);
    // With an index on the join key, the same nested loop is index lookups: not reported.
    db.exec("CREATE INDEX big_k ON big (k); ANALYZE big").await;
    let nl_ok = ex
        .analyze(
            "SELECT * FROM small s JOIN big b ON b.k = s.k",
            &[],
            &nl_opts,
        )
        .await
        .unwrap();
    assert!(
        !kinds(&nl_ok).contains(&IssueKind::NestedLoopManyRows),
        "{:?}",
        nl_ok.issues
    );
    // And the selective seq scan is gone.
    let seq_ok = ex
        .analyze(
            "SELECT * FROM big WHERE k = 7",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap();
    assert!(seq_ok.issues.is_empty(), "{:?}", seq_ok.issues);

    // An index scan on a 10-value column whose filter throws away almost everything.
    let idx_opts = ExplainOptions::analyze()
        .with_setting("enable_seqscan", "off")
        .with_setting("enable_bitmapscan", "off");
    let idx = ex
        .analyze(
            "SELECT id FROM big WHERE k2 = 0 AND status = 'rare'",
            &[],
            &idx_opts,
        )
        .await
        .unwrap();
    let issue = idx
        .issues
        .iter()
        .find(|i| i.kind == IssueKind::IndexScanDiscardsRows)
        .unwrap_or_else(|| panic!("{:?}", idx.issues));
    assert!(
        issue.recommendation.contains("(k2, status)"),
        "{}",
        issue.recommendation
    );
    assert!(!issue.message.contains("rare"), "{}", issue.message);

    // Slow threshold.
    let mut cfg = DetectorConfig::default();
    cfg.slow_query_ms = 0.0001;
    let slow_ex = Explainer::new(db.pool.clone()).detector(cfg);
    let slow = slow_ex
        .analyze(
            "SELECT * FROM big WHERE id = 42",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap();
    assert_eq!(kinds(&slow), vec![IssueKind::SlowQuery]);
    assert!(!kinds(&good).contains(&IssueKind::SlowQuery));

    db.drop_schema().await;
}

#[tokio::test]
async fn analyze_of_writes_leaves_data_unchanged() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("explain_writes", 1).await;
    let ex = Explainer::new(db.pool.clone());
    let before = db.scalar_i64("SELECT count(*) + sum(k) FROM big").await;

    let del = ex
        .explain(
            "DELETE FROM big WHERE id <= 25000",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap();
    assert_eq!(del.root.node_type, NodeType::ModifyTable);
    assert_eq!(del.root.operation.as_deref(), Some("Delete"));
    // It really ran: the scan below counted the rows it deleted.
    assert_eq!(del.root.children[0].actual.unwrap().rows, 25000.0);
    ex.explain("UPDATE big SET k = k + 1", &[], &ExplainOptions::analyze())
        .await
        .unwrap();
    let id: i32 = 7;
    ex.explain(
        "DELETE FROM big WHERE id = $1",
        &[&id],
        &ExplainOptions::analyze(),
    )
    .await
    .unwrap();
    assert_eq!(
        db.scalar_i64("SELECT count(*) + sum(k) FROM big").await,
        before
    );

    // Timeout: the server cancels, the error is typed, the data is untouched, and the pooled
    // connection is clean (not left inside a transaction).
    let short = Explainer::new(db.pool.clone()).statement_timeout(Duration::from_millis(50));
    let err = short
        .explain(
            "DELETE FROM big WHERE pg_sleep(0.01) IS NOT NULL",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryError::Timeout { timeout_ms: 50 }),
        "{err:?}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) + sum(k) FROM big").await,
        before
    );

    // Cancellation: drop the future while the DELETE is running (pool of one connection, so
    // the next query reuses it after the queued ROLLBACK).
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        ex.explain(
            "DELETE FROM big WHERE id <= 20 RETURNING pg_sleep(0.1)",
            &[],
            &ExplainOptions::analyze(),
        ),
    )
    .await;
    assert!(cancelled.is_err(), "the explain should still be running");
    // Same (only) connection: had the ROLLBACK not been queued, it would see its own deletes.
    assert_eq!(
        db.scalar_i64("SELECT count(*) + sum(k) FROM big").await,
        before
    );

    db.drop_schema().await;
}

#[tokio::test]
async fn generic_plans_errors_and_refusals() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("explain_errors", 1).await;
    let ex = Explainer::new(db.pool.clone());

    // `$1` without a value: a generic plan, twice (the prepared statement is cleaned up).
    for _ in 0..2 {
        let plan = ex
            .explain(
                "SELECT * FROM big WHERE id = $1",
                &[],
                &ExplainOptions::plan_only(),
            )
            .await
            .unwrap();
        assert_eq!(plan.root.node_type, NodeType::IndexScan);
        assert_eq!(plan.root.index_cond.as_deref(), Some("(id = $1)"));
    }
    let refused = ex
        .explain(
            "SELECT * FROM big WHERE id = $1",
            &[],
            &ExplainOptions::analyze(),
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, QueryError::Refused { .. }), "{refused:?}");

    // Syntax errors carry line and column of the user's text.
    match ex
        .explain(
            "SELECT *\nFROM big\nWHERE id = = 1",
            &[],
            &ExplainOptions::plan_only(),
        )
        .await
    {
        Err(QueryError::Parse { line, column, .. }) => assert_eq!((line, column), (3, 12)),
        other => panic!("{other:?}"),
    }
    // Several statements are refused before anything runs.
    let err = ex
        .explain("SELECT 1; DROP TABLE big", &[], &ExplainOptions::analyze())
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::MultipleStatements { count: 2 }));
    assert_eq!(db.scalar_i64("SELECT count(*) FROM big").await, 50000);

    db.drop_schema().await;
}
