//! Result rows, skips, machine facts, and the three renderings of a run: an aligned text table,
//! `report.json` and `report.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What "ratio" means, printed with every table and report.
pub const RATIO_LEGEND: &str = "ratio > 1 means the subject (perfkit) did better than the peer: \
peer/subject for lower-is-better metrics (ns/op), subject/peer for higher-is-better ones \
(ops/s, MB/s, hit %).";

/// The placeholder peer name of rows that have no peer.
pub const NO_PEER: &str = "-";

/// The ratio of `subject` to `peer`, oriented so that > 1 means the subject did better.
///
/// NaN when either value is not a positive finite number.
///
/// ```
/// use perfkit_benches::harness::ratio;
/// assert_eq!(ratio(50.0, 100.0, false), 2.0); // half the ns/op: twice as good
/// assert_eq!(ratio(200.0, 100.0, true), 2.0); // twice the ops/s: twice as good
/// assert!(ratio(1.0, 0.0, true).is_nan());
/// ```
pub fn ratio(subject: f64, peer: f64, higher_is_better: bool) -> f64 {
    let valid = |v: f64| v.is_finite() && v > 0.0;
    if !valid(subject) || !valid(peer) {
        return f64::NAN;
    }
    if higher_is_better {
        subject / peer
    } else {
        peer / subject
    }
}

/// Serializes NaN as `null` and reads `null` back as NaN, so rows without a peer round-trip.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// One result: a subject and (usually) a peer measured on the same workload in the same run.
///
/// Build it with [`Row::new`], [`Row::subject`], [`Row::peer`] and [`Row::note`]; the ratio is
/// kept up to date. `group` is filled in by [`Bench::record`](crate::harness::Bench::record).
///
/// ```
/// use perfkit_benches::harness::Row;
/// let row = Row::new("get 1 KiB, warm", "ns/op", false)
///     .subject("perf-cache", 80.0)
///     .peer("lru", 120.0);
/// assert_eq!(row.ratio, 1.5);
/// let reference = Row::new("PING round trip", "ns/op", false).subject("redis", 30_000.0);
/// assert_eq!(reference.peer, "-");
/// assert!(reference.ratio.is_nan());
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The benchmark group that produced the row.
    pub group: String,
    /// What was done, with its size, e.g. `get 1 KiB values, 90% hits`.
    pub workload: String,
    /// The unit, e.g. `ns/op`, `ops/s`, `hit %`, `MB/s`.
    pub metric: String,
    /// The perfkit component measured.
    pub subject: String,
    /// Its figure, in `metric`.
    pub subject_value: f64,
    /// The peer measured alongside, or `-` for a reference figure with no peer.
    pub peer: String,
    /// The peer's figure (NaN, `null` in JSON, when there is no peer).
    #[serde(with = "nan_as_null")]
    pub peer_value: f64,
    /// > 1 means the subject did better; see [`RATIO_LEGEND`]. NaN (`null`) without a peer.
    #[serde(with = "nan_as_null")]
    pub ratio: f64,
    /// Whether larger figures are better for this metric.
    pub higher_is_better: bool,
    /// Anything a reader needs to judge the figures: spread, sample counts, caveats.
    pub note: String,
}

impl Row {
    /// A row for `workload` in unit `metric`, with no subject or peer figures yet.
    pub fn new(
        workload: impl Into<String>,
        metric: impl Into<String>,
        higher_is_better: bool,
    ) -> Self {
        Row {
            group: String::new(),
            workload: workload.into(),
            metric: metric.into(),
            subject: String::new(),
            subject_value: f64::NAN,
            peer: NO_PEER.to_string(),
            peer_value: f64::NAN,
            ratio: f64::NAN,
            higher_is_better,
            note: String::new(),
        }
    }

    /// Sets the subject and its figure.
    pub fn subject(mut self, name: impl Into<String>, value: f64) -> Self {
        self.subject = name.into();
        self.subject_value = value;
        self.ratio = ratio(self.subject_value, self.peer_value, self.higher_is_better);
        self
    }

    /// Sets the peer and its figure.
    pub fn peer(mut self, name: impl Into<String>, value: f64) -> Self {
        self.peer = name.into();
        self.peer_value = value;
        self.ratio = ratio(self.subject_value, self.peer_value, self.higher_is_better);
        self
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Whether the row has a peer.
    pub fn has_peer(&self) -> bool {
        self.peer != NO_PEER
    }
}

/// A group, or part of one, that could not run, and why.
///
/// ```
/// let skip = perfkit_benches::harness::Skip { group: "cache_redis".into(), reason: "REDIS_URL not set".into() };
/// assert_eq!(skip.group, "cache_redis");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// The group.
    pub group: String,
    /// Why it did not run (or failed).
    pub reason: String,
}

