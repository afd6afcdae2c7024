//! Faults: the shared ledgers across a crash and restart of their server (private servers only).

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ledger_keeps_spend_and_reservations_across_a_crash() {
    use perf_cost::{
        BudgetConfig, BudgetManager, BudgetScope, CostError, Period, SpendRequest, Usd,
    };
    use std::sync::Arc;

    let Some(mut pg) = perf_testkit::TempPostgres::start_or_skip() else {
        return;
    };
    let ledger = perf_cost::PostgresLedger::connect(&pg.url(), "cost_fault", 2)
        .await
        .unwrap();
    let m = BudgetManager::new(
        BudgetConfig::default().budget(BudgetScope::Global, Period::Total, Usd::from_cents(100)),
        Arc::new(ledger.clone()),
        perf_core::clock::system_clock(),
    );
    let r = m
        .reserve(&SpendRequest::new(Usd::from_cents(30)))
        .await
        .unwrap();
    m.commit(r, Usd::from_cents(30)).await.unwrap();
    let held = m
        .reserve(&SpendRequest::new(Usd::from_cents(50)))
        .await
        .unwrap();

    pg.stop().unwrap();
    // While the server is down: a typed error, never a panic and never a silent grant.
    let down = m.reserve(&SpendRequest::new(Usd::from_cents(1))).await;
    assert!(
        matches!(
            down,
            Err(CostError::Ledger {
                backend: "postgres",
                ..
            })
        ),
        "{down:?}"
    );
    pg.start_again().unwrap();

    // Committed spend and the outstanding reservation survived; the pool reconnected.
    let s = m.state("global", Period::Total).await.unwrap();
    assert_eq!(
        (s.spent, s.reserved),
        (Usd::from_cents(30), Usd::from_cents(50))
    );
    assert!(m
        .reserve(&SpendRequest::new(Usd::from_cents(21)))
        .await
        .is_err());
    m.commit(held, Usd::from_cents(40)).await.unwrap();
    let s = m.state("global", Period::Total).await.unwrap();
    assert_eq!((s.spent, s.reserved), (Usd::from_cents(70), Usd::ZERO));
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ledger_fails_typed_while_down_and_recovers() {
    use perf_cost::{
        BudgetConfig, BudgetManager, BudgetScope, CostError, Period, SpendRequest, Usd,
    };
    use std::sync::Arc;

    let Some(mut redis) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let ledger = perf_cost::RedisLedger::connect(&redis.url(), "cost_fault")
        .await
        .unwrap();
    let m = BudgetManager::new(
        BudgetConfig::default().budget(BudgetScope::Global, Period::Total, Usd::from_cents(100)),
        Arc::new(ledger),
        perf_core::clock::system_clock(),
    );
    let r = m
        .reserve(&SpendRequest::new(Usd::from_cents(30)))
        .await
        .unwrap();
    m.commit(r, Usd::from_cents(30)).await.unwrap();
    redis.stop().unwrap();
    let down = m.reserve(&SpendRequest::new(Usd::from_cents(1))).await;
    assert!(
        matches!(
            down,
            Err(CostError::Ledger {
                backend: "redis",
                ..
            })
        ),
        "{down:?}"
    );
    redis.start_again().unwrap();
    // The private server runs without persistence, so its data is gone: a production Redis for
    // budgets needs AOF (documented on RedisLedger). The ledger itself reconnects and works.
    let mut ok = false;
    for _ in 0..50 {
        if m.reserve(&SpendRequest::new(Usd::from_cents(10)))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the ledger did not reconnect after the restart");
}
