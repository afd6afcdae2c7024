//! The `query_*` groups: perf-query against its peers and on a generated workload.
//!
//! - `query_fingerprint`: fingerprint throughput (tokenize, redact, collapse, blake3) against
//!   sqlparser's parse alone, the floor any AST-based fingerprint pays;
//! - `query_workload` (needs PostgreSQL): a generated shop — customers, orders, order lines,
//!   events; 1M orders (`--quick`: 50k) — with planted missing indexes, measuring the real
//!   speedup of the advisor's recommended indexes, the recall of plan analysis on the known
//!   slow queries (and no advice for well-indexed ones), the query-count reduction of the
//!   N+1 batched rewrite, the workload advisor's chosen index set under a storage budget
//!   (weighted latency of the statement mix, applied for real), and the repeat-query speedup
//!   of the result cache. The data is built
//!   once into schema `perfkit_bench` (`perfkit_bench_quick` for `--quick`) and reused.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use perf_query::deadpool_postgres::Pool;
use perf_query::{
    ExplainOptions, Explainer, IndexAdvisor, IssueKind, NPlusOneConfig, NPlusOneDetector,
    TrackedPool, WorkloadQuery,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::harness::{Bench, Row};

/// Statements an ORM-backed service sends, of different shapes and lengths.
const STATEMENTS: &[&str] = &[
    "SELECT id, email, created_at FROM users WHERE id = 42",
    "SELECT * FROM orders WHERE customer_id = 1234 AND status IN ('paid', 'shipped', 'done') ORDER BY created_at DESC LIMIT 20",
    "UPDATE carts SET updated_at = now(), total = 19.99 WHERE id = 77 AND version = 3",
    "INSERT INTO events (kind, customer_id, payload, created_at) VALUES ('view', 12, '{\"page\": \"/home\"}', now())",
    "SELECT c.id, c.name, count(o.id) AS n FROM customers c LEFT JOIN orders o ON o.customer_id = c.id \
     WHERE c.country = 'DE' AND o.created_at >= '2024-01-01' GROUP BY c.id, c.name HAVING count(o.id) > 5 ORDER BY n DESC LIMIT 50",
    "SELECT l.* FROM order_lines l JOIN products p ON p.id = l.product_id WHERE l.order_id = ANY($1) AND p.active",
    "DELETE FROM sessions WHERE expires_at < now() - interval '1 day'",
    "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '7 days') \
     SELECT r.customer_id, sum(r.total) FROM recent r WHERE r.total BETWEEN 10 AND 500 GROUP BY r.customer_id",
];

/// Fingerprint throughput against sqlparser's parse alone.
pub(crate) fn fingerprint(bench: &mut Bench) {
    let dialect = PostgreSqlDialect {};
    let n = STATEMENTS.len() as u64;
    let row = bench.compare_ns(
        format!("fingerprint one statement (mix of {n} ORM-style statements, 56-240 bytes)"),
        "perf-query normalize (tokens, redaction, IN-list collapse, blake3)",
        |iters| {
            for i in 0..iters {
                black_box(perf_query::normalize(black_box(STATEMENTS[(i % n) as usize])).unwrap());
            }
        },
        "sqlparser 0.63 parse only (no fingerprint)",
        |iters| {
            for i in 0..iters {
                black_box(
                    Parser::parse_sql(&dialect, black_box(STATEMENTS[(i % n) as usize])).unwrap(),
                );
            }
        },
    );
    bench.record(
        Row::new(
            format!("fingerprint throughput (same mix of {n} statements)"),
            "queries/s",
            true,
        )
        .subject("perf-query normalize", 1e9 / row.subject_value)
        .peer("sqlparser parse only", 1e9 / row.peer_value)
        .note("derived from the ns/op row above; one thread"),
    );
    let analyze = bench.measure(|iters| {
        for i in 0..iters {
            black_box(perf_query::analyze(black_box(STATEMENTS[(i % n) as usize])).unwrap());
        }
    });
    bench.record(
        Row::new(
            format!("full SQL analysis (parse + tables, filters, joins), mix of {n}"),
            "ns/op",
            false,
        )
        .subject("perf-query analyze", analyze.median_ns)
        .peer("sqlparser parse only", row.peer_value)
        .note("analysis = the parse plus the walk; the peer figure is from the row above"),
    );
}

/// Scale of the generated workload.
#[derive(Debug, Clone, Copy)]
struct Scale {
    schema: &'static str,
    customers: i64,
    orders: i64,
    lines_per_order: i64,
    events: i64,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Builds the schema unless it exists at this scale. Planted problems: no index on
/// `orders.customer_id`, `order_lines.order_id`, `events.customer_id`; `orders.status`
/// skewed (1 % 'pending'). Returns seconds spent building (0 when reused).
async fn build(pool: &Pool, s: Scale) -> f64 {
    let client = pool.get().await.unwrap();
    let existing: Option<i64> = client
        .query_opt(&format!("SELECT orders FROM {}.meta", s.schema), &[])
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0));
    if existing == Some(s.orders) {
        return 0.0;
    }
    let start = Instant::now();
    let sc = s.schema;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {sc} CASCADE; CREATE SCHEMA {sc};
             SET maintenance_work_mem = '256MB';
             CREATE TABLE {sc}.customers (id int PRIMARY KEY, country text NOT NULL, name text NOT NULL);
             INSERT INTO {sc}.customers SELECT i, (ARRAY['DE','FR','US','JP','BR'])[1 + i % 5], 'customer ' || i
               FROM generate_series(1, {c}) i;
             CREATE TABLE {sc}.orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                                       created_at timestamptz NOT NULL, total numeric(10,2) NOT NULL);
             INSERT INTO {sc}.orders SELECT i, 1 + (i::bigint * 7919) % {c},
                    CASE WHEN i % 100 = 0 THEN 'pending' ELSE (ARRAY['paid','shipped','done'])[1 + i % 3] END,
                    timestamptz '2023-01-01' + i * interval '30 seconds', (i % 10000) / 7.0
               FROM generate_series(1, {o}) i;
             CREATE TABLE {sc}.order_lines (id bigserial PRIMARY KEY, order_id bigint NOT NULL, product_id int NOT NULL,
                                            qty int NOT NULL, price numeric(10,2) NOT NULL);
             INSERT INTO {sc}.order_lines (order_id, product_id, qty, price)
               SELECT 1 + (i::bigint * 104729) % {o}, 1 + i % 5000, 1 + i % 4, (i % 3000) / 11.0
               FROM generate_series(1, {l}) i;
             CREATE TABLE {sc}.events (id bigserial PRIMARY KEY, customer_id int NOT NULL, kind text NOT NULL,
                                       created_at timestamptz NOT NULL, payload text);
             INSERT INTO {sc}.events (customer_id, kind, created_at, payload)
               SELECT 1 + (i::bigint * 31) % {c}, (ARRAY['view','click','cart','buy'])[1 + i % 4],
                      timestamptz '2024-01-01' + i * interval '5 seconds', md5(i::text)
               FROM generate_series(1, {e}) i;
             ANALYZE {sc}.customers; ANALYZE {sc}.orders; ANALYZE {sc}.order_lines; ANALYZE {sc}.events;
             CREATE TABLE {sc}.meta (orders bigint NOT NULL);
             INSERT INTO {sc}.meta VALUES ({o});",
            c = s.customers,
            o = s.orders,
            l = s.orders * s.lines_per_order,
            e = s.events,
        ))
        .await
        .unwrap();
    start.elapsed().as_secs_f64()
}

