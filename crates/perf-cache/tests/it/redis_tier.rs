//! The Redis L2 tier against a real Redis: pipelining, TTL, tag indexes, clear, timeouts, AUTH,
//! URL handling and the fleet lock.

use std::time::Duration;

use perf_cache::redis::{RedisTier, RedisTierConfig};
use perf_cache::tier::{RemoteTier, TierEntry};
use perf_cache::Error;

fn tier(url: &str, prefix: &str) -> RedisTier {
    RedisTier::new(RedisTierConfig::new(url).prefix(prefix)).unwrap()
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &[u8]) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn roundtrip_with_binary_keys_and_default_ttl() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("l2_roundtrip");
    let t = tier(&url, &prefix);
    let key: &[u8] = b"\x00\xff key with spaces\r\n*";
    assert_eq!(t.get(key).await.unwrap(), None);
    t.set(key, b"\xb7value", None, &[]).await.unwrap();
    assert_eq!(
        t.get(key).await.unwrap().as_deref(),
        Some(&b"\xb7value"[..])
    );
    // The default TTL (one hour) is applied on the server.
    let mut conn = raw(&url).await;
    let ms = pttl(&mut conn, &t.storage_key(key)).await;
    assert!(ms > 3_500_000 && ms <= 3_600_000, "pttl {ms}");
    assert!(t.delete(key).await.unwrap());
    assert!(!t.delete(key).await.unwrap());
    assert_eq!(t.get(key).await.unwrap(), None);
    let s = t.stats().snapshot();
    assert_eq!(
        (s.hits, s.misses, s.writes, s.deletes, s.errors),
        (1, 2, 1, 1, 0)
    );
    assert!(s.latency.count >= 6);
    t.clear().await.unwrap();
}

#[tokio::test]
async fn pipelined_mset_and_mget_span_several_batches_in_order() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("l2_pipeline");
    let t = RedisTier::new(RedisTierConfig::new(&url).prefix(&prefix).batch(100)).unwrap();
    let keys: Vec<Vec<u8>> = (0..1_050u32)
        .map(|i| format!("k{i}").into_bytes())
        .collect();
    let values: Vec<Vec<u8>> = (0..1_050u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let entries: Vec<TierEntry<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| TierEntry::new(k, v, Some(Duration::from_secs(60))))
        .collect();
    t.mset(&entries).await.unwrap();
    // Every other key, plus some missing ones, in a scrambled order.
    let mut asked: Vec<Vec<u8>> = keys.iter().step_by(2).rev().cloned().collect();
    asked.push(b"missing-1".to_vec());
    asked.insert(7, b"missing-2".to_vec());
    let refs: Vec<&[u8]> = asked.iter().map(Vec::as_slice).collect();
    let got = t.mget(&refs).await.unwrap();
    assert_eq!(got.len(), asked.len());
    for (k, v) in asked.iter().zip(&got) {
        let want = keys.iter().position(|x| x == k).map(|i| values[i].clone());
        assert_eq!(v, &want, "key {}", String::from_utf8_lossy(k));
    }
    let s = t.stats().snapshot();
    assert_eq!(s.hits, 525);
    assert_eq!(s.misses, 2);
    assert_eq!(s.writes, 1_050);
    assert_eq!(t.clear().await.unwrap(), 1_050);
}

#[tokio::test]
async fn server_side_ttl_expires_values() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("l2_ttl");
    let t = tier(&url, &prefix);
    t.set(b"short", b"v", Some(Duration::from_millis(30)), &[])
        .await
        .unwrap();
    t.set(b"long", b"v", Some(Duration::from_secs(60)), &[])
        .await
        .unwrap();
    let mut conn = raw(&url).await;
    let ms = pttl(&mut conn, &t.storage_key(b"short")).await;
    assert!((0..=30).contains(&ms) || ms == -2, "pttl {ms}");
    // Server-side expiry cannot follow our clock: poll, bounded.
    let mut gone = false;
    for _ in 0..200 {
        if t.get(b"short").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "a 30 ms value was still there after 200 polls");
    assert!(t.get(b"long").await.unwrap().is_some());
    t.clear().await.unwrap();
}

