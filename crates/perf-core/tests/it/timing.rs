//! Timing guards and wrappers, measured with the manual clock.

use std::time::Duration;

use perf_core::clock::{ManualClock, SharedClock};
use perf_core::metrics::MetricsRegistry;
use perf_core::timing::Operation;

#[test]
fn guard_records_the_clock_duration_and_outcome() {
    let registry = MetricsRegistry::new();
    let op = Operation::new(&registry, "embed");
    let clock = ManualClock::new();
    let shared: SharedClock = clock.shared();

    let guard = op.start_with(&shared);
    clock.advance(Duration::from_millis(250));
    guard.success();

    let guard = op.start_with(&shared);
    clock.advance(Duration::from_millis(750));
    drop(guard); // not finished: counted as a failure

    let s = registry.snapshot();
    let h = &s.histograms["embed"];
    assert_eq!(h.count, 2);
    assert_eq!(h.min, 250_000_000);
    assert_eq!(h.max, 750_000_000);
    assert_eq!(s.counters["embed_success_total"], 1);
    assert_eq!(s.counters["embed_failure_total"], 1);
}

#[tokio::test]
async fn async_track_records_errors_and_cancellation() {
    let registry = MetricsRegistry::new();
    let op = Operation::new(&registry, "call");
    let ok: Result<u8, String> = op.track(async { Ok(1) }).await;
    let err: Result<u8, String> = op.track(async { Err("boom".to_owned()) }).await;
    assert_eq!(ok, Ok(1));
    assert!(err.is_err());

    // A future dropped before completion is a failure.
    let clock = ManualClock::new();
    let never = op.track(async move {
        clock.shared().sleep(Duration::from_secs(60)).await;
        Ok::<(), ()>(())
    });
    let cancelled = tokio::time::timeout(Duration::from_millis(1), never).await;
    assert!(cancelled.is_err());

    let s = registry.snapshot();
    assert_eq!(s.histograms["call"].count, 3);
    assert_eq!(s.counters["call_success_total"], 1);
    assert_eq!(s.counters["call_failure_total"], 2);
}

#[test]
fn sync_track_with_option_and_bool_outcomes() {
    let registry = MetricsRegistry::new();
    let op = Operation::new(&registry, "lookup");
    assert_eq!(op.track_sync(|| Some(3)), Some(3));
    assert_eq!(op.track_sync(|| None::<u8>), None);
    assert!(!op.track_sync(|| false));
    op.track_sync(|| ());
    let s = registry.snapshot();
    assert_eq!(s.counters["lookup_success_total"], 2);
    assert_eq!(s.counters["lookup_failure_total"], 2);
}

#[test]
fn global_helpers_record_into_the_global_registry() {
    let name = "perf_core_it_global_helper";
    let _ = perf_core::timing::track_sync(name, || Ok::<_, ()>(()));
    let s = MetricsRegistry::global().snapshot();
    assert_eq!(s.counters[&format!("{name}_success_total")], 1);
}
