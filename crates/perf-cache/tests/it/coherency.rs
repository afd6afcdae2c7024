//! Cross-process L1 coherency: two managers sharing Redis with separate L1s, foreign messages,
//! and resubscription (with an L1 clear) after a Redis restart.

use std::sync::Arc;
use std::time::Duration;

use perf_cache::coherency::{Coherency, CoherencyConfig, DisconnectPolicy};
use perf_cache::l1::Cache;
use perf_cache::redis::{RedisTier, RedisTierConfig};
use perf_cache::tier::SharedTier;
use perf_cache::tiered::{TieredCache, WriteOptions};

use crate::tiered::until;

/// One "process": a manager with its own L1 and its coherency layer (also used by the
/// cluster tests).
pub(crate) struct Process {
    pub(crate) cache: TieredCache<String>,
    pub(crate) coherency: Coherency,
}

async fn process(url: &str, prefix: &str, policy: DisconnectPolicy) -> Process {
    let config = RedisTierConfig::new(url)
        .prefix(prefix)
        .timeout(Duration::from_millis(300));
    process_with(config, policy).await
}

async fn process_with(config: RedisTierConfig, policy: DisconnectPolicy) -> Process {
    let tier = Arc::new(RedisTier::new(config).unwrap());
    let cache = TieredCache::builder()
        .l1(Cache::new(1 << 20))
        .l2(tier.clone() as SharedTier)
        .build();
    let coherency = Coherency::attach(
        &cache,
        &tier,
        CoherencyConfig::default().on_disconnect(policy),
    )
    .unwrap();
    assert!(coherency.wait_subscribed(Duration::from_secs(5)).await);
    Process { cache, coherency }
}

pub(crate) fn in_l1(p: &Process, key: &[u8]) -> bool {
    p.cache.l1().unwrap().contains_key(key)
}

/// Polls (bounded) until `p` has applied more than `before` messages from other processes.
/// A read that follows a write in another process must wait for it: otherwise the write's
/// invalidation can arrive after the read promoted the new value into L1, and remove it
/// (harmless, one more miss, but not the state a test then asserts).
pub(crate) async fn until_applied(p: &Process, before: u64) {
    until("the other process's invalidation to arrive", async || {
        p.coherency.stats().applied > before
    })
    .await;
}

/// `from` writes `key`; once `to` has applied the write's invalidation, `to` reads the value
/// into its own L1.
pub(crate) async fn write_then_read_elsewhere(
    from: &Process,
    to: &Process,
    key: &[u8],
    value: &str,
    tags: &[&str],
) {
    let before = to.coherency.stats().applied;
    from.cache
        .set(key, value.to_owned(), WriteOptions::new().tags(tags))
        .await;
    until_applied(to, before).await;
    assert_eq!(
        to.cache.get(key).await.as_deref().map(String::as_str),
        Some(value)
    );
    assert!(in_l1(to, key));
}

/// Polls (bounded) until `key` has left `p`'s L1.
pub(crate) async fn until_gone(p: &Process, key: &[u8]) {
    let what = format!("{} to leave the other L1", String::from_utf8_lossy(key));
    until(&what, async || !in_l1(p, key)).await;
}

#[tokio::test]
async fn writes_in_one_process_invalidate_the_others_l1() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("coherency");
    let a = process(&url, &prefix, DisconnectPolicy::KeepServing).await;
    let b = process(&url, &prefix, DisconnectPolicy::KeepServing).await;
    assert_ne!(a.coherency.origin(), b.coherency.origin());

    // Set: B holds v1 in L1, A overwrites, B's copy goes and B reads v2 from L2.
    write_then_read_elsewhere(&a, &b, b"k", "v1", &["t"]).await;
    let mut rounds = 0;
    for i in 0..200u32 {
        let v = format!("v{}", i + 2);
        a.cache
            .set(b"k", v.clone(), WriteOptions::new().tags(&["t"]))
            .await;
        until_gone(&b, b"k").await;
        assert_eq!(b.cache.get(b"k").await.as_deref(), Some(&v));
        rounds += 1;
    }
    // A ignores its own messages and keeps its fresh L1 entry.
    assert!(in_l1(&a, b"k"));
    assert!(a.coherency.stats().own_ignored >= rounds);

    // Delete, tag invalidation and clear travel too.
    assert!(b.cache.get(b"k").await.is_some() && in_l1(&b, b"k"));
    a.cache.delete(b"k").await;
    until_gone(&b, b"k").await;
    write_then_read_elsewhere(&b, &a, b"x", "1", &["grp"]).await;
    b.cache.delete_by_tags(&["grp"]).await;
    until_gone(&a, b"x").await;
    write_then_read_elsewhere(&b, &a, b"y", "1", &[]).await;
    b.cache.clear().await;
    until_gone(&a, b"y").await;

    let s = b.coherency.stats();
    assert!(s.applied > rounds, "{s:?}");
    assert_eq!(
        (s.undecodable, s.publish_errors, s.subscriptions),
        (0, 0, 1)
    );
    eprintln!(
        "coherency staleness over {} invalidations: p50 {} us, p99 {} us, max {} us",
        s.staleness.count,
        s.staleness.p50() / 1_000,
        s.staleness.p99() / 1_000,
        s.staleness.max / 1_000
    );
}

