//! `batch_memory`: MEMORY_BASED chunking against FIXED on a workload of more than 1 GiB.
//!
//! The input iterator produces 4 MiB documents lazily (every page written, so they are
//! resident), each freed when its item finishes; only the pulled chunks and the items in
//! flight are in memory at once. Each strategy runs in a fresh child process (this binary
//! re-executed), and the kernel's peak RSS of that process (`VmHWM`) is the figure, so the
//! bench process's own memory does not count.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use perf_batch::{BatchProcessor, BatchStatus, ChunkStrategy, RetryPolicy};

use super::batch_child::{child_command, field, param, result_line};
use crate::harness::{Bench, Row};

const MIB: u64 = 1 << 20;
const ITEM_MIB: u64 = 4;
const THRESHOLD_MIB: u64 = 512;
const CHUNK: usize = 200;
const CONCURRENCY: usize = 8;

/// One child's figures.
#[derive(Debug)]
struct ChildRun {
    peak_rss: u64,
    sampled_peak: u64,
    secs: f64,
    chunks: usize,
}

/// The kernel's peak RSS of this process (`VmHWM`), in bytes.
fn kernel_peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Child entry: runs the workload with the strategy in `PERFKIT_BENCH_STRATEGY` and prints one
/// `BATCH_MEMORY` line.
pub(crate) fn child() -> ExitCode {
    let items: u64 = param("PERFKIT_BENCH_ITEMS");
    let strategy = match param::<String>("PERFKIT_BENCH_STRATEGY").as_str() {
        "fixed" => ChunkStrategy::Fixed,
        _ => ChunkStrategy::MemoryBased,
    };
    let rt = super::batch::runtime();
    let p: BatchProcessor<()> = BatchProcessor::new()
        .strategy(strategy)
        .chunk_size(CHUNK)
        .max_concurrency(CONCURRENCY)
        .memory_threshold_bytes(THRESHOLD_MIB * MIB)
        .retry(RetryPolicy::none());
    let docs = (0..items).map(|i| vec![(i % 251) as u8 | 1; (ITEM_MIB * MIB) as usize]);
    let start = Instant::now();
    let r = rt.block_on(p.run(docs, |doc: Vec<u8>| async move {
        // An embedding call: 1 ms of waiting, then a small result from the document.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(doc.iter().step_by(4096).map(|&b| u64::from(b)).sum::<u64>())
    }));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(r.results.len() as u64, items);
    println!(
        "BATCH_MEMORY peak_rss={} sampled_peak={} secs={secs} chunks={}",
        kernel_peak_rss(),
        r.peak_rss_bytes.unwrap_or(0),
        r.chunk_sizes.len()
    );
    ExitCode::SUCCESS
}

fn run_child(strategy: &str, items: u64) -> ChildRun {
    let mut cmd = child_command("batch_memory");
    cmd.env("PERFKIT_BENCH_STRATEGY", strategy)
        .env("PERFKIT_BENCH_ITEMS", items.to_string());
    let line = result_line(cmd, "BATCH_MEMORY ");
    ChildRun {
        peak_rss: field(&line, "peak_rss"),
        sampled_peak: field(&line, "sampled_peak"),
        secs: field(&line, "secs"),
        chunks: field(&line, "chunks"),
    }
}

/// MEMORY_BASED peak RSS vs its threshold, next to FIXED, on 1–1.25 GiB of documents.
pub(crate) fn memory_based(bench: &mut Bench) {
    if !std::path::Path::new("/proc/self/status").exists() {
        bench.skip("needs Linux /proc for the kernel's peak RSS");
        return;
    }
    let items: u64 = bench.pick(256, 320);
    let fixed = run_child("fixed", items);
    let memory = run_child("memory_based", items);
    let mib = |b: u64| b as f64 / MIB as f64;
    let workload = format!(
        "{items} documents of {ITEM_MIB} MiB ({:.2} GiB) made lazily by the input iterator, concurrency {CONCURRENCY}, threshold {THRESHOLD_MIB} MiB",
        (items * ITEM_MIB) as f64 / 1024.0
    );
    bench.record(
        Row::new(
            format!("{workload}: peak RSS of the process (MiB)"),
            "MiB",
            false,
        )
        .subject("perf-batch MEMORY_BASED", mib(memory.peak_rss))
        .peer(format!("perf-batch FIXED ({CHUNK} items)"), mib(fixed.peak_rss))
        .note(format!(
            "kernel VmHWM of a fresh child process each; MEMORY_BASED {} the threshold ({:.0} % of it; sampled by perf-batch: {:.0} MiB), FIXED {:.0} % of it; {} vs {} chunks",
            if memory.peak_rss <= THRESHOLD_MIB * MIB { "stays under" } else { "EXCEEDS" },
            100.0 * memory.peak_rss as f64 / (THRESHOLD_MIB * MIB) as f64,
            mib(memory.sampled_peak),
            100.0 * fixed.peak_rss as f64 / (THRESHOLD_MIB * MIB) as f64,
            memory.chunks,
            fixed.chunks
        )),
    );
    bench.record(
        Row::new(format!("{workload}: items/s"), "items/s", true)
            .subject("perf-batch MEMORY_BASED", items as f64 / memory.secs)
            .peer(
                format!("perf-batch FIXED ({CHUNK} items)"),
                items as f64 / fixed.secs,
            )
            .note("one run each, same work: the throughput price of staying under the threshold (a ratio ≥ 1 means none)"),
    );
}
