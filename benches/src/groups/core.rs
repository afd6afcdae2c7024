//! The `core_*` groups: perf-core's hot paths against the crates and idioms they replace.
//!
//! - histogram recording vs `hdrhistogram` behind a `Mutex` (it records through `&mut`), on one
//!   and two threads;
//! - the versioned codec vs bare postcard (the price of the marker, version and checksum);
//! - stable keys vs the plan's `md5(json.dumps(args))` idiom;
//! - resource readings vs the floor (one bare read of `/proc/self/statm`), and the cost per call
//!   of a full sample.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Mutex;

use perf_core::metrics::LatencyHistogram;
use perf_core::resource::ResourceMonitor;
use serde::{Deserialize, Serialize};

use crate::harness::{Bench, Row};

/// Latency-like values: a deterministic spread from 1 µs to about 1 s.
fn values(n: usize) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1_000 + (x % 1_000_000_000) / (1 + (x >> 60))
        })
        .collect()
}

/// Histogram recording, one and two threads.
pub(crate) fn histogram(bench: &mut Bench) {
    let data = values(4096);
    let ours = LatencyHistogram::new();
    let peer = Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 2).unwrap(),
    );
    bench.compare_ns(
        "record one value, 1 thread",
        "perf-core LatencyHistogram",
        |iters| {
            for i in 0..iters {
                ours.record_value(black_box(data[(i & 4095) as usize]));
            }
        },
        "hdrhistogram (Mutex, 2 sig. digits)",
        |iters| {
            for i in 0..iters {
                let _ = peer
                    .lock()
                    .unwrap()
                    .record(black_box(data[(i & 4095) as usize]));
            }
        },
    );
    let threads = 2;
    bench.compare_ns(
        format!("record one value, {threads} threads contending (per op)"),
        "perf-core LatencyHistogram",
        |iters| {
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (ours, data) = (&ours, &data);
                    s.spawn(move || {
                        for i in (t..iters).step_by(threads as usize) {
                            ours.record_value(black_box(data[(i & 4095) as usize]));
                        }
                    });
                }
            });
        },
        "hdrhistogram (Mutex, 2 sig. digits)",
        |iters| {
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (peer, data) = (&peer, &data);
                    s.spawn(move || {
                        for i in (t..iters).step_by(threads as usize) {
                            let _ = peer
                                .lock()
                                .unwrap()
                                .record(black_box(data[(i & 4095) as usize]));
                        }
                    });
                }
            });
        },
    );
    let snapshot = ours.snapshot();
    bench.reference_ns(
        "snapshot + p50/p95/p99 of a filled histogram",
        "perf-core snapshot",
        |iters| {
            for _ in 0..iters {
                let s = black_box(&ours).snapshot();
                black_box((s.p50(), s.p95(), s.p99()));
            }
        },
    );
    black_box(snapshot);
}

#[derive(Clone, Serialize, Deserialize)]
struct LlmAnswer {
    model: String,
    prompt_tokens: u32,
    completion_tokens: u32,
    text: String,
    finish_reason: String,
    logprobs: Option<Vec<f32>>,
}

fn answer() -> LlmAnswer {
    LlmAnswer {
        model: "gpt-4o-mini-2024-07-18".into(),
        prompt_tokens: 812,
        completion_tokens: 96,
        text: "Rust's ownership model lets the compiler free memory deterministically. ".repeat(4),
        finish_reason: "stop".into(),
        logprobs: None,
    }
}

/// Codec round trip vs bare postcard.
pub(crate) fn codec(bench: &mut Bench) {
    let value = answer();
    let size = perf_core::codec::encode(&value).unwrap().len();
    bench.compare_ns(
        format!("encode + decode an LLM answer ({size} bytes)"),
        "perf-core codec (marker, version, CRC-32)",
        |iters| {
            let mut buf = Vec::with_capacity(512);
            for _ in 0..iters {
                buf.clear();
                perf_core::codec::encode_into(black_box(&value), &mut buf).unwrap();
                black_box(perf_core::codec::decode::<LlmAnswer>(&buf).unwrap());
            }
        },
        "postcard (no version, no checksum)",
        |iters| {
            for _ in 0..iters {
                let buf = postcard::to_allocvec(black_box(&value)).unwrap();
                black_box(postcard::from_bytes::<LlmAnswer>(&buf).unwrap());
            }
        },
    );
}

/// Stable keys vs md5 of JSON.
pub(crate) fn keys(bench: &mut Bench) {
    let args = (
        "gpt-4o",
        "Summarize the following document in three bullet points.",
        0.2f32,
        512u32,
    );
    bench.compare_ns(
        "key for (model, prompt, temperature, max_tokens)",
        "perf-core stable_key (blake3 + postcard)",
        |iters| {
            for _ in 0..iters {
                black_box(perf_core::keys::stable_key("llm", black_box(&args)).unwrap());
            }
        },
        "md5(serde_json) hex, the plan's idiom",
        |iters| {
            for _ in 0..iters {
                let json = serde_json::to_vec(black_box(&args)).unwrap();
                black_box(format!("llm:{:x}", md5::compute(&json)));
            }
        },
    );
}

/// The least work an RSS reading can do on Linux: one read of `/proc/self/statm`.
fn statm_rss_pages() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Resource readings vs a bare /proc read.
pub(crate) fn resource(bench: &mut Bench) {
    let monitor = match ResourceMonitor::new() {
        Ok(m) => m,
        Err(e) => {
            bench.skip(format!("resource monitor unavailable: {e}"));
            return;
        }
    };
    if statm_rss_pages() == 0 {
        bench.skip("no /proc/self/statm on this platform: no floor to compare with");
    } else {
        bench.compare_ns(
            "read this process's RSS",
            "perf-core ResourceMonitor::rss_bytes",
            |iters| {
                for _ in 0..iters {
                    black_box(monitor.rss_bytes());
                }
            },
            "bare read of /proc/self/statm (floor)",
            |iters| {
                for _ in 0..iters {
                    black_box(statm_rss_pages());
                }
            },
        );
    }
    let stats = bench.measure(|iters| {
        for _ in 0..iters {
            black_box(monitor.sample());
        }
    });
    bench.record(
        Row::new(
            "full sample: RSS, CPU %, system memory, load",
            "µs/call",
            false,
        )
        .subject("perf-core ResourceMonitor::sample", stats.median_ns / 1e3)
        .note(format!(
            "cost per call, to weigh against a chunk's work; spread ±{:.1}% (MAD); no peer",
            stats.spread_pct()
        )),
    );
}
