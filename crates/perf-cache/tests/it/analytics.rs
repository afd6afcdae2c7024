//! Tests of `perf_cache::analytics`: sliding windows on the manual clock, Space-Saving top-k
//! with its error bound and bounded memory, cold keys, JSON and Prometheus export.

use std::collections::HashMap;
use std::time::Duration;

use perf_cache::analytics::{AnalyticsConfig, AnalyticsSnapshot, CacheAnalytics, KeyEncoding};
use perf_core::clock::ManualClock;

fn with_clock(clock: &ManualClock) -> AnalyticsConfig {
    AnalyticsConfig::default().clock(clock.shared())
}

#[test]
fn windows_roll_over_on_the_manual_clock() {
    let clock = ManualClock::new();
    let a = CacheAnalytics::try_new(with_clock(&clock)).unwrap();
    for _ in 0..10 {
        a.record_hit(b"k");
    }
    clock.advance(Duration::from_secs(30));
    for _ in 0..10 {
        a.record_miss(b"k");
    }
    let s = a.snapshot();
    let counts = |s: &AnalyticsSnapshot| {
        s.windows
            .iter()
            .map(|w| (w.hits, w.misses))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&s), [(10, 10), (10, 10), (10, 10)]);
    assert_eq!(s.windows[0].hit_rate, Some(0.5));

    // t = 61 s: the hits (bucket 0) left the 1-minute window, the misses (t = 30 s) did not.
    clock.advance(Duration::from_secs(31));
    assert_eq!(counts(&a.snapshot()), [(0, 10), (10, 10), (10, 10)]);

    // t = 301 s: the 5-minute window has bucket width 5 s and now starts at bucket 1 (5 s).
    clock.advance(Duration::from_secs(240));
    assert_eq!(counts(&a.snapshot()), [(0, 0), (0, 10), (10, 10)]);

    // New traffic after two hours reuses ring slots left behind by the clock.
    clock.advance(Duration::from_secs(7200));
    a.record_hit(b"k");
    let s = a.snapshot();
    assert_eq!(counts(&s), [(1, 0), (1, 0), (1, 0)]);
    assert_eq!((s.total_hits, s.total_misses), (11, 10));
    assert_eq!(s.windows[1].window_secs, 300.0);
}

#[test]
fn empty_windows_have_no_hit_rate() {
    let a = CacheAnalytics::new(AnalyticsConfig::default());
    let s = a.snapshot();
    assert_eq!(s.hit_rate, None);
    assert!(s.windows.iter().all(|w| w.hit_rate.is_none()));
}

/// A tiny deterministic generator, so the test needs no `rand`.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn space_saving_finds_the_zipf_top_k_with_bounded_memory() {
    const CAPACITY: usize = 4096;
    // Zipf(1): key i (1..=1000) appears 100_000 / i times; then 1M distinct one-off keys.
    let mut stream: Vec<u32> = Vec::new();
    let mut truth: HashMap<u32, u64> = HashMap::new();
    for i in 1..=1000u32 {
        let n = 100_000 / i;
        truth.insert(i, u64::from(n));
        stream.extend(std::iter::repeat_n(i, n as usize));
    }
    stream.extend(1_001..1_001 + 1_000_000u32);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in (1..stream.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        stream.swap(i, j);
    }
    let a = CacheAnalytics::try_new(
        AnalyticsConfig::default()
            .capacity(CAPACITY)
            .report_limit(10),
    )
    .unwrap();
    for (n, id) in stream.iter().enumerate() {
        // A 0xff first byte makes every key invalid UTF-8, so snapshots render it as hex.
        let [b0, b1, b2, b3] = id.to_be_bytes();
        a.record_miss(&[0xff, b0, b1, b2, b3]);
        if n % 100_000 == 0 {
            assert!(a.tracked_keys() <= CAPACITY);
        }
    }
    assert_eq!(a.tracked_keys(), CAPACITY);
    let s = a.snapshot();
    assert_eq!(s.tracked_keys, CAPACITY);
    // N / capacity = 1_748_800 / 4096 < 430, smaller than the gap between the 10th (10_000)
    // and 11th (9_090) true counts: the top 10 are exactly keys 1..=10, in order.
    let ids: Vec<u32> = s
        .hot_keys
        .iter()
        .map(|k| {
            assert_eq!(k.key_encoding, KeyEncoding::Hex);
            u32::from_str_radix(k.key.strip_prefix("ff").unwrap(), 16).unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=10).collect::<Vec<u32>>());
    for (k, id) in s.hot_keys.iter().zip(&ids) {
        let t = truth[id];
        assert!(
            k.guaranteed() <= t && t <= k.count,
            "key {id}: true {t} outside [{}, {}]",
            k.guaranteed(),
            k.count
        );
        assert!(k.error <= stream.len() as u64 / CAPACITY as u64);
    }
}

