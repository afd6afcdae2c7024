//! The shared result cache on the real Redis and PostgreSQL: two tracked pools with caches of
//! their own on one Redis prefix stand for two processes; a write through either makes the
//! other's next read miss and see fresh rows; a Redis outage never fails a read.

use std::sync::Arc;
use std::time::Duration;

use perf_query::{SharedResultCache, TrackedPool};

use crate::support::TestDb;

async fn setup(prefix: &str) -> TestDb {
    let url = std::env::var("DATABASE_URL").unwrap();
    let db = TestDb::new(&url, prefix, 2).await;
    db.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, total bigint NOT NULL);
         CREATE TABLE lines (id serial PRIMARY KEY, order_id int NOT NULL, qty int NOT NULL);
         INSERT INTO orders SELECT i, i % 3, i * 10 FROM generate_series(1, 30) i;
         INSERT INTO lines (order_id, qty) SELECT 1 + i % 30, i FROM generate_series(1, 90) i;",
    )
    .await;
    db
}

const SUM: &str = "SELECT sum(total)::int8 AS s, count(*) AS n FROM orders WHERE customer_id = $1";

async fn sum_of(tracked: &TrackedPool, customer: i32) -> i64 {
    let rows = tracked
        .query_shared("req", SUM, &[&customer])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows.column_index("n"), Some(1));
    rows.try_get::<Option<i64>>(0, 0).unwrap().unwrap_or(0)
}

async fn truth(db: &TestDb, customer: i32) -> i64 {
    db.scalar_i64(&format!(
        "SELECT coalesce(sum(total), 0)::int8 FROM orders WHERE customer_id = {customer}"
    ))
    .await
}

#[tokio::test]
async fn two_processes_share_results_and_invalidations() {
    let _pg = perf_testkit::require_postgres!();
    let redis = perf_testkit::require_redis!();
    let db = setup("shared_two").await;
    let prefix = perf_testkit::unique_name("perf_query_shared");
    let ttl = Duration::from_secs(300);
    let cache_a = Arc::new(SharedResultCache::redis(&redis, &prefix, ttl).unwrap());
    let cache_b = Arc::new(SharedResultCache::redis(&redis, &prefix, ttl).unwrap());
    let a = TrackedPool::new(db.pool.clone()).with_shared_cache(Arc::clone(&cache_a));
    let b = TrackedPool::new(db.another_pool(2)).with_shared_cache(Arc::clone(&cache_b));

    // A reads and stores; B is served A's rows; A again from the tier.
    let first = sum_of(&a, 1).await;
    assert_eq!(first, truth(&db, 1).await);
    assert_eq!((cache_a.stats().misses, cache_a.stats().stores), (1, 1));
    assert_eq!(sum_of(&b, 1).await, first);
    assert_eq!(cache_b.stats().hits, 1, "B is served what A stored");
    assert_eq!(sum_of(&a, 1).await, first);
    assert_eq!(cache_a.stats().hits, 1);
    // Other parameters are other entries.
    assert_eq!(sum_of(&b, 2).await, truth(&db, 2).await);
    assert_eq!(cache_b.stats().misses, 1);

    // A write through B: A's next read misses and sees the new rows.
    let n = b
        .execute(
            "w",
            "UPDATE orders SET total = total + 1000 WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let misses = cache_a.stats().misses;
    let after = sum_of(&a, 1).await;
    assert_eq!(after, first + 1000);
    assert_eq!(after, truth(&db, 1).await);
    assert_eq!(cache_a.stats().misses, misses + 1);
    // ... and B too (it wrote, but holds nothing of its own).
    assert_eq!(sum_of(&b, 1).await, after);
    assert_eq!(cache_b.stats().hits, 2, "B is served A's fresh rows");

    // A write to another table leaves the orders results alone.
    a.execute(
        "w",
        "INSERT INTO lines (order_id, qty) VALUES ($1, 1)",
        &[&1i32],
    )
    .await
    .unwrap();
    let hits = cache_b.stats().hits;
    assert_eq!(sum_of(&b, 1).await, after);
    assert_eq!(cache_b.stats().hits, hits + 1);

    // A write through `query` (RETURNING) and a statement whose tables are unknown (DDL)
    // invalidate too.
    let returned = a
        .query(
            "w",
            "UPDATE orders SET total = total + 1 WHERE id = $1 RETURNING total",
            &[&4i32],
        )
        .await
        .unwrap();
    assert_eq!(returned.len(), 1);
    assert_eq!(sum_of(&b, 1).await, after + 1);
    a.execute(
        "ddl",
        "CREATE INDEX orders_customer ON orders (customer_id)",
        &[],
    )
    .await
    .unwrap();
    let misses = cache_b.stats().misses;
    assert_eq!(sum_of(&b, 1).await, truth(&db, 1).await);
    assert_eq!(
        cache_b.stats().misses,
        misses + 1,
        "DDL invalidated everything"
    );

    // A write that bypasses the wrapper is not seen (documented): the cached rows stay.
    db.exec("UPDATE orders SET total = 0 WHERE id = 1").await;
    assert_eq!(sum_of(&a, 1).await, after + 1);

    assert_eq!(cache_a.stats().errors + cache_b.stats().errors, 0);
    let removed = cache_a.tier().clear().await.unwrap();
    assert!(removed > 0);
    db.drop_schema().await;
}

#[tokio::test]
async fn redis_outage_falls_back_to_the_database() {
    let _pg = perf_testkit::require_postgres!();
    let Some(mut redis) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let db = setup("shared_outage").await;
    let cache = Arc::new(
        SharedResultCache::redis(&redis.url(), "perf_query_outage", Duration::from_secs(300))
            .unwrap(),
    );
    let tracked = TrackedPool::new(db.pool.clone()).with_shared_cache(Arc::clone(&cache));
    let first = sum_of(&tracked, 1).await;
    assert_eq!(sum_of(&tracked, 1).await, first);
    assert_eq!(cache.stats().hits, 1);

    redis.stop().unwrap();
    // Reads and writes go on against the database.
    assert_eq!(sum_of(&tracked, 1).await, first);
    tracked
        .execute(
            "w",
            "UPDATE orders SET total = total + 5 WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(sum_of(&tracked, 1).await, first + 5);
    let stats = cache.stats();
    assert!(stats.errors >= 2, "{stats:?}");
    assert_eq!(stats.pending, 1, "the token replacement is owed: {stats:?}");

    // Back (empty): the owed replacement goes first, then caching resumes. The reconnection
    // takes a few calls; every one of them returns the right rows.
    redis.start_again().unwrap();
    let mut served = false;
    for _ in 0..100 {
        assert_eq!(sum_of(&tracked, 1).await, first + 5);
        if cache.stats().pending == 0 && cache.stats().hits > 1 {
            served = true;
            break;
        }
    }
    assert!(served, "{:?}", cache.stats());
    db.drop_schema().await;
}
