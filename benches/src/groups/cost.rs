//! The `cost_*` groups: perf-cost's token counting against tiktoken-rs and bpe-openai, usage
//! tracking and reports, and reserve + commit round trips on the Redis and PostgreSQL ledgers.
//!
//! Counting rows run every counter on the same text in the same run and refuse to report a figure
//! when the counts differ. The corpus is perf-cost's golden corpus (English, code, CJK, emoji,
//! whitespace runs) repeated to about 1 MiB.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use perf_cost::{
    BudgetConfig, BudgetManager, BudgetScope, Catalog, CostTracker, Encoding, GroupBy, Ledger,
    Period, SpendRequest, Usage, UsageEvent, UsageReport, Usd,
};

use perf_testkit::lcg_text as pseudo_random;

use crate::harness::{Bench, Row};

/// One event of the plan's naive tracker: model, user, pipeline, usage, cost.
type NaiveEvent = (String, String, String, Usage, Usd);

/// A ledger under test: its name, the ledger, and how to clean up after it.
type LedgerBackend = (&'static str, Arc<dyn Ledger>, Box<dyn FnOnce()>);

fn corpus(target_bytes: usize) -> String {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/perf-cost/tests/data");
    let one: String = [
        "english.txt",
        "code.txt",
        "cjk.txt",
        "emoji.txt",
        "whitespace.txt",
    ]
    .iter()
    .map(|f| String::from_utf8(std::fs::read(dir.join(f)).unwrap()).unwrap())
    .collect();
    let mut text = String::with_capacity(target_bytes + one.len());
    while text.len() < target_bytes {
        text.push_str(&one);
    }
    text
}

fn mb_per_s(bytes: usize, ns: f64) -> f64 {
    bytes as f64 / ns * 1e9 / 1e6
}

/// Token counting throughput: perf-cost vs tiktoken-rs `encode_ordinary().len()` and bpe-openai
/// `count`, o200k_base and cl100k_base, plus the one-character-repeated worst case.
pub(crate) fn counting(bench: &mut Bench) {
    let text = corpus(bench.pick(256 * 1024, 1024 * 1024));
    let bytes = text.len();
    for (enc, tk, bpe) in [
        (
            Encoding::O200kBase,
            tiktoken_rs::o200k_base_singleton(),
            bpe_openai::o200k_base(),
        ),
        (
            Encoding::Cl100kBase,
            tiktoken_rs::cl100k_base_singleton(),
            bpe_openai::cl100k_base(),
        ),
    ] {
        let ours = enc.encoder().unwrap();
        let (a, b, c) = (
            ours.count(&text),
            tk.encode_ordinary(&text).len(),
            bpe.count(&text),
        );
        if a != b || a != c {
            bench.skip(format!(
                "{enc}: counts differ (perf-cost {a}, tiktoken-rs {b}, bpe-openai {c}); no figure"
            ));
            continue;
        }
        let row = bench.compare_ns(
            format!(
                "count {enc}, mixed corpus {} KiB ({a} tokens), ns per pass",
                bytes / 1024
            ),
            "perf-cost Encoder::count",
            |iters| {
                for _ in 0..iters {
                    std::hint::black_box(ours.count(std::hint::black_box(&text)));
                }
            },
            "tiktoken-rs encode_ordinary().len()",
            |iters| {
                for _ in 0..iters {
                    std::hint::black_box(tk.encode_ordinary(std::hint::black_box(&text)).len());
                }
            },
        );
        let (ours_ns, tk_ns) = (row.subject_value, row.peer_value);
        let bpe_stats = bench.measure(|iters| {
            for _ in 0..iters {
                std::hint::black_box(bpe.count(std::hint::black_box(&text)));
            }
        });
        let note = format!("same {a} tokens from all three; single thread");
        bench.record(
            Row::new(format!("count {enc}, mixed corpus"), "MB/s", true)
                .subject("perf-cost", mb_per_s(bytes, ours_ns))
                .peer("tiktoken-rs 0.12", mb_per_s(bytes, tk_ns))
                .note(note.clone()),
        );
        bench.record(
            Row::new(format!("count {enc}, mixed corpus"), "MB/s", true)
                .subject("perf-cost", mb_per_s(bytes, ours_ns))
                .peer("bpe-openai 0.3", mb_per_s(bytes, bpe_stats.median_ns))
                .note(format!(
                    "{note}; bpe-openai measured right after the pair above"
                )),
        );
        bench.record(
            Row::new(format!("count {enc}, mixed corpus"), "Mtokens/s", true)
                .subject("perf-cost", a as f64 / ours_ns * 1e3)
                .peer("tiktoken-rs 0.12", a as f64 / tk_ns * 1e3)
                .note(note),
        );
    }

    adversarial(bench);
}

/// Runs `f`, turning a panic into `None` with the panic message kept off the report's output
/// (tiktoken-rs panics on long whitespace runs: fancy-regex reports a `StackOverflow`).
fn guarded(f: impl FnOnce() -> usize) -> Option<usize> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    std::panic::set_hook(hook);
    out
}

