//! N+1 detection over fed events: thresholds, sequences, the batched form, bounded memory.

use std::time::Duration;

use perf_query::{NPlusOneConfig, NPlusOneDetector};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn reported_at_both_thresholds_once_with_latest_count() {
    let d = NPlusOneDetector::new(NPlusOneConfig::default());
    // Four fast repeats: below the count threshold.
    for id in 0..4 {
        let r = d
            .record(
                &format!("SELECT * FROM items WHERE cart_id = {id}"),
                "req",
                ms(30),
            )
            .unwrap();
        assert!(r.is_none());
    }
    // The fifth crosses both (5 repeats, 150 ms).
    let f = d
        .record("SELECT * FROM items WHERE cart_id = 99", "req", ms(30))
        .unwrap()
        .unwrap();
    assert_eq!(f.count, 5);
    assert_eq!(f.total, ms(150));
    assert_eq!(f.context, "req");
    assert_eq!(f.example, "SELECT * FROM items WHERE cart_id = $1");
    assert_eq!(
        f.batched_rewrite.as_deref(),
        Some("SELECT * FROM items WHERE cart_id = ANY($1)")
    );
    // Later repeats update the same finding instead of adding new ones.
    for id in 0..5 {
        assert!(d
            .record(
                &format!("SELECT * FROM items WHERE cart_id = {id}"),
                "req",
                ms(1)
            )
            .unwrap()
            .is_none());
    }
    let all = d.findings();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].count, 10);
    assert!((all[0].query_reduction() - 0.9).abs() < 1e-9);
}

#[test]
fn duration_threshold_and_contexts_are_separate() {
    let d = NPlusOneDetector::new(NPlusOneConfig::default());
    // 20 repeats of 1 ms: 20 ms total, under 50 ms.
    for id in 0..20 {
        d.record(&format!("SELECT * FROM t WHERE id = {id}"), "fast", ms(1))
            .unwrap();
    }
    assert!(d.findings().is_empty());
    // Interleaved contexts: each has 3 repeats only.
    for id in 0..3 {
        d.record(&format!("SELECT * FROM t WHERE id = {id}"), "a", ms(40))
            .unwrap();
        d.record(&format!("SELECT * FROM t WHERE id = {id}"), "b", ms(40))
            .unwrap();
    }
    assert!(d.findings().is_empty());
}

#[test]
fn loop_bodies_with_a_few_statements_are_one_sequence_but_long_gaps_break_it() {
    let d = NPlusOneDetector::new(NPlusOneConfig::default());
    for id in 0..6 {
        d.record(
            &format!("SELECT * FROM orders WHERE id = {id}"),
            "loop",
            ms(10),
        )
        .unwrap();
        d.record(
            &format!("SELECT * FROM lines WHERE order_id = {id}"),
            "loop",
            ms(10),
        )
        .unwrap();
    }
    let shapes: Vec<String> = d.findings().into_iter().map(|f| f.example).collect();
    assert_eq!(shapes.len(), 2, "{shapes:?}");

    let d = NPlusOneDetector::new(NPlusOneConfig::default());
    for id in 0..6 {
        d.record(
            &format!("SELECT * FROM orders WHERE id = {id}"),
            "gaps",
            ms(20),
        )
        .unwrap();
        for other in 0..4 {
            d.record(&format!("SELECT {other} FROM t{other}"), "gaps", ms(1))
                .unwrap();
        }
    }
    assert!(
        d.findings().iter().all(|f| !f.example.contains("orders")),
        "{:?}",
        d.findings()
    );
}

#[test]
fn the_batched_rewrite_is_never_reported() {
    let d = NPlusOneDetector::new(NPlusOneConfig::default());
    for _ in 0..50 {
        d.record("SELECT * FROM items WHERE cart_id = ANY($1)", "req", ms(20))
            .unwrap();
        d.record(
            "SELECT * FROM items WHERE cart_id IN (1, 2, 3)",
            "req",
            ms(20),
        )
        .unwrap();
    }
    assert!(d.findings().is_empty(), "{:?}", d.findings());
    // The single-element IN list is the per-row form, though it shares the IN-list
    // fingerprint, and its rewrite is the ANY form.
    for id in 0..5 {
        d.record(
            &format!("SELECT * FROM items WHERE cart_id IN ({id})"),
            "req2",
            ms(20),
        )
        .unwrap();
    }
    let f = &d.findings()[0];
    assert_eq!(
        f.batched_rewrite.as_deref(),
        Some("SELECT * FROM items WHERE cart_id = ANY($1)")
    );
}

#[test]
fn memory_is_bounded() {
    let mut cfg = NPlusOneConfig::default();
    cfg.max_contexts = 100;
    cfg.max_findings = 10;
    let d = NPlusOneDetector::new(cfg);
    for ctx in 0..1000 {
        for id in 0..5 {
            d.record(
                &format!("SELECT * FROM t WHERE id = {id}"),
                &format!("c{ctx}"),
                ms(20),
            )
            .unwrap();
        }
    }
    assert_eq!(d.tracked_contexts(), 100);
    assert_eq!(d.findings().len(), 10);
    assert_eq!(d.dropped_findings(), 990);
    d.finish_context("c999");
    assert_eq!(d.tracked_contexts(), 99);
}

#[test]
fn disabled_records_nothing() {
    let mut cfg = NPlusOneConfig::from(&perf_core::config::QueryConfig::default());
    assert_eq!((cfg.min_repeats, cfg.min_total), (5, ms(50)));
    cfg.enabled = false;
    let d = NPlusOneDetector::new(cfg);
    for id in 0..10 {
        d.record(&format!("SELECT * FROM t WHERE id = {id}"), "x", ms(20))
            .unwrap();
    }
    assert!(d.findings().is_empty());
    assert_eq!(d.tracked_contexts(), 0);
}