#[tokio::test]
async fn foreign_messages_are_counted_and_ignored() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("coherency_foreign");
    let a = process(&url, &prefix, DisconnectPolicy::KeepServing).await;
    a.cache.set(b"k", "v".into(), WriteOptions::new()).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{prefix}:invalidate"))
        .arg("not ours")
        .query_async(&mut conn)
        .await
        .unwrap();
    for _ in 0..1_000 {
        if a.coherency.stats().undecodable == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(a.coherency.stats().undecodable, 1);
    assert!(in_l1(&a, b"k"), "a foreign message removes nothing");
    a.cache.clear().await;
}

#[tokio::test]
async fn resubscribes_after_a_restart_and_clears_l1() {
    let Some(mut server) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let url = server.url();
    let a = process(&url, "coh", DisconnectPolicy::KeepServing).await;
    let b = process(&url, "coh", DisconnectPolicy::BypassL1).await;
    let before = b.coherency.stats().applied;
    a.cache.set(b"k", "v1".into(), WriteOptions::new()).await;
    until_applied(&b, before).await;
    assert!(b.cache.get(b"k").await.is_some() && in_l1(&b, b"k"));
    assert!(a.cache.get(b"k").await.is_some() && in_l1(&a, b"k"));

    server.stop().unwrap();
    for _ in 0..1_000 {
        if !a.coherency.is_subscribed() && !b.coherency.is_subscribed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!a.coherency.is_subscribed() && !b.coherency.is_subscribed());
    // KeepServing: A still answers from L1 during the outage. BypassL1: B does not use its L1.
    assert_eq!(
        a.cache.get(b"k").await.as_deref().map(String::as_str),
        Some("v1")
    );
    assert_eq!(b.cache.get(b"k").await, None);

    server.start_again().unwrap();
    assert!(a.coherency.wait_subscribed(Duration::from_secs(10)).await);
    assert!(b.coherency.wait_subscribed(Duration::from_secs(10)).await);
    // Both cleared their L1, since invalidations may have been missed.
    assert!(!in_l1(&a, b"k") && !in_l1(&b, b"k"));
    for p in [&a, &b] {
        let s = p.coherency.stats();
        assert_eq!((s.subscriptions, s.l1_clears), (2, 2), "{s:?}");
    }
    // And invalidations flow again, once the L2 connections are back too (the first call on a
    // connection the restart broke fails and triggers its reconnection).
    let mut back = None;
    for _ in 0..300 {
        let before = b.coherency.stats().applied;
        if a.cache
            .set(b"k", "v2".into(), WriteOptions::new())
            .await
            .is_complete()
            && b.cache.get(b"k").await.as_deref().map(String::as_str) == Some("v2")
        {
            back = Some(before);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Some(before) = back else {
        panic!("L2 not back within 300 attempts");
    };
    until_applied(&b, before).await;
    assert!(b.cache.get(b"k").await.is_some() && in_l1(&b, b"k"));
    a.cache.set(b"k", "v3".into(), WriteOptions::new()).await;
    until_gone(&b, b"k").await;
}

#[cfg(feature = "redis-tls")]
#[tokio::test]
async fn invalidations_travel_over_tls() {
    // The subscriber opens a connection of its own: it must use the tier's CA and client
    // certificate too (the server requires one).
    let Some(redis) = perf_testkit::TempRedis::start_tls_or_skip(true) else {
        return;
    };
    let url = redis.tls_url().unwrap();
    let prefix = perf_testkit::unique_name("coherency_tls");
    let config = || {
        RedisTierConfig::new(&url)
            .prefix(&prefix)
            .timeout(Duration::from_secs(2))
            .tls_root_cert(redis.ca_cert())
            .tls_client_cert(redis.client_cert(), redis.client_key())
    };
    let a = process_with(config(), DisconnectPolicy::KeepServing).await;
    let b = process_with(config(), DisconnectPolicy::KeepServing).await;
    let before = b.coherency.stats().applied;
    a.cache.set(b"k", "v1".into(), WriteOptions::new()).await;
    until_applied(&b, before).await;
    assert_eq!(
        b.cache.get(b"k").await.as_deref().map(String::as_str),
        Some("v1")
    );
    assert!(in_l1(&b, b"k"));
    a.cache.set(b"k", "v2".into(), WriteOptions::new()).await;
    until_gone(&b, b"k").await;
    assert_eq!(
        b.cache.get(b"k").await.as_deref().map(String::as_str),
        Some("v2")
    );
}