/// Facts about the machine and the build, for comparing runs.
///
/// ```
/// let info = perfkit_benches::harness::MachineInfo::collect();
/// assert!(info.cores >= 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Host name.
    pub hostname: String,
    /// `std::env::consts::OS`.
    pub os: String,
    /// `std::env::consts::ARCH`.
    pub arch: String,
    /// CPU model from `/proc/cpuinfo`, when available.
    pub cpu_model: Option<String>,
    /// Available parallelism.
    pub cores: usize,
    /// When the run started, UTC, ISO 8601.
    pub date_utc: String,
    /// `rustc -V`, when available.
    pub rustc: Option<String>,
    /// `git rev-parse HEAD`, when available.
    pub git_commit: Option<String>,
    /// Whether `REDIS_URL` was set.
    pub redis_url_set: bool,
    /// Whether `DATABASE_URL` was set.
    pub database_url_set: bool,
    /// Redis server version (`INFO server`), when reachable.
    pub redis_version: Option<String>,
    /// PostgreSQL server version (`SHOW server_version` via `psql`), when reachable.
    pub postgres_version: Option<String>,
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

impl MachineInfo {
    /// Collects what can be found; missing tools leave `None`s, never errors.
    pub fn collect() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .or_else(|| command_line("hostname", &[]))
            .unwrap_or_else(|| "unknown".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        let redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
        let database_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
        let redis_version = redis_url.as_deref().and_then(|url| {
            let (host, port) = perf_testkit::support::host_port(url)?;
            perf_testkit::support::redis_info_field(
                &host,
                port,
                "server",
                "redis_version",
                Duration::from_secs(1),
            )
        });
        let postgres_version = database_url
            .as_deref()
            .and_then(|url| command_line("psql", &["-XAtqw", url, "-c", "SHOW server_version"]));
        MachineInfo {
            hostname,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            date_utc: utc_now_iso8601(),
            rustc: command_line("rustc", &["-V"]),
            git_commit: command_line("git", &["rev-parse", "HEAD"]),
            redis_url_set: redis_url.is_some(),
            database_url_set: database_url.is_some(),
            redis_version,
            postgres_version,
        }
    }
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`, computed without a date crate.
///
/// ```
/// let now = perfkit_benches::harness::utc_now_iso8601();
/// assert_eq!(now.len(), 20);
/// assert!(now.ends_with('Z'));
/// ```
pub fn utc_now_iso8601() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso8601_from_unix(secs)
}

/// Formats Unix seconds as ISO 8601 UTC (Howard Hinnant's days-to-civil algorithm).
fn iso8601_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Everything a run produced, as written to `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Format version of this file.
    pub schema: u32,
    /// The exact command line.
    pub command: Vec<String>,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Group filters given on the command line (empty: all groups).
    pub filters: Vec<String>,
    /// Groups that ran (selected by the filters).
    pub groups: Vec<String>,
    /// Machine and build facts.
    pub machine: MachineInfo,
    /// Wall-clock duration of the run, seconds.
    pub duration_secs: f64,
    /// How to read `ratio`.
    pub ratio_legend: String,
    /// All result rows.
    pub rows: Vec<Row>,
    /// Groups or parts that could not run.
    pub skips: Vec<Skip>,
}

/// A figure with about four significant digits, or `-` when not a number.
///
/// ```
/// use perfkit_benches::harness::format_value;
/// assert_eq!(format_value(1234.5678), "1235");
/// assert_eq!(format_value(12.345678), "12.35");
/// assert_eq!(format_value(f64::NAN), "-");
/// ```
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return NO_PEER.into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn format_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        NO_PEER.into()
    }
}

const HEADERS: [&str; 9] = [
    "group", "workload", "metric", "subject", "value", "peer", "value", "ratio", "note",
];

impl Report {
    /// The current schema version.
    pub const SCHEMA: u32 = 1;

    fn cells(&self) -> Vec<[String; 9]> {
        self.rows
            .iter()
            .map(|r| {
                [
                    r.group.clone(),
                    r.workload.clone(),
                    r.metric.clone(),
                    r.subject.clone(),
                    format_value(r.subject_value),
                    r.peer.clone(),
                    format_value(r.peer_value),
                    format_ratio(r.ratio),
                    r.note.clone(),
                ]
            })
            .collect()
    }