#[test]
fn memory_stays_bounded_after_a_million_distinct_keys() {
    let a = CacheAnalytics::try_new(AnalyticsConfig::default().capacity(1000)).unwrap();
    for i in 0..1_000_000u32 {
        a.record_hit(&i.to_le_bytes());
    }
    assert_eq!(a.tracked_keys(), 1000);
    assert_eq!(a.snapshot().total_hits, 1_000_000);
}

#[test]
fn cold_keys_are_tracked_keys_idle_past_the_threshold() {
    let clock = ManualClock::new();
    let a = CacheAnalytics::try_new(
        with_clock(&clock)
            .capacity(8)
            .cold_after(Duration::from_secs(60)),
    )
    .unwrap();
    a.record_hit(b"old");
    clock.advance(Duration::from_secs(10));
    a.record_hit(b"older-but-later");
    clock.advance(Duration::from_secs(50));
    a.record_hit(b"fresh");
    let s = a.snapshot();
    let cold: Vec<&str> = s.cold_keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(cold, ["old"]);
    assert_eq!(s.cold_keys[0].idle_secs, 60.0);
    clock.advance(Duration::from_secs(10));
    let s = a.snapshot();
    let cold: Vec<&str> = s.cold_keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(cold, ["old", "older-but-later"]);
}

#[test]
fn hashed_keys_never_report_the_raw_key() {
    let a = CacheAnalytics::try_new(AnalyticsConfig::default().hash_keys(true)).unwrap();
    a.record_hit(b"alice@example.com");
    a.record_miss(b"alice@example.com");
    let s = a.snapshot();
    assert!(s.keys_hashed);
    let k = &s.hot_keys[0];
    assert_eq!(k.key_encoding, KeyEncoding::Blake3);
    assert_eq!(
        k.key,
        perf_core::keys::bytes_key("analytics", b"alice@example.com")
    );
    assert_eq!((k.count, k.hits), (2, 1));
    assert!(!s.to_json().unwrap().contains("alice"));
    assert!(!s.to_prometheus("").contains("alice"));
}

#[test]
fn disabled_analytics_record_nothing() {
    let a = CacheAnalytics::new(AnalyticsConfig::default().enabled(false));
    a.record_hit(b"k");
    let s = a.snapshot();
    assert_eq!((s.total_hits, s.tracked_keys), (0, 0));
}

#[test]
fn invalid_config_is_a_typed_error() {
    let e = CacheAnalytics::try_new(AnalyticsConfig::default().buckets_per_window(0)).unwrap_err();
    assert!(matches!(
        e,
        perf_cache::Error::InvalidConfig {
            field: "buckets_per_window",
            ..
        }
    ));
}

#[test]
fn json_round_trip() {
    let clock = ManualClock::new();
    let a = CacheAnalytics::try_new(with_clock(&clock)).unwrap();
    a.record_hit(b"a");
    a.record_miss(&[0xff, 0x00]);
    clock.advance(Duration::from_secs(3));
    let s = a.snapshot();
    let json = s.to_json().unwrap();
    let back = AnalyticsSnapshot::from_json(&json).unwrap();
    assert_eq!(back, s);
    assert!(back
        .hot_keys
        .iter()
        .any(|k| k.key == "ff00" && k.key_encoding == KeyEncoding::Hex));
    assert!(AnalyticsSnapshot::from_json("{\"nope\":1}").is_err());
}

/// Checks one sample line: `name{label="value",...} number`.
fn assert_sample(line: &str) {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let (series, value) = line.rsplit_once(' ').unwrap();
    assert!(
        value == "NaN" || value.parse::<f64>().is_ok(),
        "bad value in {line:?}"
    );
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, Some(rest.strip_suffix('}').expect("closing brace"))),
        None => (series, None),
    };
    assert!(valid_name(name), "bad name in {line:?}");
    if let Some(mut rest) = labels {
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").expect("label=\"");
            assert!(valid_name(label), "bad label in {line:?}");
            // Find the closing quote, skipping escaped characters.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    (false, '\n') => panic!("raw newline in {line:?}"),
                    _ => {}
                }
            }
            let end = end.expect("closing quote");
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
    }
}

