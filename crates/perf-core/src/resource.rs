//! Resource monitor: this process's resident memory and CPU use, and the system's memory and
//! load, cheap enough to read once per batch chunk.
//!
//! A [`ResourceMonitor`] refreshes only what it reports: this one process (not the process
//! table, not its threads) and the system memory counters. On Linux
//! [`rss_bytes`](ResourceMonitor::rss_bytes) is one read of `/proc/self/statm`, and a
//! [`sample`](ResourceMonitor::sample) reads a few files under `/proc`; `cargo xtask bench
//! core_resource` measures both (see docs/BENCHMARKS.md).

use std::sync::{Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::error::{Error, Result};

/// One reading of the process and the system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// When the reading was taken.
    pub at: SystemTime,
    /// This process's resident set size, in bytes.
    pub rss_bytes: u64,
    /// This process's CPU use since the previous sample, in percent of one core (so up to
    /// `100 × cores`). The first sample of a monitor reports 0.
    pub process_cpu_percent: f32,
    /// Total physical memory, in bytes.
    pub total_memory_bytes: u64,
    /// Memory available to new allocations without swapping, in bytes.
    pub available_memory_bytes: u64,
    /// Share of physical memory in use, `100 × (total − available) / total`.
    pub memory_used_percent: f32,
    /// System load averages over 1, 5 and 15 minutes (0 where the platform has none).
    pub load_average: [f64; 3],
    /// Logical CPU cores.
    pub cpu_cores: usize,
}

/// Reads process and system resources.
///
/// ```
/// let monitor = perf_core::resource::ResourceMonitor::new().unwrap();
/// let sample = monitor.sample();
/// assert!(sample.rss_bytes > 0);
/// assert!(sample.total_memory_bytes >= sample.available_memory_bytes);
/// assert!((0.0..=100.0).contains(&sample.memory_used_percent));
/// ```
#[derive(Debug)]
pub struct ResourceMonitor {
    pid: Pid,
    cpu_cores: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    system: System,
    /// Accumulated process CPU time (ms) and the instant it was read, for the next CPU %.
    last_cpu: Option<(u64, Instant)>,
}

impl ResourceMonitor {
    /// A monitor of the current process.
    pub fn new() -> Result<Self> {
        let pid = sysinfo::get_current_pid().map_err(|e| Error::Resource {
            reason: format!("cannot get the current process id: {e}"),
        })?;
        let system = System::new().map_err(|e| Error::Resource {
            reason: format!("cannot open the system information source: {e}"),
        })?;
        let cpu_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            pid,
            cpu_cores,
            state: Mutex::new(State {
                system,
                last_cpu: None,
            }),
        })
    }

    /// A full reading: process memory and CPU, system memory and load.
    pub fn sample(&self) -> ResourceSample {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { system, last_cpu } = &mut *state;
        // CPU % is computed here from accumulated CPU time over wall time: sysinfo's own
        // per-process figure stays 0 when the first reading found no CPU ticks yet.
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing()
                .with_memory()
                .with_cpu()
                .without_tasks(),
        );
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let now = Instant::now();
        let (rss_bytes, cpu_ms) = system
            .process(self.pid)
            .map_or((0, 0), |p| (p.memory(), p.accumulated_cpu_time()));
        let process_cpu_percent = match last_cpu.replace((cpu_ms, now)) {
            Some((previous_ms, at)) => {
                let wall_ms = now.duration_since(at).as_secs_f64() * 1e3;
                if wall_ms > 0.0 {
                    (100.0 * cpu_ms.saturating_sub(previous_ms) as f64 / wall_ms) as f32
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        let total = system.total_memory();
        let available = system.available_memory().min(total);
        let memory_used_percent = if total == 0 {
            0.0
        } else {
            (100.0 * (total - available) as f64 / total as f64) as f32
        };
        let load_average = System::load_average()
            .map(|l| [l.one, l.five, l.fifteen])
            .unwrap_or([0.0; 3]);
        ResourceSample {
            at: SystemTime::now(),
            rss_bytes,
            process_cpu_percent,
            total_memory_bytes: total,
            available_memory_bytes: available,
            memory_used_percent,
            load_average,
            cpu_cores: self.cpu_cores,
        }
    }

    /// Only this process's resident set size, in bytes: the cheapest reading, for memory-bounded
    /// loops.
    pub fn rss_bytes(&self) -> u64 {
        #[cfg(target_os = "linux")]
        if let Some(rss) = linux::statm_rss_bytes() {
            return rss;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let system = &mut state.system;
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory().without_tasks(),
        );
        system.process(self.pid).map_or(0, |p| p.memory())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::OnceLock;

    /// Resident pages from `/proc/self/statm` (second field) times the page size.
    pub(super) fn statm_rss_bytes() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(pages * page_size()?)
    }

    fn page_size() -> Option<u64> {
        static PAGE_SIZE: OnceLock<Option<u64>> = OnceLock::new();
        *PAGE_SIZE.get_or_init(|| {
            // SAFETY: sysconf has no preconditions; it only reads a system constant.
            let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            u64::try_from(size).ok().filter(|&s| s > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_grows_when_memory_is_touched() {
        let monitor = ResourceMonitor::new().unwrap();
        let before = monitor.rss_bytes();
        // Touch 64 MiB so the pages become resident.
        let block = vec![1u8; 64 << 20];
        let after = monitor.rss_bytes();
        assert!(std::hint::black_box(&block)
            .iter()
            .step_by(4096)
            .all(|&b| b == 1));
        assert!(
            after >= before + (48 << 20),
            "rss before {before}, after {after}"
        );
    }

    #[test]
    fn cpu_is_measured_between_samples() {
        let monitor = ResourceMonitor::new().unwrap();
        let _ = monitor.sample();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let sample = monitor.sample();
        assert!(sample.process_cpu_percent > 10.0, "{sample:?}");
        assert!(sample.cpu_cores >= 1);
    }
}
