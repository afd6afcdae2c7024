//! Settings advice and the JSON / Markdown report (no server), plus the live readers of
//! pg_stat_statements and pg_settings.

use std::time::Duration;

use perf_query::{
    advise_settings, MachineInfo, NPlusOneDetector, PgSetting, Plan, Report, ReportIssue,
};

fn defaults() -> Vec<PgSetting> {
    vec![
        PgSetting::new("shared_buffers", "16384", Some("8kB")),
        PgSetting::new("effective_cache_size", "524288", Some("8kB")),
        PgSetting::new("work_mem", "4096", Some("kB")),
        PgSetting::new("maintenance_work_mem", "65536", Some("kB")),
        PgSetting::new("random_page_cost", "4", None),
        PgSetting::new("effective_io_concurrency", "1", None),
        PgSetting::new("max_connections", "100", None),
        PgSetting::new("max_parallel_workers_per_gather", "2", None),
        PgSetting::new("checkpoint_completion_target", "0.9", None),
    ]
}

#[test]
fn stock_settings_on_a_32gb_ssd_server() {
    let advice = advise_settings(&defaults(), &MachineInfo::new(32 << 30, 16, true));
    let rec = |n: &str| {
        advice
            .iter()
            .find(|a| a.name == n)
            .map(|a| a.recommended.clone())
    };
    assert_eq!(rec("shared_buffers").as_deref(), Some("8GB"));
    assert_eq!(rec("effective_cache_size").as_deref(), Some("24GB"));
    assert_eq!(rec("work_mem").as_deref(), Some("81MB"));
    assert_eq!(rec("maintenance_work_mem").as_deref(), Some("2GB"));
    assert_eq!(rec("random_page_cost").as_deref(), Some("1.1"));
    assert_eq!(rec("effective_io_concurrency").as_deref(), Some("200"));
    // Already fine: no advice.
    assert_eq!(rec("checkpoint_completion_target"), None);
    assert_eq!(rec("max_parallel_workers_per_gather"), None);
    assert!(
        advice
            .iter()
            .find(|a| a.name == "shared_buffers")
            .unwrap()
            .restart
    );
    assert!(advice.iter().all(|a| !a.reason.is_empty()));
}

#[test]
fn well_tuned_settings_get_no_advice_and_hdd_keeps_page_cost() {
    let tuned = vec![
        PgSetting::new("shared_buffers", "1048576", Some("8kB")), // 8GB of 32GB
        PgSetting::new("effective_cache_size", "3145728", Some("8kB")), // 24GB
        PgSetting::new("random_page_cost", "4", None),
    ];
    let advice = advise_settings(&tuned, &MachineInfo::new(32 << 30, 16, false));
    assert!(advice.is_empty(), "{advice:?}");
}

#[test]
fn report_json_and_markdown_carry_every_section_without_literals() {
    let detector = NPlusOneDetector::new(Default::default());
    for id in 0..8 {
        detector
            .record(
                &format!("SELECT * FROM lines WHERE order_id = {id} AND note = 'secret'"),
                "req-9",
                Duration::from_millis(10),
            )
            .unwrap();
    }
    let plan = Plan::from_json_str(
        r#"[{"Plan": {"Node Type": "Seq Scan", "Relation Name": "orders", "Total Cost": 1.0,
             "Plan Rows": 1, "Actual Rows": 3, "Actual Loops": 1, "Actual Total Time": 2000.0,
             "Filter": "(email = 'secret@example.com'::text)", "Rows Removed by Filter": 999997},
             "Execution Time": 2100.0}]"#,
    )
    .unwrap();
    let issues = perf_query::detect_issues(&plan, &perf_query::DetectorConfig::default());
    let mut report = Report::default();
    report.issues = issues
        .into_iter()
        .map(|issue| {
            ReportIssue::new(
                perf_query::redact_or_marker(
                    "SELECT * FROM orders WHERE email = 'secret@example.com'",
                ),
                issue,
            )
        })
        .collect();
    report.n_plus_one = detector.findings();
    report.settings = advise_settings(&defaults(), &MachineInfo::new(8 << 30, 4, true));
    let json = report.to_json().unwrap();
    let md = report.to_markdown();
    for text in [&json, &md] {
        assert!(!text.contains("secret"), "{text}");
    }
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["summary"]["n_plus_one"], 1);
    // Selective seq scan (high), slow query 2.1 s over the 1 s threshold (medium).
    assert_eq!(
        (
            v["summary"]["high"].as_u64(),
            v["summary"]["medium"].as_u64()
        ),
        (Some(1), Some(1)),
        "{json}"
    );
    assert_eq!(v["issues"][0]["issue"]["severity"], "high");
    assert!(
        md.contains("## N+1 queries") && md.contains("= ANY($1)"),
        "{md}"
    );
    assert!(md.contains("## Issues") && md.contains("## Settings"));
}

#[cfg(feature = "postgres")]
mod live {
    use perf_query::{read_settings, top_statements, QueryError, TopBy};

    use crate::support::TestDb;

    #[tokio::test]
    async fn pg_stat_statements_top_queries_and_settings() {
        let url = perf_testkit::require_postgres!();
        let db = TestDb::new(&url, "report_pgss", 1).await;
        db.exec("CREATE TABLE marker_pgss (id int PRIMARY KEY, v text)")
            .await;
        if !db.pg_stat_statements_ready().await {
            // The reader must say how to enable it.
            let err = top_statements(&db.pool, TopBy::Calls, 10)
                .await
                .unwrap_err();
            assert!(
                matches!(err, QueryError::ExtensionMissing { .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("shared_preload_libraries"));
            return;
        }
        let client = db.pool.get().await.unwrap();
        for i in 0..25 {
            client
                .query(
                    "SELECT v FROM marker_pgss WHERE id = $1 AND v <> 'literal-secret'",
                    &[&i],
                )
                .await
                .unwrap();
        }
        drop(client);
        let top = top_statements(&db.pool, TopBy::Calls, 500).await.unwrap();
        let mine = top
            .iter()
            .find(|s| s.query.contains("marker_pgss") && s.query.starts_with("SELECT v"))
            .unwrap_or_else(|| panic!("{top:?}"));
        assert!(mine.calls >= 25, "{mine:?}");
        assert!(!mine.query.contains("literal-secret"), "{}", mine.query);
        assert!(top.windows(2).all(|w| w[0].calls >= w[1].calls));

        let settings = read_settings(&db.pool).await.unwrap();
        let sb = settings
            .iter()
            .find(|s| s.name == "shared_buffers")
            .unwrap();
        assert!(sb.bytes().unwrap() >= 128 * 1024);
        assert_eq!(settings.len(), perf_query::ADVISED_SETTINGS.len());
        db.drop_schema().await;
    }

    /// A private server preloads the library but the extension is not created there.
    #[tokio::test]
    async fn missing_extension_says_how_to_enable_it() {
        let _url = perf_testkit::require_postgres!();
        let pg = match perf_testkit::TempPostgres::start() {
            Ok(pg) => pg,
            Err(e) => panic!("TempPostgres: {e}"),
        };
        let pool = perf_query::connect_pool(&pg.url(), 1).unwrap();
        let err = top_statements(&pool, TopBy::TotalTime, 5)
            .await
            .unwrap_err();
        match &err {
            QueryError::ExtensionMissing { extension, hint } => {
                assert_eq!(*extension, "pg_stat_statements");
                assert!(hint.contains("CREATE EXTENSION pg_stat_statements"));
            }
            other => panic!("{other:?}"),
        }
    }
}