#[test]
fn prometheus_text_is_well_formed() {
    let a = CacheAnalytics::new(AnalyticsConfig::default());
    a.record_hit(b"plain");
    a.record_hit(b"quote\"back\\slash\nnewline");
    a.record_miss(b"plain");
    let text = a.snapshot().to_prometheus("my-app");
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind));
            assert!(typed.insert(name.to_owned()), "duplicate TYPE for {name}");
        } else if !line.starts_with("# HELP ") {
            assert_sample(line);
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(name), "sample before its TYPE: {line:?}");
            assert!(name.starts_with("my_app_"), "{name}");
        }
    }
    assert!(text.contains("my_app_cache_hits_total 2\n"));
    assert!(text.contains("my_app_cache_misses_total 1\n"));
    assert!(text.contains("my_app_cache_window_hits{window=\"60s\"} 2\n"));
    assert!(text.contains("key=\"quote\\\"back\\\\slash\\nnewline\""));
    // Without traffic, ratios are NaN (valid Prometheus), never empty.
    let empty = CacheAnalytics::new(AnalyticsConfig::default())
        .snapshot()
        .to_prometheus("");
    assert!(empty.contains("cache_hit_ratio NaN\n"));
    empty
        .lines()
        .filter(|l| !l.starts_with('#'))
        .for_each(assert_sample);
}

#[test]
fn concurrent_recording_counts_exactly() {
    let a = std::sync::Arc::new(CacheAnalytics::new(AnalyticsConfig::default().capacity(16)));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u32 {
                    a.record(&[t], i % 2 == 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = a.snapshot();
    assert_eq!((s.total_hits, s.total_misses), (20_000, 20_000));
    assert_eq!(s.windows[0].hits + s.windows[0].misses, 40_000);
    assert_eq!(s.hot_keys.len(), 4);
    assert!(s.hot_keys.iter().all(|k| k.count == 10_000 && k.error == 0));
}

/// A tiered cache built with `.analytics(..)` records every read: hits and misses of `get`
/// and `get_many` (also through `get_or_compute`), keys in the bounded sketch.
#[tokio::test]
async fn a_tiered_cache_feeds_its_analytics_on_reads() {
    use std::sync::Arc;

    use perf_cache::l1::Cache;
    use perf_cache::tiered::{TieredCache, WriteOptions};

    let clock = ManualClock::new();
    let analytics = Arc::new(CacheAnalytics::try_new(with_clock(&clock).capacity(16)).unwrap());
    let cache: TieredCache<u64> = TieredCache::builder()
        .l1(Cache::new(16 << 20))
        .analytics(analytics.clone())
        .build();
    assert!(Arc::ptr_eq(cache.analytics().unwrap(), &analytics));
    cache.set(b"hot", 1, WriteOptions::new()).await;
    // Writes are not accesses.
    assert_eq!(
        analytics.snapshot().total_hits + analytics.snapshot().total_misses,
        0
    );
    // More than N / capacity accesses (N = 1,203 here): Space-Saving must keep it.
    for _ in 0..200 {
        assert!(cache.get(b"hot").await.is_some());
    }
    // 1,000 distinct missing keys: counted exactly, held in at most 16 counters.
    for i in 0..1_000u32 {
        assert!(cache.get(format!("cold:{i}").as_bytes()).await.is_none());
    }
    let got = cache.get_many(&[b"hot", b"absent"]).await;
    assert_eq!((got[0].is_some(), got[1].is_some()), (true, false));
    let v = cache
        .get_or_compute(b"computed", WriteOptions::new(), || async {
            Ok::<_, std::io::Error>(7)
        })
        .await
        .unwrap();
    assert_eq!(*v, 7);
    let s = analytics.snapshot();
    // Hits: 200 gets + 1 from get_many. Misses: 1,000 + 1 from get_many + the compute's get.
    assert_eq!((s.total_hits, s.total_misses), (201, 1_002));
    assert_eq!(s.windows[0].hits, 201);
    assert!(s.tracked_keys <= 16, "{} keys tracked", s.tracked_keys);
    assert_eq!(s.hot_keys[0].key, "hot");
    assert!(s.hot_keys[0].guaranteed() >= 1 && s.hot_keys[0].count >= 201);
}

#[tokio::test]
async fn a_tiered_cache_without_analytics_has_none() {
    let cache: perf_cache::tiered::TieredCache<u64> = perf_cache::tiered::TieredCache::builder()
        .l1(perf_cache::l1::Cache::new(1 << 20))
        .build();
    assert!(cache.analytics().is_none());
}
