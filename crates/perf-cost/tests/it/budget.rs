//! Budgets: enforcement, per-request cap, expiry, rollback switch, once-per-period alerts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use perf_core::clock::ManualClock;
use perf_core::config::CostConfig;
use perf_cost::{
    Alert, BudgetConfig, BudgetManager, BudgetScope, CostError, InMemoryLedger, Period,
    SpendRequest, Usd,
};

/// 2026-11-21T12:00:00Z, a Saturday.
fn noon() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_262_400)
}

fn manager(config: BudgetConfig) -> (BudgetManager, ManualClock) {
    let clock = ManualClock::starting_at(noon());
    let m = BudgetManager::new(
        config,
        Arc::new(InMemoryLedger::new()),
        clock.clone().shared(),
    );
    (m, clock)
}

fn cents(c: i64) -> Usd {
    Usd::from_cents(c)
}

#[tokio::test]
async fn refuses_only_when_the_budget_has_no_room() {
    let (m, _) =
        manager(BudgetConfig::default().budget(BudgetScope::Global, Period::Daily, cents(100)));
    let a = m.reserve(&SpendRequest::new(cents(40))).await.unwrap();
    let b = m.reserve(&SpendRequest::new(cents(60))).await.unwrap(); // exactly full
    match m.reserve(&SpendRequest::new(Usd::from_nanos(1))).await {
        Err(CostError::BudgetExceeded {
            spent,
            reserved,
            limit,
            scope,
            period,
            ..
        }) => {
            assert_eq!(
                (spent, reserved, limit),
                (Usd::ZERO, cents(100), cents(100))
            );
            assert_eq!(
                (scope.as_str(), period.as_str()),
                ("global", "day:2026-11-21")
            );
        }
        other => panic!("{other:?}"),
    }
    // Committing less than reserved gives the difference back.
    m.commit(a, cents(10)).await.unwrap();
    let c = m.reserve(&SpendRequest::new(cents(30))).await.unwrap();
    assert_eq!(c.seen()[0].spent, cents(10));
    assert_eq!(c.seen()[0].reserved, cents(60));
    m.release(b).await.unwrap();
    m.release(c).await.unwrap();
    let s = m.state("global", Period::Daily).await.unwrap();
    assert_eq!((s.spent, s.reserved), (cents(10), Usd::ZERO));
}

#[tokio::test]
async fn per_request_cap_needs_explicit_approval() {
    let (m, _) = manager(BudgetConfig::default());
    let err = m.reserve(&SpendRequest::new(cents(101))).await.unwrap_err();
    assert!(
        matches!(err, CostError::PerRequestCap { requested, cap } if requested == cents(101) && cap == cents(100))
    );
    assert!(m.reserve(&SpendRequest::new(cents(100))).await.is_ok());
    let approved = m
        .reserve(&SpendRequest::new(cents(500)).approve_over_cap())
        .await;
    assert!(approved.is_ok());
}

#[tokio::test]
async fn user_and_pipeline_budgets_apply_to_their_calls_only() {
    let cfg = BudgetConfig::default()
        .budget(BudgetScope::EachUser, Period::Daily, cents(50))
        .budget(
            BudgetScope::Pipeline("etl".into()),
            Period::Monthly,
            cents(70),
        );
    let (m, _) = manager(cfg);
    let r = m
        .reserve(&SpendRequest::new(cents(50)).user("alice"))
        .await
        .unwrap();
    m.commit(r, cents(50)).await.unwrap();
    // Alice is out of room; Bob is not.
    let err = m
        .reserve(&SpendRequest::new(cents(1)).user("alice"))
        .await
        .unwrap_err();
    assert!(matches!(err, CostError::BudgetExceeded { ref scope, .. } if scope == "user:alice"));
    let r = m
        .reserve(&SpendRequest::new(cents(40)).user("bob").pipeline("etl"))
        .await
        .unwrap();
    m.commit(r, cents(40)).await.unwrap();
    let err = m
        .reserve(&SpendRequest::new(cents(31)).user("carol").pipeline("etl"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CostError::BudgetExceeded { ref scope, ref period, .. } if scope == "pipeline:etl" && period == "month:2026-11")
    );
    // No budget applies to an anonymous call outside the pipeline.
    assert!(m.reserve(&SpendRequest::new(cents(99))).await.is_ok());
}