/// Best of 3 wall times of `f`, in ms, and its result; `None` if it panicked.
fn best_of_3(f: &dyn Fn() -> usize) -> Option<(f64, usize)> {
    let mut best = f64::MAX;
    let mut result = 0;
    for _ in 0..3 {
        let t = Instant::now();
        result = guarded(|| std::hint::black_box(f()))?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Some((best, result))
}

/// 1 MiB texts pre-tokenization cannot split (or splits into few long pieces): perf-cost vs
/// bpe-openai and tiktoken-rs, o200k_base, with identical counts.
fn adversarial(bench: &mut Bench) {
    const MIB: usize = 1 << 20;
    const CJK: &str = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得";
    let enc = Encoding::O200kBase.encoder().unwrap();
    let bpe = bpe_openai::o200k_base();
    let tk = tiktoken_rs::o200k_base_singleton();
    // Build the long-piece tables outside the timed runs (a one-time cost per process).
    enc.count(&"a".repeat(256));
    let texts: Vec<(&str, String)> = vec![
        ("one repeated char 'a'", "a".repeat(MIB)),
        ("spaces", " ".repeat(MIB)),
        ("repeated 'ab'", "ab".repeat(MIB / 2)),
        ("repeated 'abc'", "abc".repeat(MIB / 3)),
        (
            "random a-z, no spaces",
            pseudo_random("abcdefghijklmnopqrstuvwxyz", MIB, 1),
        ),
        ("random digits", pseudo_random("0123456789", MIB, 4)),
        (
            "random whitespace (space, tab, newline)",
            pseudo_random(" \t\n", MIB, 7),
        ),
        ("random CJK, no spaces", pseudo_random(CJK, MIB / 3, 5)),
    ];
    for (what, text) in texts {
        let bytes = text.len() / 1024;
        let (Some((ours, a)), Some((theirs, c))) = (
            best_of_3(&|| enc.count(&text)),
            best_of_3(&|| bpe.count(&text)),
        ) else {
            bench.skip(format!("{what}: a counter panicked; no figure"));
            continue;
        };
        if a != c {
            bench.skip(format!(
                "{what}: counts differ (perf-cost {a}, bpe-openai {c}); no figure"
            ));
            continue;
        }
        let name = format!("count o200k, {bytes} KiB {what}");
        bench.record(
            Row::new(name.clone(), "ms", false)
                .subject("perf-cost", ours)
                .peer("bpe-openai 0.3", theirs)
                .note(format!("{a} tokens, same count; best of 3")),
        );
        match best_of_3(&|| tk.encode_ordinary(&text).len()) {
            Some((tk_ms, b)) if b == a => bench.record(
                Row::new(name, "ms", false)
                    .subject("perf-cost", ours)
                    .peer("tiktoken-rs 0.12", tk_ms)
                    .note(format!("{a} tokens, same count; best of 3")),
            ),
            Some((_, b)) => bench.skip(format!(
                "{what}: counts differ (perf-cost {a}, tiktoken-rs {b}); no figure"
            )),
            None => bench.skip(format!(
                "{what}: tiktoken-rs 0.12 panics (fancy-regex StackOverflow); perf-cost {ours:.1} ms, bpe-openai {theirs:.1} ms"
            )),
        }
    }
}

/// `track` events/s and report cost: perf-cost's incremental aggregates vs the plan's list of
/// events scanned per report.
pub(crate) fn tracking(bench: &mut Bench) {
    let catalog = Catalog::builtin().unwrap();
    let models = [
        "gpt-4o",
        "gpt-4o-mini",
        "claude-sonnet-4-5",
        "gemini-2.5-flash",
    ];
    let tracker = CostTracker::new(catalog.clone());
    let plan: Mutex<Vec<NaiveEvent>> = Mutex::new(Vec::new());
    let (mut i, mut j) = (0u64, 0u64);
    let row = bench.compare_ns(
        "record one call (model, user, pipeline, tokens), 1 thread",
        "perf-cost CostTracker::track",
        |iters| {
            for _ in 0..iters {
                i += 1;
                let e = UsageEvent::new(models[(i % 4) as usize], Usage::new(1000 + i % 500, 200))
                    .user(format!("u{}", i % 50))
                    .pipeline(if i % 2 == 0 { "rag" } else { "chat" });
                std::hint::black_box(tracker.track(e).unwrap());
            }
        },
        "plan: price + push to Mutex<Vec>",
        |iters| {
            for _ in 0..iters {
                j += 1;
                let model = models[(j % 4) as usize];
                let usage = Usage::new(1000 + j % 500, 200);
                let cost = catalog.cost(model, &usage).unwrap();
                plan.lock().unwrap().push((
                    model.to_owned(),
                    format!("u{}", j % 50),
                    (if j % 2 == 0 { "rag" } else { "chat" }).to_owned(),
                    usage,
                    cost,
                ));
            }
        },
    );
    bench.record(
        Row::new("record one call, 1 thread", "events/s", true)
            .subject("perf-cost CostTracker::track", 1e9 / row.subject_value)
            .peer("plan: price + push to Mutex<Vec>", 1e9 / row.peer_value)
            .note(
                "the tracker also keeps day/model/user/pipeline aggregates and a bounded history",
            ),
    );
    let events = plan.lock().unwrap().len();
    let day = chrono::Utc::now().date_naive();
    let plan_events = plan.lock().unwrap();
    bench.compare_ns(
        format!("usage report by user ({events} events recorded, 50 users)"),
        "perf-cost UsageReport::build (aggregates)",
        |iters| {
            for _ in 0..iters {
                std::hint::black_box(UsageReport::build(&tracker, GroupBy::User, day, day));
            }
        },
        "plan: scan every event",
        |iters| {
            for _ in 0..iters {
                let mut by: BTreeMap<&str, Usd> = BTreeMap::new();
                for e in plan_events.iter() {
                    *by.entry(e.1.as_str()).or_default() += e.4;
                }
                std::hint::black_box(by);
            }
        },
    );
}

async fn reserve_commit_rate(manager: &Arc<BudgetManager>, tasks: usize, per_task: usize) -> f64 {
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let m = manager.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let r = m
                    .reserve(&SpendRequest::new(Usd::from_nanos(10)).user(format!("u{}", t % 8)))
                    .await
                    .unwrap();
                m.commit(r, Usd::from_nanos(7)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (tasks * per_task) as f64 / started.elapsed().as_secs_f64()
}

async fn floor_rate(ledger: &Arc<dyn Ledger>, tasks: usize, per_task: usize) -> f64 {
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let l = ledger.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                l.line_state("global|total").await.unwrap();
                l.line_state("global|total").await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (tasks * per_task) as f64 / started.elapsed().as_secs_f64()
}

/// reserve + commit pairs per second on the shared ledgers, against the floor of two trivial
/// reads of one line (the same number of round trips) through the same connection(s).
pub(crate) fn ledgers(bench: &mut Bench) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = BudgetConfig::default()
        .budget(
            BudgetScope::Global,
            Period::Daily,
            Usd::from_cents(1_000_000),
        )
        .budget(
            BudgetScope::EachUser,
            Period::Daily,
            Usd::from_cents(1_000_000),
        );
    let per_task = bench.pick(50, 300);
    let mut backends: Vec<LedgerBackend> = Vec::new();
    if let Some(url) = bench.require_redis() {
        let prefix = perf_testkit::unique_name("bench_cost");
        let l = runtime
            .block_on(perf_cost::RedisLedger::connect(&url, &prefix))
            .unwrap();
        let cleanup = l.clone();
        let handle = runtime.handle().clone();
        backends.push((
            "Redis (Lua script)",
            Arc::new(l),
            Box::new(move || {
                handle.block_on(cleanup.destroy()).unwrap();
            }),
        ));
    }
    if let Some(url) = bench.require_postgres() {
        for (name, durable) in [
            ("PostgreSQL (group commit, pool 8)", true),
            (
                "PostgreSQL (group commit, pool 8, synchronous_commit off)",
                false,
            ),
        ] {
            let schema = perf_testkit::unique_name("bench_cost");
            let options = perf_cost::PostgresLedgerOptions::default()
                .pool_size(8)
                .synchronous_commit(durable);
            let l = runtime
                .block_on(perf_cost::PostgresLedger::connect_with(
                    &url, &schema, options,
                ))
                .unwrap();
            let cleanup = l.clone();
            let handle = runtime.handle().clone();
            backends.push((
                name,
                Arc::new(l),
                Box::new(move || {
                    handle.block_on(cleanup.destroy()).unwrap();
                }),
            ));
        }
    }
    for (name, ledger, cleanup) in backends {
        let manager = Arc::new(BudgetManager::new(
            config.clone(),
            ledger.clone(),
            perf_core::clock::system_clock(),
        ));
        for tasks in [1usize, 64] {
            let n = if tasks == 1 { per_task * 4 } else { per_task };
            let ours = runtime.block_on(reserve_commit_rate(&manager, tasks, n));
            let floor = runtime.block_on(floor_rate(&ledger, tasks, n));
            bench.record(
                Row::new(format!("{name}: reserve + commit, {tasks} task(s), 2 budget lines"), "pairs/s", true)
                    .subject("perf-cost BudgetManager", ours)
                    .peer("floor: 2 single-key reads", floor)
                    .note(format!("{} pairs; one process; the floor does the same number of round trips with no work", tasks * n)),
            );
        }
        cleanup();
    }
}
