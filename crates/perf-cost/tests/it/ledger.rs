//! Shared ledgers: the same semantics on memory, Redis and PostgreSQL, and the 8-process race.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use perf_core::clock::ManualClock;
use perf_cost::{
    Alert, BudgetConfig, BudgetManager, BudgetScope, CostError, InMemoryLedger, Ledger, Period,
    SpendRequest, Usd,
};

fn cents(c: i64) -> Usd {
    Usd::from_cents(c)
}

/// Two managers (two "processes") on one ledger and one manual clock.
async fn shared_semantics(ledger: Arc<dyn Ledger>) {
    let clock =
        ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_262_400));
    let cfg = BudgetConfig::default()
        .budget(BudgetScope::Global, Period::Daily, cents(100))
        .budget(BudgetScope::EachUser, Period::Daily, cents(55))
        .reservation_ttl(Duration::from_secs(30));
    let a = BudgetManager::new(cfg.clone(), ledger.clone(), clock.clone().shared());
    let b = BudgetManager::new(cfg, ledger.clone(), clock.clone().shared());
    let fired: Arc<Mutex<Vec<(char, Alert)>>> = Arc::default();
    for (name, m) in [('a', &a), ('b', &b)] {
        let f = fired.clone();
        m.on_alert(move |al| f.lock().unwrap().push((name, al.clone())));
    }

    // Reservations from both managers share the same room.
    let r1 = a
        .reserve(&SpendRequest::new(cents(50)).user("alice"))
        .await
        .unwrap();
    let r2 = b
        .reserve(&SpendRequest::new(cents(40)).user("bob"))
        .await
        .unwrap();
    assert_eq!(
        r2.seen()
            .iter()
            .find(|s| s.key.starts_with("global"))
            .unwrap()
            .reserved,
        cents(50)
    );
    match b.reserve(&SpendRequest::new(cents(11)).user("carol")).await {
        Err(CostError::BudgetExceeded {
            scope,
            spent,
            reserved,
            limit,
            ..
        }) => {
            assert_eq!(scope, "global");
            assert_eq!((spent, reserved, limit), (Usd::ZERO, cents(90), cents(100)));
        }
        other => panic!("{other:?}"),
    }
    // Alice's own line: 50 reserved of 55 (the global line still has 10).
    assert!(matches!(
        b.reserve(&SpendRequest::new(cents(6)).user("alice")).await,
        Err(CostError::BudgetExceeded { ref scope, .. }) if scope == "user:alice"
    ));
    // Commit from one process is visible to the other at once.
    a.commit(r1, cents(45)).await.unwrap();
    assert_eq!(
        b.state("global", Period::Daily).await.unwrap().spent,
        cents(45)
    );
    b.release(r2).await.unwrap();

    // 45 -> 85 crosses 80 in manager b; 85 -> 95 crosses 90 in manager a. Each fires once overall.
    let r = b
        .reserve(&SpendRequest::new(cents(40)).user("bob"))
        .await
        .unwrap();
    b.commit(r, cents(40)).await.unwrap();
    let r = a
        .reserve(&SpendRequest::new(cents(10)).user("dave"))
        .await
        .unwrap();
    a.commit(r, cents(10)).await.unwrap();
    let r = b
        .reserve(&SpendRequest::new(Usd::ZERO).user("dave"))
        .await
        .unwrap();
    b.commit(r, Usd::ZERO).await.unwrap();
    let global: Vec<(char, u32)> = fired
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, al)| al.scope == "global")
        .map(|(who, al)| (*who, al.threshold))
        .collect();
    assert_eq!(global, [('b', 80), ('a', 90)]);

    // A reservation left behind expires after the TTL for everyone.
    let lost = a
        .reserve(&SpendRequest::new(cents(5)).user("erin"))
        .await
        .unwrap();
    drop(lost);
    assert_eq!(ledger.outstanding().await.unwrap(), 1);
    assert!(b
        .reserve(&SpendRequest::new(cents(1)).user("erin"))
        .await
        .is_err());
    clock.advance(Duration::from_secs(30));
    let r = b
        .reserve(&SpendRequest::new(cents(5)).user("erin"))
        .await
        .unwrap();
    assert_eq!(ledger.outstanding().await.unwrap(), 1);
    b.commit(r, cents(5)).await.unwrap();
    assert_eq!(ledger.outstanding().await.unwrap(), 0);
    let g = a.state("global", Period::Daily).await.unwrap();
    assert_eq!((g.spent, g.reserved), (cents(100), Usd::ZERO));
}

