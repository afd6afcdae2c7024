//! The index advisor against the real PostgreSQL: with HypoPG and with real rolled-back
//! builds, threshold, what-if cache, size guard, ORDER BY … LIMIT and LATERAL cases, the
//! btree size model against real built indexes, and existing-index findings.

use perf_query::{
    IndexAdvisor, IndexCandidate, IndexFindingKind, QueryError, TableName, WhatIfMethod, WhatIfMode,
};

use crate::support::TestDb;

/// `orders`: 100k rows, 2000 customers, 5 statuses; `customers`: 2000 rows.
async fn setup(prefix: &str) -> TestDb {
    let url = std::env::var("DATABASE_URL").unwrap();
    let db = TestDb::new(&url, prefix, 2).await;
    db.exec(
        "CREATE TABLE customers (id int PRIMARY KEY, country text NOT NULL, name text);
         INSERT INTO customers SELECT i, (ARRAY['DE','FR','US','JP'])[1 + i % 4], 'c' || i FROM generate_series(1, 2000) i;
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                              created_at timestamptz NOT NULL, total numeric NOT NULL);
         INSERT INTO orders SELECT i, 1 + (i * 7919) % 2000, (ARRAY['new','paid','shipped','done','void'])[1 + i % 5],
                timestamptz '2024-01-01' + i * interval '1 minute', (i % 1000) / 10.0
           FROM generate_series(1, 100000) i;
         ANALYZE customers; ANALYZE orders;",
    )
    .await;
    db
}

async fn index_count(db: &TestDb) -> i64 {
    db.scalar_i64(&format!(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}'",
        db.schema
    ))
    .await
}

#[tokio::test]
async fn hypopg_advice_threshold_cache_and_good_plans() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("advisor_hypo").await;
    let before = index_count(&db).await;
    let advisor = IndexAdvisor::new(db.pool.clone()).mode(WhatIfMode::HypoPg);

    let advice = advisor
        .advise("SELECT * FROM orders WHERE customer_id = 42")
        .await
        .unwrap();
    assert_eq!(advice.method, WhatIfMethod::HypoPg);
    assert_eq!(advice.query, "SELECT * FROM orders WHERE customer_id = $1");
    let rec = &advice.recommendations[0];
    assert_eq!(rec.candidate.column_names(), vec!["customer_id"]);
    assert!(rec.improvement > 0.9, "{rec:?}");
    assert_eq!(
        rec.statement,
        format!(
            "CREATE INDEX CONCURRENTLY orders_customer_id_idx ON {}.orders (customer_id)",
            db.schema
        )
    );
    assert!(rec.predicted_size_bytes.is_some() && rec.hypopg_size_bytes.is_some());

    // What-if costs are cached per (fingerprint, index set): the same shape with another
    // literal is served from the cache.
    let misses = advisor.cache_stats().misses;
    let again = advisor
        .advise("SELECT * FROM orders WHERE customer_id = 7")
        .await
        .unwrap();
    assert_eq!(again.recommendations[0].candidate, rec.candidate);
    let stats = advisor.cache_stats();
    assert_eq!(stats.misses, misses, "no new EXPLAIN for a cached shape");
    assert!(stats.hit_rate() >= 0.5, "{stats:?}");

    // A query that already uses a good index gets no advice.
    let good = advisor
        .advise("SELECT * FROM orders WHERE id = $1")
        .await
        .unwrap();
    assert!(
        good.recommendations.is_empty(),
        "{:?}",
        good.recommendations
    );

    // ORDER BY … LIMIT: the index that returns rows in order wins.
    let top = advisor
        .advise("SELECT id, created_at FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 5")
        .await
        .unwrap();
    let best = &top.recommendations[0].candidate;
    assert_eq!(best.columns[0].name, "customer_id");
    assert!(
        best.columns
            .iter()
            .any(|c| c.name == "created_at" && c.descending),
        "{best:?}"
    );

    // A join inside LATERAL: the inner lookup is indexed.
    let lateral = advisor
        .advise(
            "SELECT c.id, l.total FROM customers c CROSS JOIN LATERAL \
             (SELECT o.total FROM orders o WHERE o.customer_id = c.id ORDER BY o.created_at DESC LIMIT 3) l \
             WHERE c.country = 'DE'",
        )
        .await
        .unwrap();
    let on_orders = lateral
        .recommendations
        .iter()
        .find(|r| r.candidate.table.name == "orders")
        .unwrap_or_else(|| panic!("{:?}", lateral.recommendations));
    assert_eq!(on_orders.candidate.columns[0].name, "customer_id");

    // A threshold nothing can meet.
    let strict = IndexAdvisor::new(db.pool.clone()).min_improvement(1.0);
    let none = strict
        .advise("SELECT * FROM orders WHERE customer_id = 42")
        .await
        .unwrap();
    assert!(none.recommendations.is_empty());

    // Nothing was created, and HypoPG was only installed inside the rolled-back transaction.
    assert_eq!(index_count(&db).await, before);
    db.drop_schema().await;
}

