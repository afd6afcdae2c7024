//! The PostgreSQL tier against a real server, each test in its own schema (dropped at the end):
//! table shape, reads, multi-set, expiry and bounded purges, tags, reconnection.

use std::time::Duration;

use perf_cache::postgres::{PostgresTier, PostgresTierConfig};
use perf_cache::tier::{RemoteTier, TierEntry};

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A tier in a fresh schema; drop the schema with [`drop_schema`].
fn tier(url: &str, schema: &str) -> PostgresTier {
    PostgresTier::new(PostgresTierConfig::new(url).schema(schema).purge_batch(100)).unwrap()
}

async fn drop_schema(url: &str, schema: &str) {
    raw(url)
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn table_is_unlogged_with_a_gin_index_and_roundtrips() {
    let url = perf_testkit::require_postgres!();
    let schema = perf_testkit::unique_name("pg_tier");
    let t = tier(&url, &schema);
    let key: &[u8] = b"\x00\xff binary key";
    assert_eq!(t.get(key).await.unwrap(), None);
    t.set(key, b"\xb7value", None, &["a", "b"]).await.unwrap();
    assert_eq!(
        t.get(key).await.unwrap().as_deref(),
        Some(&b"\xb7value"[..])
    );

    let db = raw(&url).await;
    let persistence: i8 = db
        .query_one(
            "SELECT c.relpersistence::\"char\" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'cache_entries'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(persistence as u8, b'u', "the table must be UNLOGGED");
    let gin: i64 = db
        .query_one(
            // From the catalogs, not `pg_indexes`: its `pg_get_indexdef` fails with "could not
            // open relation" when a parallel test drops its own schema mid-scan.
            "SELECT count(*) FROM pg_index i \
             JOIN pg_class ix ON ix.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = ix.relam \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] \
             WHERE n.nspname = $1 AND t.relname = 'cache_entries' AND am.amname = 'gin' \
             AND a.attname = 'tags' AND i.indnatts = 1",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gin, 1);

    // Overwrite, multi-set with a duplicate key (the last one wins), multi-get in order.
    t.set(key, b"v2", Some(Duration::from_secs(60)), &[])
        .await
        .unwrap();
    let entries = [
        TierEntry::new(b"m1", b"1", None),
        TierEntry::new(b"m2", b"2", None).with_tags(&["x"]),
        TierEntry::new(b"m1", b"1b", None),
    ];
    t.mset(&entries).await.unwrap();
    let got = t.mget(&[b"m2", b"nope", key, b"m1"]).await.unwrap();
    assert_eq!(
        got,
        vec![
            Some(b"2".to_vec()),
            None,
            Some(b"v2".to_vec()),
            Some(b"1b".to_vec())
        ]
    );
    assert!(t.delete(b"m1").await.unwrap());
    assert!(!t.delete(b"m1").await.unwrap());
    let s = t.stats().snapshot();
    assert_eq!((s.hits, s.misses, s.errors), (4, 2, 0));
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn expired_rows_are_invisible_and_purged_in_batches() {
    let url = perf_testkit::require_postgres!();
    let schema = perf_testkit::unique_name("pg_purge");
    let t = tier(&url, &schema);
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..250u32)
        .map(|i| (format!("e{i}").into_bytes(), vec![1]))
        .collect();
    let batch: Vec<TierEntry<'_>> = entries
        .iter()
        .map(|(k, v)| TierEntry::new(k, v, Some(Duration::from_millis(1))))
        .collect();
    t.mset(&batch).await.unwrap();
    t.set(b"live", b"v", Some(Duration::from_secs(600)), &[])
        .await
        .unwrap();
    // Server-side time: poll, bounded, until the 1 ms rows are past their expiry.
    let db = raw(&url).await;
    let table = format!("\"{schema}\".cache_entries");
    let mut expired = 0i64;
    for _ in 0..200 {
        expired = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE expires_at <= now()"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if expired == 250 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(expired, 250);
    assert_eq!(
        t.get(b"e0").await.unwrap(),
        None,
        "expired rows are not read"
    );
    // Batches of 100: two full batches only when limited to two.
    assert_eq!(t.purge_expired(2).await.unwrap(), 200);
    assert_eq!(t.purge_expired(10).await.unwrap(), 50);
    let left: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
    assert!(t.get(b"live").await.unwrap().is_some());
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn tags_and_clear() {
    let url = perf_testkit::require_postgres!();
    let schema = perf_testkit::unique_name("pg_tags");
    let t = tier(&url, &schema);
    t.set(b"a", b"1", None, &["users", "eu"]).await.unwrap();
    t.set(b"b", b"2", None, &["users"]).await.unwrap();
    t.set(b"c", b"3", None, &["eu"]).await.unwrap();
    t.set(b"d", b"4", None, &[]).await.unwrap();
    assert_eq!(t.delete_by_tags(&["users"]).await.unwrap(), 2);
    assert_eq!(t.get(b"a").await.unwrap(), None);
    assert!(t.get(b"c").await.unwrap().is_some());
    assert_eq!(t.delete_by_tags(&["eu", "none"]).await.unwrap(), 1);
    assert_eq!(t.clear().await.unwrap(), 1);
    assert_eq!(t.get(b"d").await.unwrap(), None);
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn reconnects_after_a_server_restart() {
    let Some(mut server) = perf_testkit::TempPostgres::start_or_skip() else {
        return;
    };
    let t =
        PostgresTier::new(PostgresTierConfig::new(server.url()).timeout(Duration::from_secs(2)))
            .unwrap();
    t.set(b"k", b"v", None, &[]).await.unwrap();
    server.stop().unwrap();
    assert!(
        t.get(b"k").await.is_err(),
        "a call during the outage fails, typed"
    );
    server.start_again().unwrap();
    let mut back = false;
    for _ in 0..200 {
        if t.set(b"k2", b"v2", None, &[]).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back, "no reconnection within 200 attempts");
    assert_eq!(t.get(b"k2").await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(t.stats().snapshot().errors >= 1);
}

#[tokio::test]
async fn the_purger_runs_on_the_given_clock() {
    let url = perf_testkit::require_postgres!();
    let schema = perf_testkit::unique_name("pg_purger");
    let t = std::sync::Arc::new(tier(&url, &schema));
    t.set(b"gone", b"v", Some(Duration::from_millis(1)), &[])
        .await
        .unwrap();
    t.set(b"kept", b"v", None, &[]).await.unwrap();
    let db = raw(&url).await;
    let count = || async {
        let n: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\".cache_entries"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    // Wait (bounded) for the 1 ms row to be past its expiry on the server.
    for _ in 0..200 {
        if t.get(b"gone").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let clock = perf_core::clock::ManualClock::new();
    let purger = t.spawn_purger(Duration::from_secs(60), clock.shared());
    // Nothing happens until the clock moves.
    for _ in 0..200 {
        if clock.pending_sleeps() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(clock.pending_sleeps(), 1);
    assert_eq!(count().await, 2);
    clock.advance(Duration::from_secs(60));
    let mut purged = false;
    for _ in 0..400 {
        if count().await == 1 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(purged, "the purger did not run after the clock advanced");
    purger.abort();
    drop_schema(&url, &schema).await;
}