/// A long call renews its reservation: the room stays held past the first expiry and the commit
/// finds it. A reservation that expired and was swept cannot be renewed, and its late commit is
/// reported as such.
async fn extend_semantics(ledger: Arc<dyn Ledger>) {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_262_400);
    let clock = ManualClock::starting_at(start);
    let cfg = BudgetConfig::default()
        .budget(BudgetScope::Global, Period::Total, cents(10))
        .reservation_ttl(Duration::from_secs(30));
    let a = BudgetManager::new(cfg.clone(), ledger.clone(), clock.clone().shared());
    let b = BudgetManager::new(cfg, ledger.clone(), clock.clone().shared());
    let start_ms = 1_795_262_400_000i64;

    let mut long = a.reserve(&SpendRequest::new(cents(8))).await.unwrap();
    assert_eq!(long.expires_at_ms(), start_ms + 30_000);
    clock.advance(Duration::from_secs(20));
    assert!(a.extend(&mut long).await.unwrap());
    assert_eq!(long.expires_at_ms(), start_ms + 50_000);
    // 40 s: past the first expiry, within the renewed one. The other process's reserve sweeps
    // expired reservations first, and must still find the room held.
    clock.advance(Duration::from_secs(20));
    assert!(matches!(
        b.reserve(&SpendRequest::new(cents(3))).await,
        Err(CostError::BudgetExceeded { .. })
    ));
    assert!(a.commit(long, cents(8)).await.unwrap().reservation_found);

    let mut late = a.reserve(&SpendRequest::new(cents(2))).await.unwrap();
    clock.advance(Duration::from_secs(31));
    assert_eq!(b.sweep_expired().await.unwrap(), 1);
    assert!(!a.extend(&mut late).await.unwrap());
    assert!(!a.commit(late, cents(2)).await.unwrap().reservation_found);
    let g = a.state("global", Period::Total).await.unwrap();
    assert_eq!((g.spent, g.reserved), (cents(10), Usd::ZERO));
    assert_eq!(ledger.outstanding().await.unwrap(), 0);
}

#[tokio::test]
async fn in_memory_ledger_semantics() {
    shared_semantics(Arc::new(InMemoryLedger::new())).await;
    extend_semantics(Arc::new(InMemoryLedger::new())).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_ledger_semantics() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("cost_sem");
    let ledger = perf_cost::RedisLedger::connect(&url, &prefix)
        .await
        .unwrap();
    shared_semantics(Arc::new(ledger.clone())).await;
    extend_semantics(Arc::new(ledger.clone())).await;
    assert!(ledger.destroy().await.unwrap() > 0);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_ledger_semantics() {
    let url = perf_testkit::require_postgres!();
    let schema = perf_testkit::unique_name("cost_sem");
    let ledger = perf_cost::PostgresLedger::connect(&url, &schema, 4)
        .await
        .unwrap();
    shared_semantics(Arc::new(ledger.clone())).await;
    extend_semantics(Arc::new(ledger.clone())).await;
    ledger.destroy().await.unwrap();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ledger_a_bad_operation_fails_alone_in_its_batch() {
    // Concurrent operations are group-committed in one transaction; a reservation id that is
    // already held makes the server reject the batch, which must then fail that call only.
    use perf_cost::{LineRequest, ReserveOutcome, ReserveRequest};
    let url = perf_testkit::require_postgres!();
    let schema = perf_testkit::unique_name("cost_batch");
    let ledger = Arc::new(
        perf_cost::PostgresLedger::connect(&url, &schema, 2)
            .await
            .unwrap(),
    );
    let line = LineRequest {
        key: "global|total".into(),
        limit: cents(1000),
    };
    let req = |id: String| ReserveRequest {
        id,
        lines: vec![line.clone()],
        amount: cents(1),
        now_ms: 0,
        expires_at_ms: i64::MAX,
        enforce: true,
    };
    ledger.reserve(&req("dup".into())).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let l = ledger.clone();
        let id = if i == 20 {
            "dup".to_owned()
        } else {
            format!("r{i}")
        };
        let r = req(id);
        tasks.push(tokio::spawn(async move { l.reserve(&r).await }));
    }
    let mut granted = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(ReserveOutcome::Granted { .. }) => granted += 1,
            Ok(other) => panic!("{i}: {other:?}"),
            Err(e) => assert_eq!(i, 20, "{e}"),
        }
    }
    assert_eq!(granted, 39);
    let s = ledger.line_state("global|total").await.unwrap();
    assert_eq!((s.spent, s.reserved), (Usd::ZERO, cents(40)));
    assert_eq!(ledger.outstanding().await.unwrap(), 40);
    ledger.destroy().await.unwrap();
}