#[tokio::test]
async fn reservations_that_are_never_committed_expire() {
    let cfg = BudgetConfig::default()
        .budget(BudgetScope::Global, Period::Total, cents(100))
        .reservation_ttl(Duration::from_secs(60));
    let (m, clock) = manager(cfg);
    let lost = m.reserve(&SpendRequest::new(cents(100))).await.unwrap();
    drop(lost); // the worker crashed
    assert!(m.reserve(&SpendRequest::new(cents(1))).await.is_err());
    clock.advance(Duration::from_secs(59));
    assert!(m.reserve(&SpendRequest::new(cents(1))).await.is_err());
    clock.advance(Duration::from_secs(1));
    let r = m.reserve(&SpendRequest::new(cents(100))).await.unwrap();
    assert_eq!(r.seen()[0].reserved, Usd::ZERO);
    assert_eq!(m.ledger().outstanding().await.unwrap(), 1);
    // A commit after expiry still records the spend (the call happened).
    clock.advance(Duration::from_secs(61));
    assert_eq!(m.sweep_expired().await.unwrap(), 1);
    let done = m.commit(r, cents(30)).await.unwrap();
    assert!(!done.reservation_found);
    let s = m.state("global", Period::Total).await.unwrap();
    assert_eq!((s.spent, s.reserved), (cents(30), Usd::ZERO));
    assert_eq!(m.ledger().outstanding().await.unwrap(), 0);
}

#[tokio::test]
async fn disabled_budgets_track_and_alert_but_never_refuse() {
    let mut section = CostConfig::default();
    section.enabled = false;
    section.daily_budget_usd = Some(1.0);
    let (m, _) = manager(BudgetConfig::from_config(&section).unwrap());
    let mut alerts = m.subscribe();
    let r = m.reserve(&SpendRequest::new(cents(500))).await.unwrap(); // over cap and budget
    m.commit(r, cents(500)).await.unwrap();
    let r = m.reserve(&SpendRequest::new(cents(10))).await.unwrap();
    m.release(r).await.unwrap();
    assert_eq!(
        m.state("global", Period::Daily).await.unwrap().spent,
        cents(500)
    );
    let fired: Vec<u32> = std::iter::from_fn(|| alerts.try_recv().ok())
        .map(|a| a.threshold)
        .collect();
    assert_eq!(fired, [80, 90, 100]);
}

#[test]
fn config_section_is_honoured_and_validated() {
    let mut section = CostConfig::default();
    section.daily_budget_usd = Some(10.0);
    section.monthly_budget_usd = Some(200.0);
    section.per_request_cap_usd = Some(0.25);
    section.timezone = "America/New_York".into();
    section.reservation_ttl_secs = 30;
    let cfg = BudgetConfig::from_config(&section).unwrap();
    assert_eq!(cfg.budgets.len(), 2);
    assert_eq!(cfg.per_request_cap, Some(cents(25)));
    assert_eq!(cfg.reservation_ttl, Duration::from_secs(30));
    assert!(cfg.enabled);
    section.timezone = "Mars/Olympus".into();
    assert!(
        matches!(BudgetConfig::from_config(&section), Err(CostError::Config { ref field, .. }) if field == "cost.timezone")
    );
    section.timezone = "UTC".into();
    section.alert_thresholds_percent = vec![90, 80];
    assert!(BudgetConfig::from_config(&section).is_err());
}

