//! Settings advice: current server settings and the machine's resources in, recommended
//! values with reasons out. Advice only: perf-query never changes a setting.
//!
//! The rules follow the usual sizing for an OLTP service on SSDs (PostgreSQL documentation
//! and PGTune): shared_buffers ≈ 25 % of RAM, effective_cache_size ≈ 75 %, work_mem from the
//! memory left per connection, maintenance_work_mem ≈ RAM/16 (≤ 2 GB), random_page_cost 1.1
//! and effective_io_concurrency 200 on SSDs, parallel workers from the cores.

use serde::{Deserialize, Serialize};

/// One row of `pg_settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PgSetting {
    /// Setting name.
    pub name: String,
    /// Current value as `pg_settings.setting` shows it (in `unit`s).
    pub setting: String,
    /// `pg_settings.unit` (`8kB`, `kB`, `ms`, …).
    pub unit: Option<String>,
}

impl PgSetting {
    /// A setting.
    ///
    /// ```
    /// let s = perf_query::PgSetting::new("shared_buffers", "16384", Some("8kB"));
    /// assert_eq!(s.bytes(), Some(128 << 20));
    /// ```
    pub fn new(name: &str, setting: &str, unit: Option<&str>) -> Self {
        PgSetting {
            name: name.to_string(),
            setting: setting.to_string(),
            unit: unit.map(str::to_string),
        }
    }

    /// The value in bytes, for memory settings.
    pub fn bytes(&self) -> Option<u64> {
        let v: f64 = self.setting.parse().ok()?;
        if v < 0.0 {
            return None;
        }
        let mult = match self.unit.as_deref() {
            Some("B") => 1.0,
            Some("kB") => 1024.0,
            Some("8kB") => 8192.0,
            Some("MB") => 1024.0 * 1024.0,
            Some("16MB") => 16.0 * 1024.0 * 1024.0,
            Some("GB") => 1024.0 * 1024.0 * 1024.0,
            _ => return None,
        };
        Some((v * mult) as u64)
    }

    /// The value as a number.
    pub fn number(&self) -> Option<f64> {
        self.setting.parse().ok()
    }
}

/// The machine the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MachineInfo {
    /// Total memory in bytes.
    pub total_memory_bytes: u64,
    /// CPU cores.
    pub cpu_cores: usize,
    /// Storage is SSD/NVMe (random reads cost about as much as sequential ones).
    pub ssd: bool,
}

impl MachineInfo {
    /// A machine description.
    pub fn new(total_memory_bytes: u64, cpu_cores: usize, ssd: bool) -> Self {
        MachineInfo {
            total_memory_bytes,
            cpu_cores,
            ssd,
        }
    }