    /// An aligned plain-text table of the rows, then the skips and the ratio legend.
    pub fn to_table(&self) -> String {
        let cells = self.cells();
        let mut widths = HEADERS.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let numeric = [false, false, false, false, true, false, true, true, false];
        let mut out = String::new();
        let mut line = |cols: &[String]| {
            let mut text = String::new();
            for (i, c) in cols.iter().enumerate() {
                let pad = widths[i].saturating_sub(c.chars().count());
                if i > 0 {
                    text.push_str("  ");
                }
                if numeric[i] {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(c);
                } else {
                    text.push_str(c);
                    if i + 1 < cols.len() {
                        text.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&HEADERS.map(String::from));
        line(&widths.map(|w| "-".repeat(w)));
        for row in &cells {
            line(row);
        }
        for skip in &self.skips {
            let _ = writeln!(out, "skipped  {}: {}", skip.group, skip.reason);
        }
        let _ = writeln!(out, "\n{RATIO_LEGEND}");
        out
    }

    /// The report as Markdown: run facts, the table, the skips.
    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::from("# perfkit benchmark report\n\n");
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        let _ = writeln!(out, "- command: `{}`", self.command.join(" "));
        let _ = writeln!(
            out,
            "- date: {} · host: {} · {} cores · {}/{} · CPU: {}",
            m.date_utc,
            m.hostname,
            m.cores,
            m.os,
            m.arch,
            opt(&m.cpu_model)
        );
        let _ = writeln!(
            out,
            "- rustc: {} · commit: {}",
            opt(&m.rustc),
            opt(&m.git_commit)
        );
        let _ = writeln!(
            out,
            "- Redis: {} · PostgreSQL: {}",
            if m.redis_url_set {
                opt(&m.redis_version)
            } else {
                "not configured".into()
            },
            if m.database_url_set {
                opt(&m.postgres_version)
            } else {
                "not configured".into()
            },
        );
        let _ = writeln!(
            out,
            "- quick: {} · duration: {:.1}s\n\n{RATIO_LEGEND}\n",
            self.quick, self.duration_secs
        );
        let esc = |s: &str| s.replace('|', "\\|");
        let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
        let _ = writeln!(out, "|---|---|---|---|--:|---|--:|--:|---|");
        for row in self.cells() {
            let row: Vec<String> = row.iter().map(|c| esc(c)).collect();
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        if !self.skips.is_empty() {
            out.push_str("\n## Skipped\n\n");
            for skip in &self.skips {
                let _ = writeln!(out, "- `{}`: {}", skip.group, esc(&skip.reason));
            }
        }
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Parses a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Writes `report.json` and `report.md` into `dir`, creating it.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), self.to_json())?;
        std::fs::write(dir.join("report.md"), self.to_markdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> Report {
        Report {
            schema: Report::SCHEMA,
            command: vec!["perf-bench".into(), "--quick".into()],
            quick: true,
            filters: vec!["harness".into()],
            groups: vec!["harness_selfcheck".into()],
            machine: MachineInfo {
                hostname: "h".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu_model: None,
                cores: 2,
                date_utc: "2025-01-01T00:00:00Z".into(),
                rustc: Some("rustc 1.95.0".into()),
                git_commit: None,
                redis_url_set: false,
                database_url_set: true,
                redis_version: None,
                postgres_version: Some("15.8".into()),
            },
            duration_secs: 1.5,
            ratio_legend: RATIO_LEGEND.into(),
            rows: vec![
                Row::new("w | pipes", "ns/op", false)
                    .subject("a", 10.0)
                    .peer("b", 15.0)
                    .note("±1%"),
                Row::new("ref", "MB/s", true).subject("a", 1234.0),
            ],
            skips: vec![Skip {
                group: "g".into(),
                reason: "REDIS_URL not set".into(),
            }],
        }
    }

    fn same_f64(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b
    }

    #[test]
    fn ratio_direction() {
        // Lower is better: the subject taking less time is a ratio above 1.
        assert!(ratio(10.0, 20.0, false) > 1.0);
        assert!(ratio(20.0, 10.0, false) < 1.0);
        // Higher is better: the subject doing more per second is a ratio above 1.
        assert!(ratio(20.0, 10.0, true) > 1.0);
        assert!(ratio(10.0, 20.0, true) < 1.0);
        assert!(ratio(f64::NAN, 1.0, true).is_nan());
    }

    #[test]
    fn json_round_trip_keeps_rows_including_nan() {
        let report = sample_report();
        let json = report.to_json();
        assert!(json.contains("\"peer_value\": null"), "{json}");
        let back = Report::from_json(&json).unwrap();
        assert_eq!(back.rows.len(), report.rows.len());
        for (a, b) in back.rows.iter().zip(&report.rows) {
            assert_eq!(a.workload, b.workload);
            assert_eq!(a.peer, b.peer);
            assert!(same_f64(a.subject_value, b.subject_value));
            assert!(same_f64(a.peer_value, b.peer_value));
            assert!(same_f64(a.ratio, b.ratio));
            assert_eq!(a.higher_is_better, b.higher_is_better);
        }
        assert_eq!(back.skips, report.skips);
        assert_eq!(back.machine, report.machine);
        assert_eq!(back.command, report.command);
    }

    #[test]
    fn table_and_markdown_show_rows_and_skips() {
        let report = sample_report();
        let table = report.to_table();
        assert!(table.contains("1.50x"), "{table}");
        assert!(table.contains("skipped  g: REDIS_URL not set"), "{table}");
        let md = report.to_markdown();
        assert!(md.contains("w \\| pipes"), "{md}");
        assert!(md.contains("## Skipped"), "{md}");
        assert!(md.contains("ratio > 1"), "{md}");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_from_unix(1_735_689_599), "2024-12-31T23:59:59Z");
    }
}
