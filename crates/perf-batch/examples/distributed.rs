//! A distributed batch over Redis Streams: one producer process and several worker processes.
//!
//! ```text
//! cargo run -p perf-batch --features redis --example distributed -- \
//!     [--url redis://127.0.0.1:6379] [--workers 4] [--items 20000] [--chunk 100] [--item-us 200]
//! ```
//!
//! The producer enqueues the items in chunks, starts `--workers` copies of this binary in worker
//! mode (`distributed worker <url> <prefix> <name> <item-us>`), waits until every chunk has a
//! result, checks the results and prints the throughput. Kill a worker with `kill -9` while it
//! runs: its chunks are reclaimed by the others after the visibility timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use perf_batch::distributed::{RedisQueue, RedisWorker, WorkerOptions};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// Simulated work: `item_us` of waiting per item (an API call, a query).
async fn work(items: Vec<u64>, item_us: u64) -> Result<Vec<u64>, String> {
    tokio::time::sleep(Duration::from_micros(item_us * items.len() as u64)).await;
    Ok(items.into_iter().map(|x| x * x).collect())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        let (url, prefix, name) = (&args[2], &args[3], &args[4]);
        let item_us: u64 = args[5].parse().unwrap();
        let opts = WorkerOptions::default()
            .visibility_timeout(Duration::from_secs(5))
            .block(Duration::from_millis(200));
        let worker = RedisWorker::connect(url, prefix.as_str(), name.as_str(), opts)
            .await
            .unwrap();
        let stats = worker
            .run(move |items: Vec<u64>| work(items, item_us), None)
            .await
            .unwrap();
        eprintln!("{name}: {stats:?}");
        return;
    }

    let url = arg(&args, "--url", "redis://127.0.0.1:6379");
    let workers: usize = arg(&args, "--workers", "4").parse().unwrap();
    let items: u64 = arg(&args, "--items", "20000").parse().unwrap();
    let chunk: usize = arg(&args, "--chunk", "100").parse().unwrap();
    let item_us = arg(&args, "--item-us", "200");
    let prefix = format!("perf_batch_example_{}", std::process::id());

    let queue = RedisQueue::connect(&url, prefix.as_str()).await.unwrap();
    queue.clear().await.unwrap();
    queue.ensure_group().await.unwrap();
    let input: Vec<u64> = (0..items).collect();
    let started = Instant::now();
    let chunks = queue.enqueue(&input, chunk).await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..workers)
        .map(|w| {
            Command::new(&exe)
                .args(["worker", &url, &prefix, &format!("worker-{w}"), &item_us])
                .spawn()
                .unwrap()
        })
        .collect();
    let clock = perf_core::clock::system_clock();
    let status = queue
        .wait_complete(Duration::from_millis(10), &clock)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let results: Vec<u64> = queue.collect().await.unwrap();
    assert_eq!(results, input.iter().map(|x| x * x).collect::<Vec<_>>());
    for c in &mut children {
        c.wait().unwrap();
    }
    queue.clear().await.unwrap();
    println!(
        "{workers} worker processes, {items} items in {chunks} chunks ({} dead): {:.3} s, {:.0} items/s",
        status.dead,
        elapsed.as_secs_f64(),
        items as f64 / elapsed.as_secs_f64()
    );
}
