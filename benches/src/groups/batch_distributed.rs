//! `batch_distributed`: items/s of a distributed job over Redis Streams with 1, 2 and 4 worker
//! processes (this binary re-executed as workers), and the scaling against one worker.
//!
//! Each worker count gets its own job prefix (unique per run), removed afterwards; worker
//! processes still alive when the group ends (a failure) are killed.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used)]

use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perf_batch::distributed::{RedisQueue, RedisWorker, WorkerOptions};

use super::batch_child::{child_command, param};
use crate::harness::{Bench, Row};

const CHUNK: usize = 100;
const ITEM_US: u64 = 200;

/// Simulated work: `item_us` of waiting per item (an API call, a query).
async fn work(items: Vec<u64>, item_us: u64) -> Result<Vec<u64>, String> {
    tokio::time::sleep(Duration::from_micros(item_us * items.len() as u64)).await;
    Ok(items.into_iter().map(|x| x * x).collect())
}

/// Child entry: one worker, until the job is complete.
pub(crate) fn worker() -> ExitCode {
    let url: String = param("PERFKIT_BENCH_REDIS_URL");
    let prefix: String = param("PERFKIT_BENCH_PREFIX");
    let name: String = param("PERFKIT_BENCH_WORKER");
    let item_us: u64 = param("PERFKIT_BENCH_ITEM_US");
    let rt = super::batch::runtime();
    rt.block_on(async {
        let opts = WorkerOptions::default()
            .visibility_timeout(Duration::from_secs(30))
            .block(Duration::from_millis(200));
        let worker = RedisWorker::connect(&url, prefix, name, opts)
            .await
            .unwrap();
        worker
            .run(move |items: Vec<u64>| work(items, item_us), None)
            .await
            .unwrap();
    });
    ExitCode::SUCCESS
}

/// Worker processes, killed if still running when dropped.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs the job with `workers` processes; returns items/s from enqueue to the last result.
fn run_job(rt: &tokio::runtime::Runtime, url: &str, workers: usize, items: u64) -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!(
        "perfkit_bench_dist_{}_{nanos}_{workers}",
        std::process::id()
    );
    let queue = rt
        .block_on(RedisQueue::connect(url, prefix.as_str()))
        .unwrap();
    let input: Vec<u64> = (0..items).collect();
    let run = || {
        let started = Instant::now();
        rt.block_on(queue.enqueue(&input, CHUNK)).unwrap();
        let mut children = Workers(Vec::new());
        for w in 0..workers {
            let child = child_command("batch_worker")
                .env("PERFKIT_BENCH_REDIS_URL", url)
                .env("PERFKIT_BENCH_PREFIX", &prefix)
                .env("PERFKIT_BENCH_WORKER", format!("worker-{w}"))
                .env("PERFKIT_BENCH_ITEM_US", ITEM_US.to_string())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            children.0.push(child);
        }
        let clock = perf_core::clock::system_clock();
        let status = rt
            .block_on(queue.wait_complete(Duration::from_millis(5), &clock))
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(status.dead, 0);
        let results: Vec<u64> = rt.block_on(queue.collect()).unwrap();
        assert_eq!(results, input.iter().map(|x| x * x).collect::<Vec<_>>());
        for c in &mut children.0 {
            assert!(c.wait().unwrap().success(), "a worker failed");
        }
        secs
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    // The job's keys go whatever happened.
    rt.block_on(queue.clear()).unwrap();
    match outcome {
        Ok(secs) => items as f64 / secs,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Items/s with 1, 2 and 4 worker processes.
pub(crate) fn distributed(bench: &mut Bench) {
    let Some(url) = bench.require_redis() else {
        return;
    };
    let rt = super::batch::runtime();
    let items: u64 = bench.pick(8_000, 20_000);
    // A small unrecorded job first: the first exec of this (large) binary reads it from disk,
    // which would otherwise count against the first measured worker count only.
    run_job(&rt, &url, 2, 400);
    let one = run_job(&rt, &url, 1, items);
    bench.record(
        Row::new(
            format!("{items} items of {ITEM_US} µs in chunks of {CHUNK}, Redis Streams: items/s with 1 worker process"),
            "items/s",
            true,
        )
        .subject("perf-batch RedisWorker ×1", one)
        .note(format!(
            "from the first XADD to the last result, worker start-up included, after an unrecorded warm-up job; the ceiling of one worker is {:.0} items/s (chunks run one at a time)",
            1e6 / ITEM_US as f64
        )),
    );
    for workers in [2usize, 4] {
        let rate = run_job(&rt, &url, workers, items);
        bench.record(
            Row::new(
                format!("{items} items of {ITEM_US} µs in chunks of {CHUNK}, Redis Streams: items/s, {workers} worker processes vs 1"),
                "items/s",
                true,
            )
            .subject(format!("perf-batch RedisWorker ×{workers}"), rate)
            .peer("perf-batch RedisWorker ×1", one)
            .note(format!(
                "ratio = scaling (ideal {workers}.00x); each worker is a separate perf-bench process"
            )),
        );
    }
}
