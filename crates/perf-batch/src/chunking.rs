//! Chunk sizing: the four strategies of `[batch] strategy`, and the load probe they read.
//!
//! A chunk is a run of consecutive items pulled from the input at once. Chunks are the unit at
//! which the processor re-sizes, samples memory and reports progress; items of consecutive
//! chunks run without a barrier between them, so re-sizing never idles the workers.

use std::fmt;
use std::time::Duration;

use perf_core::config::ChunkStrategy;
use perf_core::resource::ResourceMonitor;

/// One reading of the load that DYNAMIC and MEMORY_BASED chunking react to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    /// CPU in use, in percent of the whole machine (0–100).
    pub cpu_percent: f32,
    /// System memory in use, in percent (0–100).
    pub memory_percent: f32,
    /// This process's resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Where the processor reads load and memory from. The default is perf-core's
/// [`ResourceMonitor`]; tests and embedders can supply their own.
///
/// ```
/// use perf_batch::{LoadProbe, LoadSample};
///
/// #[derive(Debug)]
/// struct Busy;
/// impl LoadProbe for Busy {
///     fn sample(&self) -> LoadSample {
///         LoadSample { cpu_percent: 90.0, memory_percent: 80.0, rss_bytes: 1 << 30 }
///     }
///     fn rss_bytes(&self) -> u64 { 1 << 30 }
/// }
/// assert_eq!(Busy.sample().cpu_percent, 90.0);
/// ```
pub trait LoadProbe: Send + Sync + fmt::Debug {
    /// A full reading (CPU, memory, RSS).
    fn sample(&self) -> LoadSample;
    /// Only this process's RSS, in bytes (the cheaper reading).
    fn rss_bytes(&self) -> u64;
}

impl LoadProbe for ResourceMonitor {
    fn sample(&self) -> LoadSample {
        let s = ResourceMonitor::sample(self);
        let cores = s.cpu_cores.max(1) as f64;
        // The process's own CPU share and the system's run queue: whichever says "busier".
        let process = f64::from(s.process_cpu_percent) / cores;
        let system = s.load_average[0] / cores * 100.0;
        LoadSample {
            cpu_percent: process.max(system).clamp(0.0, 100.0) as f32,
            memory_percent: s.memory_used_percent,
            rss_bytes: s.rss_bytes,
        }
    }

    fn rss_bytes(&self) -> u64 {
        ResourceMonitor::rss_bytes(self)
    }
}

/// DYNAMIC: the base size scaled by the idle share of CPU and memory (at least 10 % of it),
/// clamped to `[min, max]`.
///
/// ```
/// assert_eq!(perf_batch::chunking::dynamic_size(100, 1, 1000, 0.0, 0.0), 100);
/// assert_eq!(perf_batch::chunking::dynamic_size(100, 1, 1000, 100.0, 100.0), 10);
/// assert_eq!(perf_batch::chunking::dynamic_size(100, 1, 1000, 50.0, 50.0), 50);
/// ```
pub fn dynamic_size(base: usize, min: usize, max: usize, cpu: f32, mem: f32) -> usize {
    let load = (f64::from(cpu.clamp(0.0, 100.0)) + f64::from(mem.clamp(0.0, 100.0))) / 200.0;
    let factor = (1.0 - load).max(0.1);
    clamp((base as f64 * factor).round() as usize, min, max)
}

/// MEMORY_BASED: how many more items fit under `threshold` given the measured growth per item,
/// clamped to `[min, max]`.
///
/// ```
/// // 100 MB of headroom at 1 MB per item: 100 items.
/// assert_eq!(perf_batch::chunking::memory_size(1, 10_000, 900 << 20, 1000 << 20, (1 << 20) as f64), 100);
/// // Over the threshold: the smallest chunk.
/// assert_eq!(perf_batch::chunking::memory_size(1, 10_000, 2000 << 20, 1000 << 20, 1.0), 1);
/// ```
pub fn memory_size(min: usize, max: usize, rss: u64, threshold: u64, bytes_per_item: f64) -> usize {
    let headroom = threshold.saturating_sub(rss) as f64;
    if headroom <= 0.0 {
        return min;
    }
    if bytes_per_item <= 0.0 {
        return max;
    }
    clamp((headroom / bytes_per_item) as usize, min, max)
}

/// ADAPTIVE: the size that takes `target` at `items_per_sec`, clamped to `[min, max]`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(perf_batch::chunking::adaptive_size(1, 10_000, 500.0, Duration::from_secs(2)), 1000);
/// ```
pub fn adaptive_size(min: usize, max: usize, items_per_sec: f64, target: Duration) -> usize {
    clamp(
        (items_per_sec * target.as_secs_f64()).round() as usize,
        min,
        max,
    )
}

fn clamp(v: usize, min: usize, max: usize) -> usize {
    v.clamp(min.max(1), max.max(min.max(1)))
}

/// The sizing decision for the next chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) size: usize,
    /// Wait until the items in flight finish before starting this chunk (memory pressure).
    pub(crate) drain_first: bool,
}