#[tokio::test]
async fn real_index_fallback_size_guard_and_verification() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("advisor_real").await;
    let before = index_count(&db).await;
    let advisor = IndexAdvisor::new(db.pool.clone()).mode(WhatIfMode::RealIndex);
    let advice = advisor
        .advise("SELECT id FROM orders WHERE status = 'void' AND created_at >= $1")
        .await
        .unwrap();
    assert_eq!(advice.method, WhatIfMethod::RealIndexRolledBack);
    let rec = &advice.recommendations[0];
    assert!(rec.improvement >= 0.2, "{rec:?}");
    assert!(rec.hypopg_size_bytes.is_none());
    assert_eq!(
        index_count(&db).await,
        before,
        "real what-if indexes are rolled back"
    );

    // Building it for real (rolled back) confirms the what-if cost.
    let check = advisor
        .verify_real(
            "SELECT id FROM orders WHERE status = 'void' AND created_at >= $1",
            rec,
        )
        .await
        .unwrap();
    assert!(
        (check.real_cost - check.whatif_cost).abs() <= check.whatif_cost * 0.05,
        "{check:?}"
    );
    assert_eq!(index_count(&db).await, before);

    // The size guard keeps real builds off big tables.
    let guarded = IndexAdvisor::new(db.pool.clone())
        .mode(WhatIfMode::RealIndex)
        .max_real_build_bytes(64 * 1024);
    let skipped = guarded
        .advise("SELECT * FROM orders WHERE customer_id = 42")
        .await
        .unwrap();
    assert!(skipped.recommendations.is_empty());
    assert!(skipped.skipped_by_size_guard > 0);
    let refused = guarded
        .verify_real("SELECT * FROM orders WHERE customer_id = 42", rec)
        .await
        .unwrap_err();
    assert!(matches!(refused, QueryError::Refused { .. }), "{refused:?}");

    // Malformed SQL: a typed error with its position, before anything runs.
    match advisor.advise("SELECT * FROM orders WHERE").await {
        Err(QueryError::Parse {
            line: 1,
            column: 27,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    db.drop_schema().await;
}

/// The btree size model against indexes really built on generated data: within ±15 %, where
/// HypoPG's estimate (no deduplication) is far off on duplicate-heavy keys.
#[tokio::test]
async fn predicted_index_sizes_match_real_builds() {
    let _url = perf_testkit::require_postgres!();
    let url = std::env::var("DATABASE_URL").unwrap();
    let db = TestDb::new(&url, "advisor_size", 2).await;
    db.exec(
        "CREATE TABLE sz (id int NOT NULL, k int NOT NULL, low int NOT NULL, big bigint NOT NULL,
                          t text NOT NULL, ts timestamptz NOT NULL, maybe int, amount numeric NOT NULL);
         INSERT INTO sz SELECT i, i % 1000, i % 7, i::bigint * 1000003, 'user-' || md5(i::text),
                timestamptz '2024-01-01' + (i % 50000) * interval '1 second',
                CASE WHEN i % 3 = 0 THEN NULL ELSE i % 100 END, (i % 5000) / 3.0
           FROM generate_series(1, 200000) i;
         ANALYZE sz;",
    )
    .await;
    let advisor = IndexAdvisor::new(db.pool.clone());
    let info = advisor
        .table_info(&TableName::qualified(db.schema.clone(), "sz"))
        .await
        .unwrap()
        .unwrap();
    // The distinct-count sample behind multi-column predictions.
    let kts = advisor
        .estimate_distinct(&info.name, &["k", "ts"])
        .await
        .unwrap();
    assert!((kts - 50_000.0).abs() / 50_000.0 < 0.2, "{kts}");
    let table = info.name.clone();
    let cases: Vec<IndexCandidate> = vec![
        IndexCandidate::new(table.clone(), &["id"]),
        IndexCandidate::new(table.clone(), &["k"]),
        IndexCandidate::new(table.clone(), &["low"]),
        IndexCandidate::new(table.clone(), &["big"]),
        IndexCandidate::new(table.clone(), &["t"]),
        IndexCandidate::new(table.clone(), &["ts"]),
        IndexCandidate::new(table.clone(), &["maybe"]),
        IndexCandidate::new(table.clone(), &["amount"]),
        IndexCandidate::new(table.clone(), &["k", "ts"]),
        IndexCandidate::new(table.clone(), &["low", "k"]),
        IndexCandidate::new(table.clone(), &["k"]).with_include(&["t"]),
    ];
    let client = db.pool.get().await.unwrap();
    // HypoPG may already be created for the whole database (cargo xtask services up does
    // it): then it is used and left in place; else created here and dropped after.
    let existed = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'", &[])
        .await
        .unwrap()
        .is_some();
    let hypo = existed
        || client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS hypopg")
            .await
            .is_ok();
    let mut report = Vec::new();
    for (i, cand) in cases.iter().enumerate() {
        let predicted = advisor.predict_size(cand).await.unwrap().unwrap() as f64;
        let name = format!("size_case_{i}");
        client
            .batch_execute(&format!("CREATE INDEX {name} {}", cand.definition()))
            .await
            .unwrap();
        let real: i64 = client
            .query_one(
                &format!("SELECT pg_relation_size('{}.{name}')", db.schema),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let hypo_size: Option<i64> =
            if hypo {
                let row = client
                .query_one(
                    "SELECT hypopg_relation_size(indexrelid)::int8 FROM hypopg_create_index($1)",
                    &[&format!("CREATE INDEX ON {}", cand.definition().trim_start_matches("ON "))],
                )
                .await
                .unwrap();
                Some(row.get(0))
            } else {
                None
            };
        let err = (predicted - real as f64) / real as f64;
        report.push(format!(
            "{:<40} real {:>9} predicted {:>9} ({:+.1} %) hypopg {:?}",
            cand.definition()
                .replace(&format!("ON {}.sz ", db.schema), ""),
            real,
            predicted as u64,
            err * 100.0,
            hypo_size
        ));
        assert!(err.abs() <= 0.15, "{}", report.join("\n"));
    }
    if hypo {
        client.batch_execute("SELECT hypopg_reset()").await.unwrap();
    }
    if hypo && !existed {
        client.batch_execute("DROP EXTENSION hypopg").await.unwrap();
    }
    drop(client);
    eprintln!("{}", report.join("\n"));
    db.drop_schema().await;
}

#[tokio::test]
async fn existing_index_findings_from_the_catalog() {
    let _url = perf_testkit::require_postgres!();
    let db = setup("advisor_existing").await;
    db.exec(
        "CREATE INDEX o_cust ON orders (customer_id);
         CREATE INDEX o_cust_created ON orders (customer_id, created_at);
         CREATE INDEX o_status ON orders (status);
         CREATE INDEX o_status2 ON orders (status);",
    )
    .await;
    // Use o_cust_created once so it is not "unused".
    db.exec("SET enable_seqscan = off; SELECT count(*) FROM orders WHERE customer_id = 1 AND created_at > now(); RESET enable_seqscan").await;
    let advisor = IndexAdvisor::new(db.pool.clone());
    let findings = advisor.existing_indexes(&db.schema).await.unwrap();
    let got: Vec<(&str, IndexFindingKind)> = findings
        .iter()
        .map(|f| (f.index.as_str(), f.kind))
        .collect();
    assert!(
        got.contains(&("o_cust", IndexFindingKind::RedundantPrefix)),
        "{got:?}"
    );
    assert!(
        got.contains(&("o_status2", IndexFindingKind::Duplicate)),
        "{got:?}"
    );
    assert!(
        got.contains(&("o_status", IndexFindingKind::Unused)),
        "{got:?}"
    );
    // Primary keys are never reported.
    assert!(got.iter().all(|(n, _)| !n.ends_with("_pkey")), "{got:?}");
    db.drop_schema().await;
}
