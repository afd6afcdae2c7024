//! CostTracker: costs, incremental aggregates, day boundaries, bounded history, threads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use perf_core::clock::{Clock, ManualClock};
use perf_cost::{Catalog, CostError, CostTracker, GroupBy, Usage, UsageEvent, Usd};

/// 2026-11-21T23:30:00Z.
fn late_evening() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_303_800)
}

#[test]
fn track_usage_returns_the_cost_and_aggregates() {
    let tracker = CostTracker::new(Catalog::builtin().unwrap());
    let cost = tracker
        .track_usage(
            "gpt-4o",
            1_000_000,
            100_000,
            0,
            Some("alice"),
            Some("search"),
            BTreeMap::new(),
        )
        .unwrap();
    assert_eq!(cost, Usd::from_cents(350));
    tracker
        .track(
            UsageEvent::new("gpt-4o-mini", Usage::new(1_000_000, 0))
                .user("bob")
                .pipeline("search"),
        )
        .unwrap();
    let by_model = tracker.totals_by(GroupBy::Model, None);
    assert_eq!(by_model["gpt-4o"].cost, Usd::from_cents(350));
    assert_eq!(by_model["gpt-4o-mini"].cost, Usd::from_cents(15));
    let by_pipeline = tracker.totals_by(GroupBy::Pipeline, None);
    assert_eq!(by_pipeline["search"].calls, 2);
    assert_eq!(by_pipeline["search"].cost, Usd::from_cents(365));
    assert_eq!(tracker.total().cost, Usd::from_cents(365));
    assert_eq!(tracker.total().input_tokens, 2_000_000);
}

#[test]
fn unknown_model_is_not_recorded() {
    let tracker = CostTracker::new(Catalog::builtin().unwrap());
    let err = tracker
        .track(UsageEvent::new("mystery", Usage::new(1, 1)))
        .unwrap_err();
    assert!(matches!(err, CostError::UnknownModel { .. }));
    assert_eq!(tracker.total().calls, 0);
    assert_eq!(tracker.history_len(), 0);
}

#[test]
fn days_follow_the_configured_time_zone() {
    let clock = ManualClock::starting_at(late_evening());
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let tracker =
        CostTracker::with_options(Catalog::builtin().unwrap(), clock.clone().shared(), tz, 100);
    tracker
        .track(UsageEvent::new("gpt-4o", Usage::new(1000, 0)))
        .unwrap();
    clock.advance(Duration::from_secs(3600)); // 00:30 UTC, 01:30 Berlin
    tracker
        .track(UsageEvent::new("gpt-4o", Usage::new(1000, 0)))
        .unwrap();
    let by_day = tracker.totals_by(GroupBy::Day, None);
    // 23:30 UTC is already 00:30 on the 22nd in Berlin: both calls on the same Berlin day.
    assert_eq!(by_day.keys().collect::<Vec<_>>(), ["2026-11-22"]);
    assert_eq!(by_day["2026-11-22"].calls, 2);

    let utc = CostTracker::with_options(
        Catalog::builtin().unwrap(),
        ManualClock::starting_at(late_evening()).shared(),
        chrono_tz::Tz::UTC,
        100,
    );
    utc.track(UsageEvent::new("gpt-4o", Usage::new(1000, 0)))
        .unwrap();
    assert!(utc.totals_by(GroupBy::Day, None).contains_key("2026-11-21"));
}

#[test]
fn history_is_bounded_but_aggregates_keep_everything() {
    let tracker = CostTracker::with_options(
        Catalog::builtin().unwrap(),
        ManualClock::new().shared(),
        chrono_tz::Tz::UTC,
        10,
    );
    for i in 0..25u64 {
        tracker
            .track(UsageEvent::new("gpt-4o-mini", Usage::new(i + 1, 0)).meta("i", i.to_string()))
            .unwrap();
    }
    let history = tracker.history();
    assert_eq!(history.len(), 10);
    assert_eq!(history[0].metadata["i"], "15");
    assert_eq!(history[9].metadata["i"], "24");
    assert_eq!(tracker.total().calls, 25);
    assert_eq!(tracker.total().input_tokens, (1..=25).sum::<u64>());
}

#[test]
fn concurrent_tracking_loses_nothing() {
    let tracker = Arc::new(CostTracker::new(Catalog::builtin().unwrap()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let tracker = tracker.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    tracker
                        .track(
                            UsageEvent::new("gpt-4o-mini", Usage::new(1, 0)).user(format!("u{t}")),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(tracker.total().calls, 8000);
    assert_eq!(tracker.total().cost, Usd::from_nanos(150 * 8000));
    assert_eq!(tracker.totals_by(GroupBy::User, None).len(), 8);
}

#[test]
fn cached_days_match_the_time_zone_on_every_call() {
    // The tracker caches the UTC range of the current local day; every recorded day must still be
    // the time zone's date of the call, through DST changes (Berlin at 02:00, Santiago at
    // midnight, Lord Howe by 30 minutes) and odd offsets (Kathmandu, +05:45).
    use chrono::{DateTime, Utc};
    for zone in [
        "Europe/Berlin",
        "America/Santiago",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "UTC",
    ] {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        for start in [1_774_738_800u64, 1_775_347_200, 1_788_566_400] {
            // 2026-03-28T23:00Z (Berlin's spring change), 2026-04-05 (Santiago and Lord Howe
            // fall back), 2026-09-05 (Santiago springs forward at midnight).
            let clock =
                ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(start));
            let tracker = CostTracker::with_options(
                Catalog::builtin().unwrap(),
                clock.clone().shared(),
                tz,
                10_000,
            );
            let mut expected = BTreeMap::<String, u64>::new();
            for _ in 0..(3 * 24 * 4) {
                let at: DateTime<Utc> = clock.system_now().into();
                tracker
                    .track(UsageEvent::new("gpt-4o", Usage::new(10, 0)))
                    .unwrap();
                let day = at.with_timezone(&tz).date_naive();
                assert_eq!(tracker.history().last().unwrap().day, day, "{zone} at {at}");
                *expected.entry(day.to_string()).or_default() += 1;
                clock.advance(Duration::from_secs(15 * 60 + 7));
            }
            let by_day: BTreeMap<String, u64> = tracker
                .totals_by(GroupBy::Day, None)
                .into_iter()
                .map(|(d, t)| (d, t.calls))
                .collect();
            assert_eq!(by_day, expected, "{zone}");
        }
    }
}