    /// This machine, read with perf-core's `ResourceMonitor` (right when PostgreSQL runs on
    /// the same host; otherwise describe the server with [`MachineInfo::new`]). Assumes SSD.
    ///
    /// # Errors
    ///
    /// What `ResourceMonitor::new` reports.
    pub fn local() -> crate::Result<Self> {
        let sample = perf_core::resource::ResourceMonitor::new()?.sample();
        Ok(MachineInfo::new(
            sample.total_memory_bytes,
            sample.cpu_cores.max(1),
            true,
        ))
    }
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SettingAdvice {
    /// Setting name.
    pub name: String,
    /// Current value, human-readable.
    pub current: String,
    /// Recommended value, in `postgresql.conf` syntax.
    pub recommended: String,
    /// Why.
    pub reason: String,
    /// True when the change needs a server restart (else a reload).
    pub restart: bool,
}

/// The settings [`advise_settings`] reads.
pub const ADVISED_SETTINGS: &[&str] = &[
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "random_page_cost",
    "effective_io_concurrency",
    "max_connections",
    "max_parallel_workers_per_gather",
    "max_worker_processes",
    "checkpoint_completion_target",
];

fn human(bytes: u64) -> String {
    const MB: u64 = 1 << 20;
    const GB: u64 = 1 << 30;
    if bytes >= GB && bytes % GB == 0 {
        format!("{}GB", bytes / GB)
    } else {
        format!("{}MB", (bytes / MB).max(1))
    }
}

/// Rounds down to a whole MB (at least 1).
fn mb_floor(bytes: f64) -> u64 {
    ((bytes / (1u64 << 20) as f64).floor().max(1.0) as u64) << 20
}

/// Recommendations for `settings` on `machine`; settings already within range get none.
///
/// ```
/// use perf_query::{advise_settings, MachineInfo, PgSetting};
/// let settings = vec![
///     PgSetting::new("shared_buffers", "16384", Some("8kB")),       // 128MB
///     PgSetting::new("random_page_cost", "4", None),
///     PgSetting::new("max_connections", "100", None),
/// ];
/// let advice = advise_settings(&settings, &MachineInfo::new(16 << 30, 8, true));
/// let sb = advice.iter().find(|a| a.name == "shared_buffers").unwrap();
/// assert_eq!(sb.recommended, "4GB");
/// assert!(advice.iter().any(|a| a.name == "random_page_cost" && a.recommended == "1.1"));
/// ```
pub fn advise_settings(settings: &[PgSetting], machine: &MachineInfo) -> Vec<SettingAdvice> {
    let get = |n: &str| settings.iter().find(|s| s.name == n);
    let ram = machine.total_memory_bytes as f64;
    let mut out = Vec::new();
    let mut push =
        |name: &str, current: String, recommended: String, reason: String, restart: bool| {
            out.push(SettingAdvice {
                name: name.to_string(),
                current,
                recommended,
                reason,
                restart,
            })
        };
    let mut shared = get("shared_buffers").and_then(PgSetting::bytes);
    let target_shared = mb_floor(ram * 0.25);
    if let Some(cur) = shared {
        let frac = cur as f64 / ram;
        if !(0.15..=0.40).contains(&frac) {
            // The rest of the advice assumes this one is taken.
            shared = Some(target_shared);
            push(
                "shared_buffers",
                human(cur),
                human(target_shared),
                format!(
                    "{:.0} % of the {} of RAM; about 25 % keeps the hot data in PostgreSQL's cache and leaves the rest to the OS page cache",
                    frac * 100.0,
                    human(machine.total_memory_bytes)
                ),
                true,
            );
        }
    }
    if let Some(cur) = get("effective_cache_size").and_then(PgSetting::bytes) {
        let frac = cur as f64 / ram;
        if !(0.50..=0.90).contains(&frac) {
            push(
                "effective_cache_size",
                human(cur),
                human(mb_floor(ram * 0.75)),
                format!(
                    "{:.0} % of RAM; the planner uses it to judge how much of an index stays cached (shared_buffers + OS cache, about 75 % of RAM): too low makes it shun index scans",
                    frac * 100.0
                ),
                false,
            );
        }
    }
    let connections = get("max_connections")
        .and_then(PgSetting::number)
        .unwrap_or(100.0)
        .max(1.0);
    if let Some(cur) = get("work_mem").and_then(PgSetting::bytes) {
        let left = ram - shared.unwrap_or(target_shared) as f64;
        // Each connection may run a few sort/hash nodes at once.
        let target = mb_floor((left / (connections * 3.0)).max(4.0 * (1u64 << 20) as f64));
        let ratio = cur as f64 / target as f64;
        if !(0.5..=2.0).contains(&ratio) {
            push(
                "work_mem",
                human(cur),
                human(target),
                format!(
                    "(RAM − shared_buffers) / (max_connections {connections:.0} × 3 sort or hash nodes): too low and sorts and hashes spill to disk, too high and concurrent queries can run the server out of memory; raise it per query (SET LOCAL work_mem) for known big sorts"
                ),
                false,
            );
        }
    }
    if let Some(cur) = get("maintenance_work_mem").and_then(PgSetting::bytes) {
        let target = mb_floor((ram / 16.0).min(2.0 * (1u64 << 30) as f64));
        let ratio = cur as f64 / target as f64;
        if !(0.5..=2.0).contains(&ratio) {
            push(
                "maintenance_work_mem",
                human(cur),
                human(target),
                "RAM / 16 (at most 2GB) speeds up CREATE INDEX and VACUUM".to_string(),
                false,
            );
        }
    }
    if machine.ssd {
        if let Some(cur) = get("random_page_cost").and_then(PgSetting::number) {
            if cur > 1.5 {
                push(
                    "random_page_cost",
                    cur.to_string(),
                    "1.1".to_string(),
                    "on SSD/NVMe a random read costs about as much as a sequential one; the default 4 makes the planner prefer sequential scans over index scans".to_string(),
                    false,
                );
            }
        }
        if let Some(cur) = get("effective_io_concurrency").and_then(PgSetting::number) {
            if cur < 100.0 {
                push(
                    "effective_io_concurrency",
                    cur.to_string(),
                    "200".to_string(),
                    "SSDs serve many concurrent reads; bitmap heap scans prefetch that many pages"
                        .to_string(),
                    false,
                );
            }
        }
    }
    if let Some(cur) = get("max_parallel_workers_per_gather").and_then(PgSetting::number) {
        let target = (machine.cpu_cores / 2).clamp(1, 4) as f64;
        if cur > target || (cur == 0.0 && machine.cpu_cores >= 4) {
            push(
                "max_parallel_workers_per_gather",
                cur.to_string(),
                target.to_string(),
                format!(
                    "half of the {} cores (at most 4) per query keeps parallel scans from starving concurrent OLTP queries",
                    machine.cpu_cores
                ),
                false,
            );
        }
    }
    if let Some(cur) = get("checkpoint_completion_target").and_then(PgSetting::number) {
        if cur < 0.8 {
            push(
                "checkpoint_completion_target",
                cur.to_string(),
                "0.9".to_string(),
                "spreads checkpoint writes over the interval instead of bursts that stall queries"
                    .to_string(),
                false,
            );
        }
    }
    out
}
