//! Timing: warm-up, automatic iteration-count calibration, repeated samples, median and spread,
//! and interleaved subject/peer measurement.

use std::time::{Duration, Instant};

/// How long to warm up, how long each sample should take, and how many samples to take.
///
/// ```
/// use perfkit_benches::harness::Sampling;
/// assert!(Sampling::quick().samples < Sampling::full().samples);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Time spent running the code before measuring (also used to calibrate).
    pub warmup: Duration,
    /// Target duration of one sample; the iteration count is chosen to reach it.
    pub sample_time: Duration,
    /// Number of samples per measured function.
    pub samples: usize,
}

impl Sampling {
    /// For `--quick`: enough to see the shape of the results in seconds per group.
    pub fn quick() -> Self {
        Sampling {
            warmup: Duration::from_millis(40),
            sample_time: Duration::from_millis(15),
            samples: 7,
        }
    }

    /// For a full run: longer samples and more of them, for tighter medians.
    pub fn full() -> Self {
        Sampling {
            warmup: Duration::from_millis(300),
            sample_time: Duration::from_millis(60),
            samples: 21,
        }
    }

    /// The bare minimum, for tests and doctests of the harness itself.
    pub fn smoke() -> Self {
        Sampling {
            warmup: Duration::from_millis(2),
            sample_time: Duration::from_millis(1),
            samples: 3,
        }
    }
}

/// The result of measuring one function: nanoseconds per operation over several samples.
///
/// ```
/// use perfkit_benches::harness::Stats;
/// let s = Stats::from_samples(&[10.0, 12.0, 11.0], 100);
/// assert_eq!(s.median_ns, 11.0);
/// assert!((s.ops_per_sec() - 1e9 / 11.0).abs() < 1e-3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Median of the per-sample ns/op.
    pub median_ns: f64,
    /// Fastest sample.
    pub min_ns: f64,
    /// Slowest sample.
    pub max_ns: f64,
    /// Median absolute deviation from the median: a spread measure robust to outliers.
    pub mad_ns: f64,
    /// Number of samples.
    pub samples: usize,
    /// Iterations per sample, as calibrated.
    pub iters_per_sample: u64,
}

impl Stats {
    /// Summarizes per-sample ns/op figures.
    pub fn from_samples(ns_per_op: &[f64], iters_per_sample: u64) -> Self {
        let median_ns = median(ns_per_op);
        let deviations: Vec<f64> = ns_per_op.iter().map(|v| (v - median_ns).abs()).collect();
        Stats {
            median_ns,
            min_ns: ns_per_op.iter().copied().fold(f64::INFINITY, f64::min),
            max_ns: ns_per_op.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mad_ns: median(&deviations),
            samples: ns_per_op.len(),
            iters_per_sample,
        }
    }

    /// The spread as a percentage of the median (MAD / median × 100).
    pub fn spread_pct(&self) -> f64 {
        if self.median_ns > 0.0 {
            self.mad_ns / self.median_ns * 100.0
        } else {
            0.0
        }
    }

    /// Operations per second at the median.
    pub fn ops_per_sec(&self) -> f64 {
        if self.median_ns > 0.0 {
            1e9 / self.median_ns
        } else {
            f64::NAN
        }
    }
}

/// The median of `values` (the mean of the middle two for even counts; NaN when empty).
///
/// ```
/// use perfkit_benches::harness::median;
/// assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
/// assert!(median(&[]).is_nan());
/// ```
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Times one call of `f(iters)` in nanoseconds.
fn time<F: FnMut(u64)>(f: &mut F, iters: u64) -> f64 {
    let start = Instant::now();
    f(std::hint::black_box(iters));
    start.elapsed().as_nanos() as f64
}

/// Warms `f` up and returns the iteration count that makes one call last about
/// `sampling.sample_time`.
fn calibrate<F: FnMut(u64)>(f: &mut F, sampling: &Sampling) -> u64 {
    let target = sampling.sample_time.as_nanos() as f64;
    let started = Instant::now();
    // A slow function must not turn warm-up into minutes: stop growing after this long.
    let hard_stop = sampling.warmup * 10 + sampling.sample_time * 4;
    let mut iters: u64 = 1;
    let mut per_iter = f64::NAN;
    loop {
        let elapsed = time(f, iters);
        if elapsed > 0.0 {
            per_iter = elapsed / iters as f64;
        }
        let long_enough = elapsed >= target / 4.0;
        if (started.elapsed() >= sampling.warmup && long_enough) || started.elapsed() >= hard_stop {
            break;
        }
        if !long_enough {
            // Grow at most 10x per step, so one step cannot overshoot by much.
            let factor = if elapsed > 0.0 {
                (target / elapsed).clamp(1.5, 10.0)
            } else {
                10.0
            };
            iters = ((iters as f64) * factor).ceil() as u64;
        }
    }
    if per_iter.is_finite() && per_iter > 0.0 {
        ((target / per_iter).round() as u64).max(1)
    } else {
        iters.max(1)
    }
}

