//! Workload mode of the index advisor against the real PostgreSQL, with HypoPG and with
//! real rolled-back builds: the budget, weights, redundant prefixes, re-evaluated marginal
//! benefits (interactions), prefix replacement and the what-if cache.

use perf_query::{
    CandidateOutcome, IndexAdvisor, WhatIfMethod, WhatIfMode, WorkloadAdvice, WorkloadCandidate,
    WorkloadQuery,
};

use crate::support::TestDb;

/// `w`: 100k rows; `a` 200 values, `c` 100 values (independent of `a`), `x` and `y` 5000
/// values each (equal index sizes), `pad` unique 32-character text.
async fn setup(prefix: &str) -> TestDb {
    let url = std::env::var("DATABASE_URL").unwrap();
    let db = TestDb::new(&url, prefix, 2).await;
    db.exec(
        "CREATE TABLE w (id int PRIMARY KEY, a int NOT NULL, c int NOT NULL, x int NOT NULL,
                         y int NOT NULL, pad text NOT NULL);
         INSERT INTO w SELECT i, i % 200, (i / 7) % 100, i % 5000, (i * 7919) % 5000, md5(i::text)
           FROM generate_series(1, 100000) i;
         ANALYZE w;",
    )
    .await;
    db
}

fn show(a: &WorkloadAdvice) -> String {
    let mut s = format!(
        "method {:?} before {:.0} after {:.0} used {} / {} cache {:?}\n",
        a.method, a.cost_before, a.cost_after, a.used_bytes, a.budget_bytes, a.cache
    );
    for i in &a.indexes {
        s.push_str(&format!(
            "  CHOSEN {} size {} marginal {:.0} alone {:.0} replaces {:?}\n",
            i.candidate.definition(),
            i.size_bytes,
            i.marginal_benefit,
            i.standalone_benefit,
            i.replaces
        ));
    }
    for c in &a.candidates {
        s.push_str(&format!(
            "  cand {} alone {:.0} size {:?} {:?}\n",
            c.candidate.definition(),
            c.standalone_benefit,
            c.size_bytes,
            c.outcome
        ));
    }
    for q in &a.queries {
        s.push_str(&format!(
            "  q {} w {} {:.1} -> {:.1}\n",
            q.query, q.weight, q.cost_before, q.cost_after
        ));
    }
    s
}

fn chosen(a: &WorkloadAdvice) -> Vec<Vec<&str>> {
    a.indexes
        .iter()
        .map(|i| i.candidate.column_names())
        .collect()
}

fn candidate<'a>(a: &'a WorkloadAdvice, cols: &[&str]) -> &'a WorkloadCandidate {
    a.candidates
        .iter()
        .find(|c| c.candidate.column_names() == cols)
        .unwrap_or_else(|| panic!("no candidate {cols:?}\n{}", show(a)))
}

/// Invariants of every advice: within budget, sizes add up, marginal benefits add up to the
/// reduction, no chosen index is a prefix of another.
fn check(a: &WorkloadAdvice) {
    let report = show(a);
    assert!(a.used_bytes <= a.budget_bytes, "{report}");
    assert_eq!(
        a.used_bytes,
        a.indexes.iter().map(|i| i.size_bytes).sum::<u64>(),
        "{report}"
    );
    assert!(a.cost_after <= a.cost_before, "{report}");
    let marginal: f64 = a.indexes.iter().map(|i| i.marginal_benefit).sum();
    let reduction = a.cost_before - a.cost_after;
    assert!(
        (marginal - reduction).abs() <= 1e-6 * a.cost_before.max(1.0),
        "{marginal} vs {reduction}\n{report}"
    );
    for (i, x) in a.indexes.iter().enumerate() {
        assert!(
            x.statement.starts_with("CREATE INDEX CONCURRENTLY "),
            "{report}"
        );
        for (j, y) in a.indexes.iter().enumerate() {
            let cols: Vec<String> = y
                .candidate
                .column_names()
                .iter()
                .map(|c| c.to_string())
                .collect();
            assert!(i == j || !x.candidate.is_prefix_of(&cols), "{report}");
        }
    }
}

async fn index_count(db: &TestDb) -> i64 {
    db.scalar_i64(&format!(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}'",
        db.schema
    ))
    .await
}