#[tokio::test]
async fn alerts_fire_once_per_threshold_per_period_across_day_boundaries() {
    let cfg = BudgetConfig::default()
        .budget(BudgetScope::Global, Period::Daily, cents(100))
        .budget(BudgetScope::Global, Period::Monthly, cents(1000))
        .time_zone(chrono_tz::Europe::Berlin);
    let (m, clock) = manager(cfg);
    let seen: Arc<Mutex<Vec<Alert>>> = Arc::default();
    let sink = seen.clone();
    m.on_alert(move |a| sink.lock().unwrap().push(a.clone()));
    let mut channel = m.subscribe();

    let spend = |c: i64| {
        let m = &m;
        async move {
            let r = m.reserve(&SpendRequest::new(cents(c))).await.unwrap();
            m.commit(r, cents(c)).await.unwrap();
        }
    };
    // Day 1 (Berlin): 79, 81, 85, 95, 100 -> 80, 90, 100 once each.
    spend(79).await;
    assert!(seen.lock().unwrap().is_empty());
    spend(2).await;
    spend(4).await;
    spend(10).await;
    spend(5).await;
    let day1: Vec<(String, u32)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.period.clone(), a.threshold))
        .collect();
    assert_eq!(
        day1,
        [
            ("day:2026-11-21".to_owned(), 80),
            ("day:2026-11-21".to_owned(), 90),
            ("day:2026-11-21".to_owned(), 100)
        ]
    );
    // Further spend over 100 % the same day fires nothing new (the plan's bug was firing on every call).
    let r = m.reserve(&SpendRequest::new(Usd::ZERO)).await.unwrap();
    m.commit(r, Usd::ZERO).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);

    // 11:00 UTC + 12h = 00:00 Berlin on the 22nd (UTC+1): a new daily period.
    clock.advance(Duration::from_secs(11 * 3600));
    spend(85).await;
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.len(), 4);
    assert_eq!(
        (all[3].period.as_str(), all[3].threshold),
        ("day:2026-11-22", 80)
    );
    // The monthly line (200 of 1000 spent) has crossed nothing.
    assert!(all.iter().all(|a| a.period.starts_with("day:")));
    // The channel saw the same alerts.
    let via_channel: Vec<Alert> = std::iter::from_fn(|| channel.try_recv().ok()).collect();
    assert_eq!(via_channel, all);

    // A new month: December 1st in Berlin. Spend 800 more in the month line and watch 80 % fire.
    clock.advance(Duration::from_secs(9 * 86_400));
    for _ in 0..8 {
        spend(100).await; // each day line is 100 -> fires its own 80/90/100 once
        clock.advance(Duration::from_secs(86_400));
    }
    let all = seen.lock().unwrap().clone();
    let monthly: Vec<_> = all
        .iter()
        .filter(|a| a.period.starts_with("month:"))
        .map(|a| (a.period.as_str(), a.threshold))
        .collect();
    // November's month line ended at 185 of 1000; December reached 800 of 1000 = 80 %.
    assert_eq!(monthly, [("month:2026-12", 80)]);
    let december_days = all
        .iter()
        .filter(|a| a.period.starts_with("day:2026-12"))
        .count();
    assert_eq!(december_days, 8 * 3);
    spend(100).await;
    let all = seen.lock().unwrap().clone();
    let monthly: Vec<_> = all
        .iter()
        .filter(|a| a.period.starts_with("month:"))
        .map(|a| (a.period.as_str(), a.threshold))
        .collect();
    assert_eq!(monthly, [("month:2026-12", 80), ("month:2026-12", 90)]);
}

#[tokio::test]
async fn many_tasks_never_overspend_in_process() {
    let (m, _) =
        manager(BudgetConfig::default().budget(BudgetScope::Global, Period::Daily, cents(1000)));
    let m = Arc::new(m);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut granted = 0;
            for _ in 0..50 {
                if let Ok(r) = m.reserve(&SpendRequest::new(cents(7))).await {
                    m.commit(r, cents(7)).await.unwrap();
                    granted += 1;
                }
            }
            granted
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.unwrap();
    }
    let s = m.state("global", Period::Daily).await.unwrap();
    assert!(s.spent <= cents(1000));
    assert_eq!(s.spent, cents(7 * granted));
    // 142 * 7 = 994: every call that fit was granted.
    assert_eq!(granted, 142);
}