// ---------------------------------------------------------------- the 8 x 64 race

/// The race needs a shared backend, so it exists only with the `redis` or `postgres` feature.
#[cfg(any(feature = "redis", feature = "postgres"))]
mod race {
    use super::*;
    use perf_core::clock::system_clock;
    use std::collections::{BTreeMap, BTreeSet};

    const PROCESSES: usize = 8;
    const TASKS: usize = 64;
    const PER_TASK: usize = 20; // 8 * 64 * 20 = 10,240 requests
    const UNIT: i64 = 1000; // one micro-dollar in nano-dollars
    const GLOBAL_LIMIT: i64 = 10_000 * UNIT;
    const USER_LIMIT: i64 = 3_000 * UNIT;
    const USERS: usize = 4;

    /// Calls that will be committed or released use a TTL far above any call's duration; calls that
    /// will be cancelled use 300 ms, so their reservations really expire while the race runs.
    fn race_config(ttl: Duration) -> BudgetConfig {
        BudgetConfig::default()
            .budget(
                BudgetScope::Global,
                Period::Total,
                Usd::from_nanos(GLOBAL_LIMIT),
            )
            .budget(
                BudgetScope::EachUser,
                Period::Total,
                Usd::from_nanos(USER_LIMIT),
            )
            .thresholds(vec![50, 80, 90, 100])
            .per_request_cap(None)
            .reservation_ttl(ttl)
    }

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    struct WorkerReport {
        granted: u64,
        refused: u64,
        bad_refusals: u64,
        committed_nanos: i64,
        committed_by_user: BTreeMap<String, i64>,
        released: u64,
        abandoned: u64,
        alerts: Vec<(String, String, u32)>,
    }

    use perf_testkit::XorShift as Rng;