#[tokio::test]
async fn tags_index_members_and_are_cleaned_up() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("l2_tags");
    let t = tier(&url, &prefix);
    let mut conn = raw(&url).await;
    let minute = Some(Duration::from_secs(60));
    t.set(b"a", b"1", minute, &["users", "eu"]).await.unwrap();
    t.set(b"b", b"2", Some(Duration::from_secs(600)), &["users"])
        .await
        .unwrap();
    t.set(b"c", b"3", minute, &["eu"]).await.unwrap();
    t.set(b"d", b"4", minute, &[]).await.unwrap();

    // The index lives as long as its longest member (b: 600 s), not longer than a second more.
    let users = t.tag_key("users");
    let index_ttl = pttl(&mut conn, &users).await;
    let member_ttl = pttl(&mut conn, &t.storage_key(b"b")).await;
    assert!(
        index_ttl >= member_ttl && index_ttl <= member_ttl + 1_100,
        "{index_ttl} vs {member_ttl}"
    );

    // Deleting a key removes it from its tag indexes.
    assert!(t.delete(b"a").await.unwrap());
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(t.tag_key("eu"))
        .arg(t.storage_key(b"a"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(score, None);

    // Invalidating a tag removes its members, and only them, and the index itself.
    assert_eq!(t.delete_by_tags(&["users"]).await.unwrap(), 1);
    assert_eq!(t.get(b"b").await.unwrap(), None);
    assert!(t.get(b"c").await.unwrap().is_some());
    assert!(t.get(b"d").await.unwrap().is_some());
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&users)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    assert_eq!(t.delete_by_tags(&["eu", "nothing"]).await.unwrap(), 1);
    assert_eq!(t.get(b"c").await.unwrap(), None);

    // Expired members are dropped from an index by the next attach.
    t.set(b"e", b"5", Some(Duration::from_millis(5)), &["tmp"])
        .await
        .unwrap();
    let mut pruned = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        t.set(b"f", b"6", minute, &["tmp"]).await.unwrap();
        let n: u64 = redis::cmd("ZCARD")
            .arg(t.tag_key("tmp"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if n == 1 {
            pruned = true;
            break;
        }
    }
    assert!(pruned, "the expired member stayed in the index");
    t.clear().await.unwrap();
}

#[tokio::test]
async fn clear_removes_only_its_own_prefix() {
    let url = perf_testkit::require_redis!();
    let base = perf_testkit::unique_name("l2_clear");
    // Glob characters in a prefix are escaped in SCAN MATCH.
    let mine = tier(&url, &format!("{base}*"));
    let other = tier(&url, &format!("{base}x"));
    for i in 0..1_200u32 {
        mine.set(format!("k{i}").as_bytes(), b"v", None, &["t"])
            .await
            .unwrap();
    }
    other.set(b"k0", b"keep", None, &["t"]).await.unwrap();
    assert_eq!(mine.clear().await.unwrap(), 1_200);
    assert_eq!(mine.get(b"k0").await.unwrap(), None);
    assert_eq!(
        other.get(b"k0").await.unwrap().as_deref(),
        Some(&b"keep"[..])
    );
    let mut conn = raw(&url).await;
    let left: (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{base}\\*:*"))
        .arg("COUNT")
        .arg(100_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.1.is_empty(), "left behind: {}", left.1.len());
    assert_eq!(other.clear().await.unwrap(), 1);
}

#[tokio::test]
async fn a_silent_server_gives_a_counted_timeout() {
    // A TCP server that accepts and never answers: every call must end at its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let t = RedisTier::new(
        RedisTierConfig::new(format!("redis://127.0.0.1:{port}"))
            .prefix("silent")
            .timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let err = t.get(b"k").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                tier: "redis",
                op: "get",
                ..
            }
        ),
        "{err}"
    );
    let err = t.mget(&[b"a", b"b"]).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let s = t.stats().snapshot();
    assert_eq!((s.errors, s.timeouts, s.hits, s.misses), (2, 2, 0, 0));
    hold.abort();
}

