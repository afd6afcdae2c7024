//! Configuration: file parsing, environment overrides, rollback switches, errors naming fields.

use perf_core::config::{CachePolicy, ChunkStrategy, PerfConfig};
use perf_core::Error;

const FULL: &str = r#"
[cache]
enabled = true
l1_max_bytes = 536870912
l1_policy = "lru"
l2_url = "redis://localhost:6379/0"
l2_ttl_secs = 3600

[batch]
chunk_size = 100
max_concurrency = 10
strategy = "adaptive"
memory_threshold_mb = 1000

[cost]
daily_budget_usd = 100.0
weekly_budget_usd = 500.0
monthly_budget_usd = 2000.0
alert_thresholds_percent = [80, 90, 100]

[query]
slow_query_threshold_ms = 1000
cache_ttl_secs = 300
"#;

#[test]
fn the_plans_settings_parse() {
    let c = PerfConfig::from_toml_str(FULL).unwrap();
    assert_eq!(c.cache.l1_max_bytes, 512 << 20);
    assert_eq!(c.cache.l1_policy, CachePolicy::Lru);
    assert_eq!(c.cache.l2_url.as_deref(), Some("redis://localhost:6379/0"));
    assert_eq!(c.batch.strategy, ChunkStrategy::Adaptive);
    assert_eq!(c.cost.monthly_budget_usd, Some(2000.0));
    assert_eq!(c.query.cache_ttl_secs, 300);
}

#[test]
fn empty_file_gives_valid_defaults() {
    let c = PerfConfig::from_toml_str("").unwrap();
    assert_eq!(c, PerfConfig::default());
    c.validate().unwrap();
    assert!(c.cache.enabled && c.batch.enabled && c.cost.enabled && c.query.enabled);
    assert_eq!(c.cost.per_request_cap_usd, Some(1.0));
}

#[test]
fn validation_errors_name_field_and_value() {
    let cases = [
        ("[cache]\nl1_max_bytes = 0", "cache.l1_max_bytes", "0"),
        ("[cache]\nl2_url = \"http://x\"", "cache.l2_url", "http://x"),
        ("[batch]\nmax_concurrency = 0", "batch.max_concurrency", "0"),
        (
            "[cost]\ndaily_budget_usd = -5.0",
            "cost.daily_budget_usd",
            "-5",
        ),
        (
            "[cost]\nalert_thresholds_percent = [90, 80]",
            "cost.alert_thresholds_percent",
            "[90, 80]",
        ),
        (
            "[query]\nn_plus_one_min_repeats = 1",
            "query.n_plus_one_min_repeats",
            "1",
        ),
    ];
    for (text, field, value) in cases {
        match PerfConfig::from_toml_str(text) {
            Err(Error::ConfigInvalid {
                field: f, value: v, ..
            }) => {
                assert_eq!((f.as_str(), v.as_str()), (field, value), "{text}");
            }
            other => panic!("{text}: expected ConfigInvalid, got {other:?}"),
        }
    }
}