/// The state of one run's chunk sizing.
#[derive(Debug)]
pub(crate) struct Sizer {
    strategy: ChunkStrategy,
    base: usize,
    min: usize,
    max: usize,
    target: Duration,
    threshold: u64,
    /// Items per second, smoothed over finished chunks (ADAPTIVE).
    rate: Option<f64>,
    /// RSS growth per finished item, smoothed (MEMORY_BASED): memory that items leave behind.
    growth: Option<f64>,
    /// Resident bytes per item pulled from the input, from the RSS before and after cutting a
    /// chunk (MEMORY_BASED): memory that waiting items hold until they run.
    item_bytes: Option<f64>,
    /// The first MEMORY_BASED chunk, cut before anything is measured.
    probe: usize,
    /// RSS and finished-item count at the previous chunk start (MEMORY_BASED).
    last_rss: Option<(u64, usize)>,
}

/// The share of the headroom under the threshold that MEMORY_BASED fills with one chunk; the
/// rest absorbs estimation error and allocator slack.
const HEADROOM_SHARE: f64 = 0.9;

impl Sizer {
    pub(crate) fn new(
        strategy: ChunkStrategy,
        base: usize,
        min: usize,
        max: usize,
        target: Duration,
        threshold: u64,
        probe: usize,
    ) -> Self {
        Self {
            strategy,
            base: base.max(1),
            min: min.max(1),
            max: max.max(min.max(1)),
            target,
            threshold,
            rate: None,
            growth: None,
            item_bytes: None,
            probe: clamp(base.min(probe.max(1)), min, max),
            last_rss: None,
        }
    }

    /// Whether the strategy measures the memory of pulled items (around each chunk cut).
    pub(crate) fn measures_items(&self) -> bool {
        self.strategy == ChunkStrategy::MemoryBased
    }

    /// Records that cutting a chunk of `items` items moved RSS from `before` to `after`
    /// (MEMORY_BASED). The estimate is the largest reading so far: when the allocator reuses
    /// memory that finished items freed, a pull grows RSS by less than its items hold (or not
    /// at all), so a smaller reading is no evidence of smaller items.
    pub(crate) fn chunk_pulled(&mut self, items: usize, before: u64, after: u64) {
        if self.strategy != ChunkStrategy::MemoryBased || items == 0 || after <= before {
            return;
        }
        let per_item = (after - before) as f64 / items as f64;
        self.item_bytes = Some(self.item_bytes.map_or(per_item, |b| b.max(per_item)));
    }

    /// Whether the strategy needs a load reading for each chunk.
    pub(crate) fn needs_sample(&self) -> bool {
        matches!(
            self.strategy,
            ChunkStrategy::Dynamic | ChunkStrategy::MemoryBased
        )
    }

    /// Whether that reading needs CPU and memory load (DYNAMIC), not just the RSS
    /// (MEMORY_BASED, one `/proc` read instead of a full sample).
    pub(crate) fn needs_load(&self) -> bool {
        self.strategy == ChunkStrategy::Dynamic
    }

    /// A reading of `probe` as the strategy needs it.
    pub(crate) fn read(&self, probe: &dyn LoadProbe) -> LoadSample {
        if self.needs_load() {
            probe.sample()
        } else {
            LoadSample {
                cpu_percent: 0.0,
                memory_percent: 0.0,
                rss_bytes: probe.rss_bytes(),
            }
        }
    }

    /// Decides the next chunk. `finished` is how many items have finished so far.
    pub(crate) fn next(&mut self, sample: Option<LoadSample>, finished: usize) -> Decision {
        let size = match self.strategy {
            ChunkStrategy::Dynamic => match sample {
                Some(s) => dynamic_size(
                    self.base,
                    self.min,
                    self.max,
                    s.cpu_percent,
                    s.memory_percent,
                ),
                None => clamp(self.base, self.min, self.max),
            },
            ChunkStrategy::Adaptive => match self.rate {
                Some(rate) => adaptive_size(self.min, self.max, rate, self.target),
                None => clamp(self.base, self.min, self.max),
            },
            ChunkStrategy::MemoryBased => {
                let Some(s) = sample else {
                    return Decision {
                        size: clamp(self.base, self.min, self.max),
                        drain_first: false,
                    };
                };
                if let Some((rss0, done0)) = self.last_rss {
                    if finished > done0 {
                        let per_item =
                            s.rss_bytes.saturating_sub(rss0) as f64 / (finished - done0) as f64;
                        self.growth = Some(match self.growth {
                            Some(g) => 0.5 * g + 0.5 * per_item,
                            None => per_item,
                        });
                    }
                }
                self.last_rss = Some((s.rss_bytes, finished));
                if s.rss_bytes >= self.threshold {
                    return Decision {
                        size: self.min,
                        drain_first: true,
                    };
                }
                if self.growth.is_none() && self.item_bytes.is_none() {
                    // Nothing measured yet: a small first chunk, so a large one is never cut
                    // blind.
                    self.probe
                } else {
                    // Each new item holds its input until it runs and leaves its growth after.
                    let per_item = self.item_bytes.unwrap_or(0.0) + self.growth.unwrap_or(0.0);
                    let headroom = (self.threshold - s.rss_bytes) as f64 * HEADROOM_SHARE;
                    if per_item > headroom {
                        // Not even one more item fits: let the running ones finish first.
                        return Decision {
                            size: self.min,
                            drain_first: true,
                        };
                    }
                    memory_size(
                        self.min,
                        self.max,
                        s.rss_bytes,
                        s.rss_bytes.saturating_add(headroom as u64),
                        per_item,
                    )
                }
            }
            _ => clamp(self.base, self.min, self.max),
        };
        Decision {
            size,
            drain_first: false,
        }
    }

