//! The `harness_selfcheck` group: exercises the whole pipeline and shows the harness's noise
//! floor. Its A/A row measures identical code as subject and peer, so any ratio far from 1.00x
//! is measurement noise, and tells the reader how much to trust small differences elsewhere.

use std::collections::VecDeque;
use std::hint::black_box;

use crate::harness::{Bench, Row};

/// Runs the group.
pub(crate) fn run(bench: &mut Bench) {
    let n: u64 = bench.pick(4_096, 65_536);
    let data: Vec<u64> = (0..n).collect();
    let sum = |iters: u64| {
        for _ in 0..iters {
            black_box(black_box(data.as_slice()).iter().sum::<u64>());
        }
    };
    bench.compare_ns(
        format!("A/A: sum of {n} u64, identical code (expect 1.00x)"),
        "slice sum",
        sum,
        "slice sum (same)",
        sum,
    );

    let len: usize = 1_000;
    bench.compare_ns(
        format!("push {len} u64 into a fresh collection"),
        "Vec::push",
        |iters| {
            for _ in 0..iters {
                let mut v = Vec::new();
                for i in 0..len {
                    v.push(black_box(i as u64));
                }
                black_box(&v);
            }
        },
        "VecDeque::push_back",
        |iters| {
            for _ in 0..iters {
                let mut v = VecDeque::new();
                for i in 0..len {
                    v.push_back(black_box(i as u64));
                }
                black_box(&v);
            }
        },
    );

    // A throughput figure with no peer: the memory bandwidth the sum above reaches.
    let stats = bench.measure(sum);
    let bytes = (n * 8) as f64;
    let mb_per_s = bytes / stats.median_ns * 1e9 / 1e6;
    bench.record(
        Row::new(
            format!("sum of {n} u64 (slice, {} KiB)", n * 8 / 1024),
            "MB/s",
            true,
        )
        .subject("slice sum", mb_per_s)
        .note(format!(
            "reference figure; spread ±{:.1}% (MAD)",
            stats.spread_pct()
        )),
    );
}
