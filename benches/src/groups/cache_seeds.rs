//! `cache_seed_sensitivity`: how much perf-cache's hit ratio depends on its hash seed.
//!
//! The other hit-ratio groups build every cache with hash seed 1, so that each figure is
//! reproducible. A user's cache gets a random seed, which moves the sketch's collisions and
//! the keys the miniature simulations sample, and some rows are sensitive to that. This group
//! runs the default policy with seeds 1 to 8 (1 to 4 with `--quick`) on the goal rows and
//! records the worst seed against the goal: within 1 point of the best of the README's
//! policies, moka and quick_cache (peers measured in the same run; moka's figure moves from run
//! to run, so where it comes within half a point of the others it is the median of three runs,
//! except with `--quick`). A ratio below 1.00 means at least one seed misses the goal, but the
//! ratio has two decimals: the note's "GOAL MISSED" verdict is what counts (with `--quick`,
//! trace rows are 1M-request prefixes, which the goal does not cover: a prefix below the
//! peers says so instead). The note also lists every seed's figure. P12's rows (13.2M
//! requests, eight times) are a group of their own, `cache_seed_sensitivity_p12`, so that
//! each fits the time budget; the filter `cache_seed_sensitivity` runs both.

use std::collections::HashMap;

use perf_cache::l1::Policy;

use super::cache::{
    best_published, load_trace, ratio_moka, ratio_ours_seeded, ratio_quick, trace_dir, trace_file,
    zipf, REFERENCE,
};
use crate::harness::{Bench, Row};

/// Runs `seeds` on `threads` threads; returns the hit % of each seed, in seed order.
fn over_seeds(trace: &[u64], capacity: u64, seeds: &[u64]) -> Vec<f64> {
    if seeds.is_empty() {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = seeds.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .chunks(per_thread)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&seed| ratio_ours_seeded(trace, Policy::TinyLfu, capacity, seed))
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(figures) => figures,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// What a row is judged against.
#[derive(Clone, Copy)]
enum Judged {
    /// A goal row: the best of the peers and, for a whole trace, the README's policies.
    Goal(Option<(f64, &'static str)>),
    /// A trace prefix (`--quick`): the goal is set on whole traces, so a prefix that falls
    /// short of the peers is reported as such, not as a missed goal.
    Prefix,
}

/// Records the worst seed of one row against its goal.
fn record(
    bench: &mut Bench,
    workload: &str,
    sequence: &[u64],
    capacity: u64,
    seeds: &[u64],
    judged: Judged,
) {
    let published = match judged {
        Judged::Goal(published) => published,
        Judged::Prefix => None,
    };
    let figures = over_seeds(sequence, capacity, seeds);
    let worst = figures.iter().copied().fold(f64::INFINITY, f64::min);
    let quick = ratio_quick(sequence, capacity);
    let others = published.map_or(quick, |(value, _)| value.max(quick));
    // moka seeds itself, so its figure moves from run to run; where it may set the goal, the
    // full run takes the median of three.
    let mut moka_runs = vec![ratio_moka(sequence, capacity)];
    if !bench.quick() && moka_runs[0] + 0.5 >= others {
        moka_runs.extend((0..2).map(|_| ratio_moka(sequence, capacity)));
    }
    let moka = crate::harness::median(&moka_runs);
    let mut best = ("moka".to_owned(), moka);
    if quick > best.1 {
        best = ("quick_cache".to_owned(), quick);
    }
    if let Some((value, policy)) = published {
        if value > best.1 {
            best = (format!("{policy} (README)"), value);
        }
    }
    let listed: Vec<String> = figures.iter().map(|f| format!("{f:.2}")).collect();
    let goal = best.1 - 1.0;
    let label = match judged {
        Judged::Goal(_) => "goal",
        Judged::Prefix => "best peer",
    };
    let verdict = if worst < goal {
        let below = figures.iter().filter(|&&f| f < goal).count();
        let what = match judged {
            Judged::Goal(_) => "GOAL MISSED",
            Judged::Prefix => {
                "below the peers' − 1 on this prefix (the goal is judged on the whole trace: run without --quick)"
            }
        };
        format!(
            "{what} on {below} of {} seeds, worst by {:.2}; ",
            seeds.len(),
            goal - worst
        )
    } else {
        String::new()
    };
    bench.record(
        Row::new(workload, "hit %", true)
            .subject(
                format!("perf-cache TinyLfu, worst of hash seeds 1–{}", seeds.len()),
                worst,
            )
            .peer(format!("{label}: {} {:.2} − 1", best.0, best.1), goal)
            .note(format!(
                "{verdict}seeds 1–{}: {}; moka {moka:.2}, quick_cache {quick:.2}",
                seeds.len(),
                listed.join(" / ")
            )),
    );
}

/// The goal rows over hash seeds: the public traces but P12, and the synthetic rows with thin
/// margins.
pub(crate) fn hit_ratio_seeds(bench: &mut Bench) {
    trace_rows(bench, &["loop", "glimpse", "OLTP", "P3"]);
    let seeds = seeds(bench);
    let len = bench.pick(300_000, 2_000_000);
    if !bench.over_budget() {
        let sequence = zipf(100_000, 0.8, len, 42);
        let workload = format!("Zipf 0.8, 100000 keys, capacity 1000, {len} requests");
        record(
            bench,
            &workload,
            &sequence,
            1_000,
            &seeds,
            Judged::Goal(None),
        );
    }
    if !bench.over_budget() {
        let sequence: Vec<u64> = (0..len as u64).map(|i| i % 100_000).collect();
        let workload = format!("loop of 100000 keys, capacity 10000, {len} requests");
        record(
            bench,
            &workload,
            &sequence,
            10_000,
            &seeds,
            Judged::Goal(None),
        );
    }
}

/// The P12 rows over hash seeds (13.2M requests, eight times: a group of its own to fit the
/// time budget).
pub(crate) fn hit_ratio_seeds_p12(bench: &mut Bench) {
    trace_rows(bench, &["P12"]);
}

fn seeds(bench: &Bench) -> Vec<u64> {
    (1..=bench.pick(4, 8)).collect()
}

/// The rows of the traces named in `traces` at the README's capacities, in `REFERENCE`'s
/// order.
fn trace_rows(bench: &mut Bench, traces: &[&str]) {
    let Some(dir) = trace_dir() else {
        bench.skip("../shared/traces not found: no trace rows");
        return;
    };
    let seeds = seeds(bench);
    let prefix = bench.pick(1_000_000, usize::MAX);
    let mut loaded: HashMap<&str, Vec<u64>> = HashMap::new();
    for &(trace, capacity, reference) in REFERENCE {
        if !traces.contains(&trace) {
            continue;
        }
        if bench.over_budget() {
            bench.skip(format!("time budget used up before {trace} @ {capacity}"));
            continue;
        }
        if !loaded.contains_key(trace) {
            let path = dir.join(trace_file(trace));
            match load_trace(&path, prefix) {
                Ok(t) => {
                    loaded.insert(trace, t);
                }
                Err(e) => {
                    bench.skip(format!("{} unreadable ({e})", path.display()));
                    continue;
                }
            }
        }
        let requests = &loaded[trace];
        // The README's figures are for whole traces; a prefix is judged by the peers.
        let (workload, judged) = if requests.len() == prefix {
            (
                format!("{trace} @ {capacity}, first {prefix} requests"),
                Judged::Prefix,
            )
        } else {
            (
                format!("{trace} @ {capacity}, {} requests", requests.len()),
                Judged::Goal(Some(best_published(&reference))),
            )
        };
        record(bench, &workload, requests, capacity, &seeds, judged);
    }
}