async fn workload_cases(mode: WhatIfMode, prefix: &str) {
    let db = setup(prefix).await;
    let before = index_count(&db).await;
    let advisor = IndexAdvisor::new(db.pool.clone()).mode(mode);
    let big = 100 << 20;

    // Interactions: one composite index serves both statements; the single-column index
    // on `c` helps the first statement alone, but nothing once the composite is chosen.
    let both = vec![
        WorkloadQuery::new("SELECT * FROM w WHERE a = $1 AND c = $2", 1.0),
        WorkloadQuery::new("SELECT * FROM w WHERE a = $1", 1.0),
        WorkloadQuery::new("SELEC broken", 5.0),
    ];
    let a = advisor.advise_workload(&both, big).await.unwrap();
    let report = show(&a);
    check(&a);
    let expected_method = match mode {
        WhatIfMode::HypoPg => WhatIfMethod::HypoPg,
        _ => WhatIfMethod::RealIndexRolledBack,
    };
    assert_eq!(a.method, expected_method);
    assert_eq!(chosen(&a), vec![vec!["a", "c"]], "{report}");
    let on_c = candidate(&a, &["c"]);
    assert!(on_c.standalone_benefit > 0.0, "{report}");
    assert_eq!(on_c.outcome, CandidateOutcome::NoBenefit, "{report}");
    // `(a)` is a prefix of the chosen `(a, c)`: redundant however much it helps alone.
    let on_a = candidate(&a, &["a"]);
    assert!(on_a.standalone_benefit > 0.0, "{report}");
    assert_eq!(on_a.outcome, CandidateOutcome::Redundant, "{report}");
    // One statement at a time, the standalone benefits would be counted twice over.
    let naive: f64 = a.candidates.iter().map(|c| c.standalone_benefit).sum();
    assert!(naive > (a.cost_before - a.cost_after) * 1.5, "{report}");
    assert_eq!(a.queries.len(), 2);
    assert!(
        a.queries.iter().all(|q| q.cost_after < q.cost_before),
        "{report}"
    );
    assert_eq!(a.skipped_queries.len(), 1, "{report}");

    // The same workload again: every what-if cost comes from the cache.
    let again = advisor.advise_workload(&both, big).await.unwrap();
    assert_eq!(again.cache.misses, 0, "{:?}", again.cache);
    assert_eq!(again.cache.hit_rate(), 1.0);
    assert_eq!(chosen(&again), chosen(&a));

    // Weights decide under a budget that holds one of two equal-sized indexes.
    let (x, y) = (
        "SELECT * FROM w WHERE x = $1",
        "SELECT * FROM w WHERE y = $1",
    );
    let full = advisor
        .advise_workload(
            &[WorkloadQuery::new(x, 1.0), WorkloadQuery::new(y, 1.0)],
            big,
        )
        .await
        .unwrap();
    check(&full);
    assert_eq!(full.indexes.len(), 2, "{}", show(&full));
    let one = full.indexes[0].size_bytes.max(full.indexes[1].size_bytes) * 3 / 2;
    let x_heavy = advisor
        .advise_workload(
            &[WorkloadQuery::new(x, 10.0), WorkloadQuery::new(y, 1.0)],
            one,
        )
        .await
        .unwrap();
    check(&x_heavy);
    assert_eq!(chosen(&x_heavy), vec![vec!["x"]], "{}", show(&x_heavy));
    assert_eq!(
        candidate(&x_heavy, &["y"]).outcome,
        CandidateOutcome::OverBudget
    );
    let y_heavy = advisor
        .advise_workload(
            &[WorkloadQuery::new(x, 1.0), WorkloadQuery::new(y, 10.0)],
            one,
        )
        .await
        .unwrap();
    check(&y_heavy);
    assert_eq!(chosen(&y_heavy), vec![vec!["y"]], "{}", show(&y_heavy));
    let nothing = advisor
        .advise_workload(&[WorkloadQuery::new(x, 1.0)], 0)
        .await
        .unwrap();
    check(&nothing);
    assert!(nothing.indexes.is_empty());
    assert_eq!(nothing.cost_after, nothing.cost_before);

    // Replacement: `(a)` is picked first (most benefit per byte for the heavy statement),
    // then `(a, pad)` serves the ORDER BY … LIMIT too and replaces it, its bytes returned.
    let sorted = vec![
        WorkloadQuery::new("SELECT * FROM w WHERE a = $1 ORDER BY pad LIMIT 10", 1.0),
        WorkloadQuery::new("SELECT * FROM w WHERE a = $1", 10.0),
    ];
    let r = advisor.advise_workload(&sorted, big).await.unwrap();
    let report = show(&r);
    check(&r);
    assert_eq!(chosen(&r), vec![vec!["a", "pad"]], "{report}");
    assert_eq!(r.indexes[0].replaces.len(), 1, "{report}");
    assert_eq!(
        candidate(&r, &["a"]).outcome,
        CandidateOutcome::Replaced,
        "{report}"
    );
    // A budget below the composite keeps the small index.
    let small = candidate(&r, &["a"]).size_bytes.unwrap() * 2;
    let s = advisor.advise_workload(&sorted, small).await.unwrap();
    check(&s);
    assert_eq!(chosen(&s), vec![vec!["a"]], "{}", show(&s));
    assert_eq!(
        candidate(&s, &["a", "pad"]).outcome,
        CandidateOutcome::OverBudget,
        "{}",
        show(&s)
    );

    // A prefix of an existing index is never proposed.
    db.exec("CREATE INDEX w_x_y ON w (x, y)").await;
    advisor.clear_cache();
    let existing = advisor
        .advise_workload(&[WorkloadQuery::new(x, 1.0)], big)
        .await
        .unwrap();
    check(&existing);
    assert!(existing.indexes.is_empty(), "{}", show(&existing));
    db.exec("DROP INDEX w_x_y").await;

    assert_eq!(
        index_count(&db).await,
        before,
        "nothing built outside the rollback"
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn workload_with_hypopg() {
    let _url = perf_testkit::require_postgres!();
    workload_cases(WhatIfMode::HypoPg, "workload_hypo").await;
}

#[tokio::test]
async fn workload_with_real_rolled_back_indexes() {
    let _url = perf_testkit::require_postgres!();
    workload_cases(WhatIfMode::RealIndex, "workload_real").await;
}

/// Weights from `pg_stat_statements`: the statement called most wins the budget. The advice
/// future runs on a multi-threaded runtime's worker (it is `Send`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_from_pg_stat_statements() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("workload_pgss").await;
    if !db.pg_stat_statements_ready().await {
        assert!(
            std::env::var("PERFKIT_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "pg_stat_statements is not preloaded"
        );
        eprintln!("skipped: pg_stat_statements is not preloaded");
        return;
    }
    let client = db.pool.get().await.unwrap();
    // Schema-qualified texts, so this test's statements are told apart from any other's.
    let (x, y) = (
        format!("SELECT * FROM {}.w WHERE x = $1", db.schema),
        format!("SELECT * FROM {}.w WHERE y = $1", db.schema),
    );
    for i in 0..30 {
        client.query(&x, &[&i]).await.unwrap();
        if i % 10 == 0 {
            client.query(&y, &[&i]).await.unwrap();
        }
    }
    drop(client);
    let top = perf_query::top_statements(&db.pool, perf_query::TopBy::Calls, 5000)
        .await
        .unwrap();
    let workload: Vec<WorkloadQuery> = top
        .iter()
        .filter(|s| s.query.contains(&db.schema) && s.query.starts_with("SELECT *"))
        .map(WorkloadQuery::from)
        .collect();
    let weights: Vec<f64> = workload.iter().map(|q| q.weight).collect();
    assert_eq!(workload.len(), 2, "{top:?}");
    assert!(
        weights.contains(&30.0) && weights.contains(&3.0),
        "{weights:?}"
    );

    let advisor = IndexAdvisor::new(db.pool.clone());
    let one_index = 1 << 20;
    let a = tokio::spawn(async move { advisor.advise_workload(&workload, one_index).await })
        .await
        .unwrap()
        .unwrap();
    check(&a);
    assert_eq!(chosen(&a), vec![vec!["x"]], "{}", show(&a));
    db.drop_schema().await;
}