#[test]
fn type_errors_and_unknown_fields_name_the_field() {
    let err = PerfConfig::from_toml_str("[cache]\nl1_max_bytes = \"lots\"").unwrap_err();
    assert!(matches!(err, Error::ConfigParse { .. }));
    assert!(err.to_string().contains("l1_max_bytes"), "{err}");

    let err = PerfConfig::from_toml_str("[cache]\nl1_max_bytez = 5").unwrap_err();
    assert!(err.to_string().contains("l1_max_bytez"), "{err}");

    let err = PerfConfig::from_toml_str("[cahce]\nenabled = false").unwrap_err();
    assert!(err.to_string().contains("cahce"), "{err}");

    let err = PerfConfig::from_toml_str("[batch]\nstrategy = \"magic\"").unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn environment_overrides_each_kind_of_field() {
    let c = PerfConfig::from_toml_str(FULL)
        .unwrap()
        .with_env([
            ("PERFKIT_CACHE_L1_MAX_BYTES", "1048576"),
            ("PERFKIT_CACHE_ENABLED", "false"),
            ("PERFKIT_CACHE_L1_POLICY", "fifo"),
            ("PERFKIT_CACHE_L2_PREFIX", "123"),
            ("PERFKIT_BATCH_STRATEGY", "memory_based"),
            ("PERFKIT_COST_ALERT_THRESHOLDS_PERCENT", "[50, 100]"),
            ("PERFKIT_COST_TIMEZONE", "Europe/Berlin"),
            ("PERFKIT_QUERY_ENABLED", "false"),
            ("PERFKIT_CACHE_L2_URL", ""),
            // Not ours: ignored.
            ("PERFKIT_REQUIRE_SERVICES", "1"),
            ("PERFKIT_CONFIG", "/nowhere.toml"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
    assert_eq!(c.cache.l1_max_bytes, 1 << 20);
    assert!(!c.cache.enabled);
    assert_eq!(c.cache.l1_policy, CachePolicy::Fifo);
    assert_eq!(c.cache.l2_prefix, "123");
    assert_eq!(c.cache.l2_url, None);
    assert_eq!(c.batch.strategy, ChunkStrategy::MemoryBased);
    assert_eq!(c.cost.alert_thresholds_percent, vec![50, 100]);
    assert_eq!(c.cost.timezone, "Europe/Berlin");
    assert!(!c.query.enabled);
    // Untouched fields keep the file's values.
    assert_eq!(c.cost.daily_budget_usd, Some(100.0));
}

#[test]
fn environment_errors_name_the_variable() {
    let err = PerfConfig::default()
        .with_env([("PERFKIT_CACHE_L1_MAX_BYTEZ", "5")])
        .unwrap_err();
    match err {
        Error::ConfigEnv { var, reason, .. } => {
            assert_eq!(var, "PERFKIT_CACHE_L1_MAX_BYTEZ");
            assert!(reason.contains("l1_max_bytez"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let err = PerfConfig::default()
        .with_env([("PERFKIT_BATCH_CHUNK_SIZE", "many")])
        .unwrap_err();
    assert!(
        matches!(err, Error::ConfigEnv { ref var, .. } if var == "PERFKIT_BATCH_CHUNK_SIZE"),
        "{err}"
    );
    // A well-typed override that fails validation names the field.
    let err = PerfConfig::default()
        .with_env([("PERFKIT_BATCH_CHUNK_SIZE", "0")])
        .unwrap_err();
    assert!(
        matches!(err, Error::ConfigInvalid { ref field, .. } if field == "batch.chunk_size"),
        "{err}"
    );
}

#[test]
fn files_load_and_missing_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perf.toml");
    std::fs::write(&path, FULL).unwrap();
    let c = PerfConfig::from_file(&path).unwrap();
    assert_eq!(c.cost.weekly_budget_usd, Some(500.0));
    let loaded = PerfConfig::load(Some(&path)).unwrap();
    assert_eq!(loaded.cache.l1_policy, CachePolicy::Lru);

    let missing = dir.path().join("absent.toml");
    let err = PerfConfig::from_file(&missing).unwrap_err();
    assert!(matches!(err, Error::ConfigRead { ref path, .. } if path == &missing));

    std::fs::write(&path, "[batch]\nchunk_size = -1").unwrap();
    let err = PerfConfig::from_file(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("perf.toml") && text.contains("chunk_size"),
        "{text}"
    );
}

#[test]
fn effective_config_round_trips_through_toml() {
    let c = PerfConfig::from_toml_str(FULL).unwrap();
    assert_eq!(PerfConfig::from_toml_str(&c.to_toml_string()).unwrap(), c);
}

#[test]
fn batch_checkpoint_min_gap_parses_overrides_and_validates() {
    assert_eq!(PerfConfig::default().batch.checkpoint_min_gap_ms, 500);
    let c = PerfConfig::from_toml_str("[batch]\ncheckpoint_min_gap_ms = 0").unwrap();
    assert_eq!(
        c.batch.checkpoint_min_gap_ms, 0,
        "0 writes at every interval"
    );
    let c = PerfConfig::from_toml_str("[batch]\ncheckpoint_min_gap_ms = 250")
        .unwrap()
        .with_env([("PERFKIT_BATCH_CHECKPOINT_MIN_GAP_MS", "2000")])
        .unwrap();
    assert_eq!(c.batch.checkpoint_min_gap_ms, 2000);
    let err = PerfConfig::from_toml_str("[batch]\ncheckpoint_min_gap_ms = 3600001").unwrap_err();
    assert!(
        matches!(err, Error::ConfigInvalid { ref field, ref value, .. }
            if field == "batch.checkpoint_min_gap_ms" && value == "3600001"),
        "{err}"
    );
    let err = PerfConfig::default()
        .with_env([("PERFKIT_BATCH_CHECKPOINT_MIN_GAP_MS", "-1")])
        .unwrap_err();
    assert!(
        matches!(err, Error::ConfigEnv { ref var, .. } if var == "PERFKIT_BATCH_CHECKPOINT_MIN_GAP_MS"),
        "{err}"
    );
    PerfConfig::from_toml_str("[batch]\ncheckpoint_min_gap_ms = 3600000").unwrap();
}