/// Median wall time of `runs` executions of `sql` with an int parameter varying per run.
async fn median_ms(pool: &Pool, sql: &str, params: &[i64], runs: usize) -> f64 {
    let client = pool.get().await.unwrap();
    let stmt = client.prepare(sql).await.unwrap();
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let p = params[i % params.len()];
        let start = Instant::now();
        black_box(client.query(&stmt, &[&p]).await.unwrap());
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Builds `candidate` for real (not concurrently: nothing else runs) and analyzes its table.
async fn build_index(pool: &Pool, candidate: &perf_query::IndexCandidate) {
    let c = pool.get().await.unwrap();
    c.batch_execute(&format!(
        "SET maintenance_work_mem = '256MB'; {}; ANALYZE {}",
        candidate.create_statement(false),
        candidate.table
    ))
    .await
    .unwrap();
}

/// The known slow queries (each misses an index) and queries already served by one.
const SLOW: &[(&str, &str)] = &[
    ("orders of a customer", "SELECT id, total FROM orders WHERE customer_id = $1::bigint"),
    ("lines of an order", "SELECT product_id, qty FROM order_lines WHERE order_id = $1"),
    (
        "latest events of a customer",
        "SELECT kind, created_at FROM events WHERE customer_id = $1::bigint ORDER BY created_at DESC LIMIT 20",
    ),
];
const GOOD: &[&str] = &[
    "SELECT * FROM customers WHERE id = $1::bigint",
    "SELECT * FROM orders WHERE id = $1",
    "SELECT * FROM order_lines WHERE id = $1",
];

/// The generated workload; see the module documentation.
pub(crate) fn workload(bench: &mut Bench) {
    let Some(url) = bench.require_postgres() else {
        return;
    };
    let scale = if bench.quick() {
        Scale {
            schema: "perfkit_bench_quick",
            customers: 5_000,
            orders: 50_000,
            lines_per_order: 2,
            events: 50_000,
        }
    } else {
        Scale {
            schema: "perfkit_bench",
            customers: 100_000,
            orders: 1_000_000,
            lines_per_order: 2,
            events: 1_000_000,
        }
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let bench_url = format!("{url}{sep}options=-csearch_path%3D{}", scale.schema);
    let rt = runtime();
    let pool = perf_query::connect_pool(&bench_url, 4).unwrap();
    let built = rt.block_on(build(&pool, scale));
    let scale_note = format!(
        "schema {}: {} customers, {} orders, {} order lines, {} events{}{}",
        scale.schema,
        scale.customers,
        scale.orders,
        scale.orders * scale.lines_per_order,
        scale.events,
        if bench.quick() {
            " (--quick scale; the full run uses 1M orders)"
        } else {
            ""
        },
        if built > 0.0 {
            format!("; built in {built:.0} s")
        } else {
            "; reused".to_string()
        }
    );
    let customer_ids: Vec<i64> = (1..=50).map(|i| i * 37 % scale.customers + 1).collect();
    let order_ids: Vec<i64> = (1..=50).map(|i| i * 7907 % scale.orders + 1).collect();
    let runs = bench.pick(15, 41);

    // Recall of plan analysis on the known slow queries, and index speedups.
    let explainer = Explainer::new(pool.clone());
    let advisor = IndexAdvisor::new(pool.clone());
    let mut flagged = 0;
    for (name, sql) in SLOW {
        let params: &[i64] = if sql.contains("order_id") {
            &order_ids
        } else {
            &customer_ids
        };
        let p0: i64 = params[0];
        let analysis = rt
            .block_on(explainer.analyze(sql, &[&p0], &ExplainOptions::analyze()))
            .unwrap();
        if analysis.issues.iter().any(|i| {
            matches!(
                i.kind,
                IssueKind::SeqScanSelectiveFilter
                    | IssueKind::SlowQuery
                    | IssueKind::IndexScanDiscardsRows
            )
        }) {
            flagged += 1;
        }
        let advice = rt.block_on(advisor.advise(sql)).unwrap();
        let Some(rec) = advice.recommendations.first() else {
            bench.record(
                Row::new(format!("{name}: recommended index"), "x faster", true)
                    .subject("no recommendation", 0.0)
                    .note(scale_note.clone()),
            );
            continue;
        };
        let before = rt.block_on(median_ms(&pool, sql, params, runs));
        let name_idx = rec.candidate.suggested_name();
        rt.block_on(build_index(&pool, &rec.candidate));
        let after = rt.block_on(median_ms(&pool, sql, params, runs));
        let real_size: i64 = rt.block_on(async {
            let c = pool.get().await.unwrap();
            c.query_one(
                &format!("SELECT pg_relation_size('{}.{}')", scale.schema, name_idx),
                &[],
            )
            .await
            .unwrap()
            .get(0)
        });
        rt.block_on(async {
            let c = pool.get().await.unwrap();
            c.batch_execute(&format!("DROP INDEX {}.{}", scale.schema, name_idx))
                .await
                .unwrap();
        });
        bench.record(
            Row::new(format!("{name}: median latency without → with the recommended index"), "ms", false)
                .subject("with perf-query's index", after)
                .peer("without (planted missing index)", before)
                .note(format!(
                    "{}; estimated cost {:.0} → {:.0} ({:.0} % cheaper); size predicted {} vs real {} bytes; {runs} runs; {scale_note}",
                    rec.statement,
                    rec.cost_before,
                    rec.cost_after,
                    rec.improvement * 100.0,
                    rec.predicted_size_bytes.unwrap_or(0),
                    real_size
                )),
        );
    }
    let mut false_advice = 0;
    for sql in GOOD {
        if !rt
            .block_on(advisor.advise(sql))
            .unwrap()
            .recommendations
            .is_empty()
        {
            false_advice += 1;
        }
    }
    bench.record(
        Row::new(format!("recall of plan analysis on {} known slow queries", SLOW.len()), "%", true)
            .subject("perf-query Explainer + detectors", 100.0 * f64::from(flagged) / SLOW.len() as f64)
            .note(format!(
                "plan target 95 %; missing-index advice for {false_advice} of {} queries already served by a primary key (target 0); {scale_note}",
                GOOD.len()
            )),
    );
    bench.record(
        Row::new(
            "what-if cache hit rate over the advisor calls above",
            "%",
            true,
        )
        .subject(
            "perf-query IndexAdvisor",
            advisor.cache_stats().hit_rate() * 100.0,
        )
        .note(format!("{:?}", advisor.cache_stats())),
    );

    workload_advice(bench, &rt, &pool, &scale_note, &customer_ids, &order_ids);

    // N+1: per-row loop vs the batched rewrite the detector proposes.
    let mut cfg = NPlusOneConfig::default();
    cfg.min_total = Duration::ZERO;
    let tracked = TrackedPool::new(pool.clone())
        .with_detector(std::sync::Arc::new(NPlusOneDetector::new(cfg)))
        .with_result_cache(Default::default());
    let orders_of = rt.block_on(async {
        let c = pool.get().await.unwrap();
        // The customer with the most orders among the sampled ones.
        let rows = c
            .query(
                "SELECT id FROM orders WHERE customer_id = $1",
                &[&(customer_ids[0] as i32)],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.get::<_, i64>(0))
            .collect::<Vec<i64>>()
    });
    let per_row_sql = "SELECT product_id, qty FROM order_lines WHERE order_id = $1";
    let start = Instant::now();
    let mut per_row_rows = 0;
    for id in &orders_of {
        per_row_rows += rt
            .block_on(tracked.query("bench-request", per_row_sql, &[id]))
            .unwrap()
            .len();
    }
    let per_row_ms = start.elapsed().as_secs_f64() * 1000.0;
    let finding = tracked.detector().findings().into_iter().next();
    if let Some(f) = finding {
        let rewrite = f.batched_rewrite.clone().unwrap_or_default();
        let start = Instant::now();
        let batched_rows = rt
            .block_on(tracked.query("bench-request-2", &rewrite, &[&orders_of]))
            .unwrap()
            .len();
        let batched_ms = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(
            batched_rows, per_row_rows,
            "the rewrite returns the same rows"
        );
        bench.record(
            Row::new(
                format!(
                    "N+1: lines of a customer's {} orders, per-row loop vs the suggested rewrite",
                    orders_of.len()
                ),
                "queries",
                false,
            )
            .subject("batched rewrite (= ANY($1))", 1.0)
            .peer("per-row loop (detected)", f64::from(f.count))
            .note(format!(
                "query-count reduction {:.0} % (plan target 90 %); rewrite: {rewrite}",
                f.query_reduction() * 100.0
            )),
        );
        bench.record(
            Row::new("N+1: wall time of the same fetch", "ms", false)
                .subject("batched rewrite", batched_ms)
                .peer("per-row loop", per_row_ms)
                .note("one pooled connection per statement; same rows; planted missing index on order_lines.order_id makes each per-row query a scan"),
        );
    } else {
        bench.skip(
            "N+1: the detector reported nothing (fewer than 5 orders for the sampled customer)",
        );
    }

    // Result cache: the same read repeated.
    let repeat_sql = "SELECT status, count(*), sum(total) FROM orders WHERE created_at >= now() - interval '3650 days' GROUP BY status";
    let repeats = bench.pick(20, 50);
    let uncached = {
        let start = Instant::now();
        for _ in 0..repeats {
            black_box(
                rt.block_on(tracked.query("cache", repeat_sql, &[]))
                    .unwrap(),
            );
        }
        start.elapsed().as_secs_f64() * 1000.0 / repeats as f64
    };
    let cached = {
        black_box(
            rt.block_on(tracked.query_cached("cache", repeat_sql, &[]))
                .unwrap(),
        );
        let start = Instant::now();
        for _ in 0..repeats {
            black_box(
                rt.block_on(tracked.query_cached("cache", repeat_sql, &[]))
                    .unwrap(),
            );
        }
        start.elapsed().as_secs_f64() * 1000.0 / repeats as f64
    };
    bench.record(
        Row::new("repeat of an aggregate over orders", "ms/query", false)
            .subject("perf-query result cache (hit)", cached)
            .peer("uncached through the same pool", uncached)
            .note(format!(
                "{repeats} repeats; saving {:.0} % of the time per repeat (plan target 50-80 %); hits include a pool checkout and statement prepare for the key",
                100.0 * (1.0 - cached / uncached)
            )),
    );

    // The same repeat served to a second instance (another process in production) through
    // perf-query's shared result cache on Redis.
    if let Some(redis) = bench.require_redis() {
        let _rt_guard = rt.enter(); // RedisTier::new needs a runtime.
        let prefix = format!("perfkit_bench_shared_{}", std::process::id());
        let shared = || {
            std::sync::Arc::new(
                perf_query::SharedResultCache::redis(&redis, &prefix, Duration::from_secs(300))
                    .unwrap(),
            )
        };
        let writer = TrackedPool::new(pool.clone()).with_shared_cache(shared());
        let reader = TrackedPool::new(perf_query::connect_pool(&bench_url, 2).unwrap())
            .with_shared_cache(shared());
        black_box(
            rt.block_on(writer.query_shared("cache", repeat_sql, &[]))
                .unwrap(),
        );
        let start = Instant::now();
        for _ in 0..repeats {
            black_box(
                rt.block_on(reader.query_shared("cache", repeat_sql, &[]))
                    .unwrap(),
            );
        }
        let hit = start.elapsed().as_secs_f64() * 1000.0 / repeats as f64;
        let stats = reader.shared_cache().unwrap().stats();
        rt.block_on(writer.shared_cache().unwrap().tier().clear())
            .unwrap();
        bench.record(
            Row::new(
                "repeat of an aggregate over orders, served to another instance",
                "ms/query",
                false,
            )
            .subject("perf-query shared result cache (Redis hit)", hit)
            .peer("uncached through the same pool", uncached)
            .note(format!(
                "{repeats} repeats; stored by a second TrackedPool on the same Redis prefix; saving {:.1} % per repeat; {stats:?}",
                100.0 * (1.0 - hit / uncached)
            )),
        );
    }
}

/// Workload mode: the slow and the well-indexed statements with call weights, one index set
/// chosen under a storage budget, built for real; the weighted median latency of the mix
/// before and after.
fn workload_advice(
    bench: &mut Bench,
    rt: &tokio::runtime::Runtime,
    pool: &Pool,
    scale_note: &str,
    customer_ids: &[i64],
    order_ids: &[i64],
) {
    let weights = [100.0, 300.0, 50.0];
    let mut workload: Vec<WorkloadQuery> = SLOW
        .iter()
        .zip(weights)
        .map(|((_, sql), w)| WorkloadQuery::new(*sql, w))
        .collect();
    workload.extend(GOOD.iter().map(|sql| WorkloadQuery::new(*sql, 1000.0)));
    let budget: u64 = bench.pick(4 << 20, 64 << 20);
    let advisor = IndexAdvisor::new(pool.clone());
    let start = Instant::now();
    let advice = rt
        .block_on(advisor.advise_workload(&workload, budget))
        .unwrap();
    let advise_s = start.elapsed().as_secs_f64();
    let runs = bench.pick(7, 21);
    let params = |sql: &str| -> &[i64] {
        if sql.contains("order_id") {
            order_ids
        } else {
            customer_ids
        }
    };
    let weighted_ms = |rt: &tokio::runtime::Runtime| -> f64 {
        workload
            .iter()
            .map(|q| q.weight * rt.block_on(median_ms(pool, &q.sql, params(&q.sql), runs)))
            .sum::<f64>()
            / workload.iter().map(|q| q.weight).sum::<f64>()
    };
    let before = weighted_ms(rt);
    let mut built = Vec::new();
    for i in &advice.indexes {
        rt.block_on(build_index(pool, &i.candidate));
        built.push(format!(
            "{}.{}",
            i.candidate.table.schema.clone().unwrap_or_default(),
            i.candidate.suggested_name()
        ));
    }
    let after = weighted_ms(rt);
    rt.block_on(async {
        let c = pool.get().await.unwrap();
        for name in &built {
            c.batch_execute(&format!("DROP INDEX {name}"))
                .await
                .unwrap();
        }
    });
    let chosen: Vec<String> = advice
        .indexes
        .iter()
        .map(|i| {
            format!(
                "{} ({} B, saves {:.0})",
                i.candidate.definition(),
                i.size_bytes,
                i.marginal_benefit
            )
        })
        .collect();
    bench.record(
        Row::new(
            format!(
                "workload advisor: weighted median latency of {} statements, before → with the chosen set",
                workload.len()
            ),
            "ms",
            false,
        )
        .subject("with perf-query's chosen index set", after)
        .peer("as planted (no index set)", before)
        .note(format!(
            "budget {budget} B, used {} B; chosen: {}; estimated workload cost {:.0} → {:.0} ({:.0} % cheaper); what-if cache hit rate {:.0} % ({:?}); advised in {advise_s:.1} s; weights 100/300/50 for the slow statements, 1000 each for the primary-key lookups; {runs} runs each; {scale_note}",
            advice.used_bytes,
            chosen.join("; "),
            advice.cost_before,
            advice.cost_after,
            advice.improvement() * 100.0,
            advice.cache.hit_rate() * 100.0,
            advice.cache,
        )),
    );
}