    /// Records a finished chunk of `items` executed items that took `elapsed` (ADAPTIVE).
    pub(crate) fn chunk_finished(&mut self, items: usize, elapsed: Duration) {
        if self.strategy != ChunkStrategy::Adaptive || items == 0 {
            return;
        }
        let secs = elapsed.as_secs_f64().max(1e-6);
        let rate = items as f64 / secs;
        // Weight the newest chunk heavily so a change of item cost shows within two chunks.
        self.rate = Some(match self.rate {
            Some(r) => 0.3 * r + 0.7 * rate,
            None => rate,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rss: u64) -> LoadSample {
        LoadSample {
            cpu_percent: 0.0,
            memory_percent: 0.0,
            rss_bytes: rss,
        }
    }

    fn memory_sizer(base: usize, threshold: u64, probe: usize) -> Sizer {
        Sizer::new(
            ChunkStrategy::MemoryBased,
            base,
            1,
            10_000,
            Duration::from_secs(1),
            threshold,
            probe,
        )
    }

    #[test]
    fn adaptive_resizes_towards_target() {
        let mut s = Sizer::new(
            ChunkStrategy::Adaptive,
            100,
            1,
            100_000,
            Duration::from_secs(1),
            0,
            1,
        );
        assert_eq!(s.next(None, 0).size, 100);
        // 100 items in 0.1 s: 1000 items/s, so a 1 s chunk holds 1000.
        s.chunk_finished(100, Duration::from_millis(100));
        assert_eq!(s.next(None, 100).size, 1000);
        // Items become ten times slower: the size falls towards 100.
        s.chunk_finished(1000, Duration::from_secs(10));
        s.chunk_finished(100, Duration::from_secs(1));
        let size = s.next(None, 1200).size;
        assert!((100..200).contains(&size), "{size}");
    }

    #[test]
    fn memory_based_learns_growth_and_drains_over_threshold() {
        let mut s = memory_sizer(10, 1000 << 20, 4);
        // Nothing measured yet: a probe chunk of 4 (the concurrency), not the base 10.
        assert_eq!(s.next(Some(at(100 << 20)), 0).size, 4);
        // 4 finished items grew RSS by 4 MiB: 1 MiB per item; 90 % of the 896 MiB headroom.
        assert_eq!(s.next(Some(at(104 << 20)), 4).size, 806);
        let d = s.next(Some(at(1100 << 20)), 810);
        assert_eq!(
            d,
            Decision {
                size: 1,
                drain_first: true
            }
        );
    }

    #[test]
    fn memory_based_counts_the_memory_of_pulled_items() {
        let mut s = memory_sizer(200, 512 << 20, 8);
        assert_eq!(s.next(Some(at(32 << 20)), 0).size, 8);
        // Pulling 8 items took 32 MiB: 4 MiB each, freed when they finish (no growth).
        s.chunk_pulled(8, 32 << 20, 64 << 20);
        // 448 MiB of headroom, 90 % of it at 4 MiB per item.
        assert_eq!(s.next(Some(at(64 << 20)), 0).size, 100);
        // Pulls that grew less (reused memory) leave the estimate alone.
        s.chunk_pulled(100, 400 << 20, 400 << 20);
        s.chunk_pulled(100, 400 << 20, 500 << 20);
        assert_eq!(s.next(Some(at(64 << 20)), 100).size, 100);
        // Larger items replace the estimate at once.
        s.chunk_pulled(10, 64 << 20, 144 << 20);
        assert_eq!(s.next(Some(at(64 << 20)), 100).size, 50);
    }

    #[test]
    fn dynamic_shrinks_under_load() {
        let mut s = Sizer::new(
            ChunkStrategy::Dynamic,
            200,
            10,
            1000,
            Duration::from_secs(1),
            0,
            1,
        );
        let idle = at(0);
        let busy = LoadSample {
            cpu_percent: 100.0,
            memory_percent: 90.0,
            rss_bytes: 0,
        };
        assert_eq!(s.next(Some(idle), 0).size, 200);
        assert_eq!(s.next(Some(busy), 0).size, 20);
    }
}