#[tokio::test]
async fn auth_from_the_url_is_used() {
    let Some(server) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let mut conn = raw(&server.url()).await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query_async(&mut conn)
        .await
        .unwrap();
    let port = server.port();
    let with = tier(&format!("redis://:s3cret@127.0.0.1:{port}"), "auth");
    with.set(b"k", b"v", None, &[]).await.unwrap();
    assert_eq!(with.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    let without = tier(&format!("redis://127.0.0.1:{port}"), "auth");
    let err = without.get(b"k").await.unwrap_err();
    assert!(
        matches!(err, Error::Remote { .. } | Error::Timeout { .. }),
        "{err}"
    );
    // The password never shows in the tier's debug output.
    assert!(!format!("{with:?}").contains("s3cret"));

    // An ACL user (Redis 6+): user name and password from the URL.
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">app-pw", "~*", "+@all"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let user = tier(&format!("redis://app:app-pw@127.0.0.1:{port}"), "acl");
    user.set(b"k", b"as app", None, &[]).await.unwrap();
    assert_eq!(
        user.get(b"k").await.unwrap().as_deref(),
        Some(&b"as app"[..])
    );
    let whoami: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(whoami.contains("user=app"), "{whoami}");
    let wrong = tier(&format!("redis://app:nope@127.0.0.1:{port}"), "acl");
    assert!(wrong.get(b"k").await.is_err());
    assert!(!format!("{user:?}").contains("app-pw"));
}

#[test]
fn outside_a_runtime_is_a_typed_error() {
    let err = RedisTier::new(RedisTierConfig::new("redis://127.0.0.1:6379")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "runtime",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn unsupported_urls_are_typed_errors() {
    let err = RedisTier::new(RedisTierConfig::new("redis+cluster://a:7000,b:7001")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "l2_url",
                ..
            }
        ),
        "{err}"
    );
    let err = RedisTier::new(RedisTierConfig::new("http://x")).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }));
    let err = RedisTier::new(RedisTierConfig::new("redis://h").prefix("has space")).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "l2_prefix",
            ..
        }
    ));
    let tls = RedisTier::new(RedisTierConfig::new("rediss://:pw@127.0.0.1:6390"));
    if cfg!(feature = "redis-tls") {
        assert!(tls.is_ok());
    } else {
        let err = tls.unwrap_err();
        assert!(err.to_string().contains("redis-tls") && !err.to_string().contains("pw@"));
    }
}

#[tokio::test]
async fn fleet_lock_is_exclusive_and_released_by_token() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("l2_lock");
    let a = tier(&url, &prefix);
    let b = tier(&url, &prefix);
    let ttl = Duration::from_secs(30);
    let held = a.try_lock(b"job", ttl).await.unwrap().unwrap();
    assert!(b.try_lock(b"job", ttl).await.unwrap().is_none());
    assert!(b.is_locked(b"job").await.unwrap());
    assert!(held.release().await.unwrap());
    assert!(!a.is_locked(b"job").await.unwrap());
    // A holder whose lock expired and was taken over does not release the new holder's lock.
    let stale = a
        .try_lock(b"job2", Duration::from_millis(5))
        .await
        .unwrap()
        .unwrap();
    let mut taken = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if let Some(g) = b.try_lock(b"job2", ttl).await.unwrap() {
            taken = Some(g);
            break;
        }
    }
    let taken = taken.expect("the 5 ms lock never expired");
    assert!(!stale.release().await.unwrap());
    assert!(b.is_locked(b"job2").await.unwrap());
    assert!(taken.release().await.unwrap());
}

#[cfg(feature = "redis-tls")]
#[tokio::test]
async fn rediss_urls_connect_with_a_private_ca_and_a_client_certificate() {
    let Some(redis) = perf_testkit::TempRedis::start_tls_or_skip(true) else {
        return;
    };
    let url = redis.tls_url().unwrap();
    let config = |url: &str| {
        RedisTierConfig::new(url)
            .prefix(perf_testkit::unique_name("l2_tls"))
            .timeout(Duration::from_secs(2))
    };
    // The private CA and a client certificate: a round trip over TLS.
    let t = RedisTier::new(
        config(&url)
            .tls_root_cert(redis.ca_cert())
            .tls_client_cert(redis.client_cert(), redis.client_key()),
    )
    .unwrap();
    t.set(b"k", b"over tls", None, &[]).await.unwrap();
    assert_eq!(
        t.get(b"k").await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    // The value is on the server, read back over its plain port.
    let mut plain = raw(&redis.url()).await;
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(t.storage_key(b"k"))
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(&b"over tls"[..]));

    // Each missing piece is refused: a counted error, never a panic.
    let refused = [
        // No client certificate, and the server requires one.
        config(&url).tls_root_cert(redis.ca_cert()),
        // The system's trust store does not know the private CA.
        config(&url).tls_client_cert(redis.client_cert(), redis.client_key()),
        // Plain RESP to the TLS port.
        config(&url.replacen("rediss://", "redis://", 1)),
    ];
    for cfg in refused {
        let what = format!("{cfg:?}");
        let t = RedisTier::new(cfg).unwrap();
        assert!(t.get(b"k").await.is_err(), "{what} was served");
        assert!(t.stats().snapshot().errors >= 1, "{what}");
    }

    // Unreadable or certificate-less CA files and TLS files on a plain URL are configuration
    // errors.
    for cfg in [
        config(&url).tls_root_cert(redis.dir().join("absent.pem")),
        config(&url).tls_root_cert(redis.client_key()),
        config(&redis.url()).tls_root_cert(redis.ca_cert()),
    ] {
        let err = RedisTier::new(cfg).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "tls_root_cert",
                    ..
                }
            ),
            "{err}"
        );
    }
}
