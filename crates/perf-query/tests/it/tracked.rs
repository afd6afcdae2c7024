//! The tracked pool against the real PostgreSQL: N+1 through the wrapper, the batched
//! rewrite cutting round trips, cached reads invalidated by writes through the wrapper.

use std::time::Duration;

use perf_core::clock::ManualClock;
use perf_query::{NPlusOneConfig, NPlusOneDetector, TrackedPool};

use crate::support::TestDb;

async fn setup(prefix: &str) -> TestDb {
    let url = std::env::var("DATABASE_URL").unwrap();
    let db = TestDb::new(&url, prefix, 2).await;
    db.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL);
         CREATE TABLE lines (id serial PRIMARY KEY, order_id int NOT NULL, qty int NOT NULL);
         INSERT INTO orders SELECT i, i % 3 FROM generate_series(1, 20) i;
         INSERT INTO lines (order_id, qty) SELECT 1 + i % 20, i FROM generate_series(1, 100) i;",
    )
    .await;
    db
}

#[tokio::test]
async fn n_plus_one_through_the_wrapper_and_its_batched_rewrite() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("tracked_n1").await;
    // Durations come from a manual clock advanced by nothing: use a zero-duration threshold
    // so the test does not depend on server speed.
    let mut cfg = NPlusOneConfig::default();
    cfg.min_total = Duration::ZERO;
    let tracked = TrackedPool::new(db.pool.clone())
        .with_detector(std::sync::Arc::new(NPlusOneDetector::new(cfg)))
        .with_clock(ManualClock::new().shared());

    let orders = tracked
        .query(
            "req-1",
            "SELECT id FROM orders WHERE customer_id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    let ids: Vec<i32> = orders.iter().map(|r| r.get(0)).collect();
    let mut per_row_lines = 0;
    for id in &ids {
        per_row_lines += tracked
            .query("req-1", "SELECT qty FROM lines WHERE order_id = $1", &[id])
            .await
            .unwrap()
            .len();
    }
    let findings = tracked.detector().findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = &findings[0];
    assert_eq!(f.count as usize, ids.len());
    assert_eq!(f.context, "req-1");
    assert_eq!(f.example, "SELECT qty FROM lines WHERE order_id = $1");
    let rewrite = f.batched_rewrite.clone().unwrap();
    assert_eq!(rewrite, "SELECT qty FROM lines WHERE order_id = ANY($1)");

    // The rewrite returns the same rows in one round trip, and is not reported itself.
    for _ in 0..10 {
        let batched = tracked.query("req-2", &rewrite, &[&ids]).await.unwrap();
        assert_eq!(batched.len(), per_row_lines);
    }
    assert_eq!(tracked.detector().findings().len(), 1);
    db.drop_schema().await;
}

#[tokio::test]
async fn cached_reads_are_invalidated_by_writes_through_the_wrapper() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("tracked_cache").await;
    let tracked = TrackedPool::new(db.pool.clone()).with_result_cache(Default::default());
    let sum_sql = "SELECT sum(qty)::int8 FROM lines WHERE order_id = $1";
    let sum = |rows: &[tokio_postgres::Row]| -> i64 { rows[0].get(0) };

    let first = tracked.query_cached("r", sum_sql, &[&1i32]).await.unwrap();
    let second = tracked.query_cached("r", sum_sql, &[&1i32]).await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "served from the cache"
    );
    let other = tracked.query_cached("r", sum_sql, &[&2i32]).await.unwrap();
    assert_ne!(sum(&first), sum(&other), "parameters are part of the key");
    let orders = tracked
        .query_cached("r", "SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    let cache = tracked.result_cache().unwrap();
    assert_eq!(cache.stats().hits, 1);

    // A write to `lines` through the wrapper drops the results that read `lines` only.
    tracked
        .execute(
            "w",
            "UPDATE lines SET qty = qty + 1000 WHERE order_id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    let fresh = tracked.query_cached("r", sum_sql, &[&1i32]).await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &fresh));
    assert_eq!(sum(&fresh), sum(&first) + 5 * 1000);
    let orders_again = tracked
        .query_cached("r", "SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&orders, &orders_again),
        "orders results survive"
    );

    // INSERT … RETURNING through `query` invalidates too; DDL clears everything.
    tracked
        .query(
            "w",
            "INSERT INTO lines (order_id, qty) VALUES ($1, 1) RETURNING id",
            &[&1i32],
        )
        .await
        .unwrap();
    let after_insert = tracked.query_cached("r", sum_sql, &[&1i32]).await.unwrap();
    assert_eq!(sum(&after_insert), sum(&fresh) + 1);
    tracked
        .execute("w", "CREATE INDEX lines_order ON lines (order_id)", &[])
        .await
        .unwrap();
    assert_eq!(cache.stats().entries, 0);
    db.drop_schema().await;
}