/// Measures `f`, which must run the workload `iters` times per call: warm-up and calibration,
/// then `sampling.samples` samples of about `sampling.sample_time` each. Use
/// [`std::hint::black_box`] inside `f` so the optimizer cannot delete the work.
///
/// ```
/// use perfkit_benches::harness::{measure_ns_per_op, Sampling};
/// use std::hint::black_box;
/// let stats = measure_ns_per_op(&Sampling::smoke(), |iters| {
///     for i in 0..iters {
///         black_box(black_box(i).wrapping_mul(3));
///     }
/// });
/// assert!(stats.median_ns > 0.0 && stats.samples == 3);
/// ```
pub fn measure_ns_per_op<F: FnMut(u64)>(sampling: &Sampling, mut f: F) -> Stats {
    let iters = calibrate(&mut f, sampling);
    let samples: Vec<f64> = (0..sampling.samples.max(1))
        .map(|_| time(&mut f, iters) / iters as f64)
        .collect();
    Stats::from_samples(&samples, iters)
}

/// Measures `a` and `b` with interleaved samples (A B, B A, A B, ...), each calibrated on its own,
/// so drift in machine load (other processes, thermal throttling) hits both alike.
///
/// ```
/// use perfkit_benches::harness::{measure_interleaved, Sampling};
/// use std::hint::black_box;
/// let (a, b) = measure_interleaved(
///     &Sampling::smoke(),
///     |iters| for i in 0..iters { black_box(i + 1); },
///     |iters| for i in 0..iters { black_box(i + 2); },
/// );
/// assert_eq!(a.samples, b.samples);
/// ```
pub fn measure_interleaved<A: FnMut(u64), B: FnMut(u64)>(
    sampling: &Sampling,
    mut a: A,
    mut b: B,
) -> (Stats, Stats) {
    let iters_a = calibrate(&mut a, sampling);
    let iters_b = calibrate(&mut b, sampling);
    let n = sampling.samples.max(1);
    let mut samples_a = Vec::with_capacity(n);
    let mut samples_b = Vec::with_capacity(n);
    for round in 0..n {
        // Alternate which goes first, so neither always runs right after the other's warm cache.
        if round % 2 == 0 {
            samples_a.push(time(&mut a, iters_a) / iters_a as f64);
            samples_b.push(time(&mut b, iters_b) / iters_b as f64);
        } else {
            samples_b.push(time(&mut b, iters_b) / iters_b as f64);
            samples_a.push(time(&mut a, iters_a) / iters_a as f64);
        }
    }
    (
        Stats::from_samples(&samples_a, iters_a),
        Stats::from_samples(&samples_b, iters_b),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_unsorted() {
        assert_eq!(median(&[5.0]), 5.0);
        assert_eq!(median(&[9.0, 1.0, 5.0, 7.0, 3.0]), 5.0);
        assert_eq!(median(&[1.0, 100.0]), 50.5);
    }

    #[test]
    fn stats_spread_is_robust_to_one_outlier() {
        let s = Stats::from_samples(&[10.0, 10.0, 11.0, 9.0, 1000.0], 1);
        assert_eq!(s.median_ns, 10.0);
        assert_eq!(s.mad_ns, 1.0);
        assert_eq!(s.max_ns, 1000.0);
        assert!((s.spread_pct() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn calibration_reaches_the_sample_time() {
        let sampling = Sampling {
            warmup: Duration::from_millis(5),
            sample_time: Duration::from_millis(5),
            samples: 3,
        };
        let stats = measure_ns_per_op(&sampling, |iters| {
            for i in 0..iters {
                std::hint::black_box(std::hint::black_box(i).wrapping_mul(7));
            }
        });
        // Many iterations per sample for a nanosecond-scale body.
        assert!(stats.iters_per_sample > 1000, "{stats:?}");
    }

    #[test]
    fn slower_code_measures_slower() {
        let (fast, slow) = measure_interleaved(
            &Sampling::smoke(),
            |iters| {
                for _ in 0..iters {
                    std::hint::black_box(std::hint::black_box(3u64) + 1);
                }
            },
            |iters| {
                for _ in 0..iters {
                    std::thread::sleep(Duration::from_micros(200));
                }
            },
        );
        assert!(slow.median_ns > fast.median_ns * 10.0, "{fast:?} {slow:?}");
    }
}