    async fn run_worker(ledger: Arc<dyn Ledger>, seed: u64) -> WorkerReport {
        let manager = Arc::new(BudgetManager::new(
            race_config(Duration::from_secs(600)),
            ledger.clone(),
            system_clock(),
        ));
        let short = Arc::new(BudgetManager::new(
            race_config(Duration::from_millis(300)),
            ledger,
            system_clock(),
        ));
        let mut alerts = manager.subscribe();
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let manager = manager.clone();
            let short = short.clone();
            handles.push(tokio::spawn(async move {
                let mut rng =
                    Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(task as u64 + 1) | 1);
                let user = format!("u{}", task % USERS);
                let mut rep = WorkerReport::default();
                for _ in 0..PER_TASK {
                    let estimate = Usd::from_nanos((1 + rng.below(10) as i64) * UNIT);
                    let fate = rng.below(100);
                    let via = if fate >= 85 { &short } else { &manager };
                    match via
                        .reserve(&SpendRequest::new(estimate).user(user.clone()))
                        .await
                    {
                        Ok(r) => {
                            rep.granted += 1;
                            match fate {
                                0..=69 => {
                                    let actual = Usd::from_nanos(
                                        rng.below(estimate.nanos() as u64 + 1) as i64,
                                    );
                                    let done = manager.commit(r, actual).await.unwrap();
                                    assert!(done.reservation_found, "a live reservation expired");
                                    rep.committed_nanos += actual.nanos();
                                    *rep.committed_by_user.entry(user.clone()).or_default() +=
                                        actual.nanos();
                                }
                                70..=84 => {
                                    manager.release(r).await.unwrap();
                                    rep.released += 1;
                                }
                                _ => {
                                    // Cancelled: the reservation is dropped and must expire.
                                    drop(r);
                                    rep.abandoned += 1;
                                }
                            }
                        }
                        Err(CostError::BudgetExceeded {
                            spent,
                            reserved,
                            requested,
                            limit,
                            ..
                        }) => {
                            rep.refused += 1;
                            // Refusal is only allowed when the state the ledger saw had no room.
                            if spent.nanos() + reserved.nanos() + requested.nanos() <= limit.nanos()
                            {
                                rep.bad_refusals += 1;
                            }
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                rep
            }));
        }
        let mut total = WorkerReport::default();
        for h in handles {
            let r = h.await.unwrap();
            total.granted += r.granted;
            total.refused += r.refused;
            total.bad_refusals += r.bad_refusals;
            total.committed_nanos += r.committed_nanos;
            total.released += r.released;
            total.abandoned += r.abandoned;
            for (u, n) in r.committed_by_user {
                *total.committed_by_user.entry(u).or_default() += n;
            }
        }
        drop(manager);
        drop(short);
        while let Ok(a) = alerts.try_recv() {
            total.alerts.push((a.scope, a.period, a.threshold));
        }
        total
    }

    /// Entry point of a child process of the race (ignored in normal runs; the parent runs it with
    /// `--ignored --exact`).
    #[test]
    #[ignore = "worker process of the ledger race tests"]
    fn race_worker() {
        let (Ok(backend), Ok(ns), Ok(seed)) = (
            std::env::var("PERFKIT_COST_RACE"),
            std::env::var("PERFKIT_COST_RACE_NS"),
            std::env::var("PERFKIT_COST_RACE_SEED"),
        ) else {
            return;
        };
        let seed: u64 = seed.parse().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let report = rt.block_on(async {
            let ledger: Arc<dyn Ledger> = match backend.as_str() {
                #[cfg(feature = "redis")]
                "redis" => Arc::new(
                    perf_cost::RedisLedger::connect(&perf_testkit::redis_url().unwrap(), &ns)
                        .await
                        .unwrap(),
                ),
                #[cfg(feature = "postgres")]
                "postgres" | "postgres-async" => Arc::new(
                    perf_cost::PostgresLedger::connect_with(
                        &perf_testkit::database_url().unwrap(),
                        &ns,
                        perf_cost::PostgresLedgerOptions::default()
                            .pool_size(4)
                            .synchronous_commit(backend == "postgres"),
                    )
                    .await
                    .unwrap(),
                ),
                other => panic!("unknown backend {other} (or its feature is off)"),
            };
            run_worker(ledger, seed).await
        });
        println!("RACE_RESULT {}", serde_json::to_string(&report).unwrap());
    }

    /// Spawns the 8 worker processes and checks the invariants on the shared ledger.
    async fn race(backend: &str, ns: &str, ledger: Arc<dyn Ledger>) {
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..PROCESSES)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args([
                        "ledger::race::race_worker",
                        "--exact",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("PERFKIT_COST_RACE", backend)
                    .env("PERFKIT_COST_RACE_NS", ns)
                    .env("PERFKIT_COST_RACE_SEED", (i + 1).to_string())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut reports = Vec::new();
        for child in children {
            let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "worker failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = stdout
                .lines()
                .find_map(|l| {
                    l.find("RACE_RESULT ")
                        .map(|i| &l[i + "RACE_RESULT ".len()..])
                })
                .unwrap_or_else(|| panic!("no report in worker output: {stdout}"));
            reports.push(serde_json::from_str::<WorkerReport>(line).unwrap());
        }
        let granted: u64 = reports.iter().map(|r| r.granted).sum();
        let refused: u64 = reports.iter().map(|r| r.refused).sum();
        let abandoned: u64 = reports.iter().map(|r| r.abandoned).sum();
        let committed: i64 = reports.iter().map(|r| r.committed_nanos).sum();
        assert_eq!(granted + refused, (PROCESSES * TASKS * PER_TASK) as u64);
        assert_eq!(
            reports.iter().map(|r| r.bad_refusals).sum::<u64>(),
            0,
            "a call was refused while the budget had room"
        );
        assert!(
            refused > 0,
            "the budget was never tight: the test proves nothing"
        );
        assert!(abandoned > 0);

        // Committed spend never exceeds a budget, and none was lost.
        let global = ledger.line_state("global|total").await.unwrap();
        assert_eq!(
            global.spent.nanos(),
            committed,
            "spend lost or double-counted"
        );
        assert!(global.spent.nanos() <= GLOBAL_LIMIT, "{global:?}");
        let mut per_user: BTreeMap<String, i64> = BTreeMap::new();
        for r in &reports {
            for (u, n) in &r.committed_by_user {
                *per_user.entry(u.clone()).or_default() += n;
            }
        }
        for u in 0..USERS {
            let user = format!("u{u}");
            let line = ledger
                .line_state(&format!("user:{user}|total"))
                .await
                .unwrap();
            assert!(line.spent.nanos() <= USER_LIMIT, "{line:?}");
            assert_eq!(
                line.spent.nanos(),
                per_user.get(&user).copied().unwrap_or(0)
            );
        }

        // Cancelled calls' reservations expired while the race ran (only the last few can remain).
        let left = ledger.outstanding().await.unwrap();
        assert!(
            left < abandoned,
            "{left} of {abandoned} abandoned reservations never expired"
        );
        // No reservation is left behind once their TTL has passed.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let later_ms = later
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        ledger.sweep(later_ms).await.unwrap();
        assert_eq!(ledger.outstanding().await.unwrap(), 0);
        assert_eq!(
            ledger.line_state("global|total").await.unwrap().reserved,
            Usd::ZERO
        );
        for u in 0..USERS {
            assert_eq!(
                ledger
                    .line_state(&format!("user:u{u}|total"))
                    .await
                    .unwrap()
                    .reserved,
                Usd::ZERO
            );
        }

        // Alerts fired once per threshold per scope across all processes, and every crossed
        // threshold fired.
        let mut seen = BTreeSet::new();
        for r in &reports {
            for a in &r.alerts {
                assert!(seen.insert(a.clone()), "alert fired twice: {a:?}");
            }
        }
        for t in [50u32, 80, 90, 100] {
            let crossed =
                i128::from(global.spent.nanos()) * 100 >= i128::from(GLOBAL_LIMIT) * i128::from(t);
            let fired = seen.contains(&("global".to_owned(), "total".to_owned(), t));
            assert_eq!(crossed, fired, "threshold {t}: spent {:?}", global.spent);
        }
    }

    #[cfg(feature = "redis")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_ledger_race_8_processes_x_64_tasks() {
        let url = perf_testkit::require_redis!();
        let ns = perf_testkit::unique_name("cost_race");
        let ledger = perf_cost::RedisLedger::connect(&url, &ns).await.unwrap();
        race("redis", &ns, Arc::new(ledger.clone())).await;
        ledger.destroy().await.unwrap();
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_ledger_race_8_processes_x_64_tasks() {
        let url = perf_testkit::require_postgres!();
        let ns = perf_testkit::unique_name("cost_race");
        let ledger = perf_cost::PostgresLedger::connect(&url, &ns, 2)
            .await
            .unwrap();
        race("postgres", &ns, Arc::new(ledger.clone())).await;
        ledger.destroy().await.unwrap();
    }

    /// The same race with `synchronous_commit = off` on the workers' sessions: durability on a
    /// server crash is traded away, none of the race's guarantees is.
    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_ledger_race_without_synchronous_commit() {
        let url = perf_testkit::require_postgres!();
        let ns = perf_testkit::unique_name("cost_race_async");
        let ledger = perf_cost::PostgresLedger::connect(&url, &ns, 2)
            .await
            .unwrap();
        race("postgres-async", &ns, Arc::new(ledger.clone())).await;
        ledger.destroy().await.unwrap();
    }
}
