//! The report: summary, slow statements, plan issues by severity, index recommendations with
//! benefit and size, existing-index findings, N+1 findings and settings advice — as JSON and
//! Markdown. Every SQL text in it is redacted.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::advisor::existing::IndexFinding;
use crate::nplusone::NPlusOneFinding;
use crate::plan::detect::{Issue, Severity};
use crate::settings::SettingAdvice;

/// Order of [`top_statements`](crate::top_statements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TopBy {
    /// Total execution time.
    TotalTime,
    /// Mean execution time.
    MeanTime,
    /// Calls.
    Calls,
    /// Rows returned or affected.
    Rows,
}

/// One row of `pg_stat_statements`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatementStat {
    /// `queryid`.
    pub queryid: i64,
    /// The statement, literals redacted.
    pub query: String,
    /// Calls.
    pub calls: i64,
    /// Total execution time, ms.
    pub total_ms: f64,
    /// Mean execution time, ms.
    pub mean_ms: f64,
    /// Rows.
    pub rows: i64,
    /// Shared blocks found in cache.
    pub shared_blks_hit: i64,
    /// Shared blocks read.
    pub shared_blks_read: i64,
}

/// An index recommendation as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReportIndex {
    /// The query it serves (redacted).
    pub query: String,
    /// `CREATE INDEX CONCURRENTLY …`.
    pub statement: String,
    /// Estimated cost before.
    pub cost_before: f64,
    /// Estimated cost after.
    pub cost_after: f64,
    /// Fractional cost reduction.
    pub improvement: f64,
    /// Predicted size in bytes.
    pub predicted_size_bytes: Option<u64>,
}

/// An issue with the query it was found in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReportIssue {
    /// The query (redacted).
    pub query: String,
    /// The issue.
    pub issue: Issue,
}

impl ReportIssue {
    /// An issue found in `query` (pass it redacted).
    pub fn new(query: String, issue: Issue) -> Self {
        ReportIssue { query, issue }
    }
}

/// Counts shown at the top of the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// Slow statements listed.
    pub slow_queries: usize,
    /// Issues of high severity.
    pub high: usize,
    /// Issues of medium severity.
    pub medium: usize,
    /// Issues of low severity.
    pub low: usize,
    /// Index recommendations.
    pub index_recommendations: usize,
    /// Existing-index findings.
    pub existing_index_findings: usize,
    /// N+1 findings.
    pub n_plus_one: usize,
    /// Settings recommendations.
    pub settings: usize,
}

/// The whole report.
///
/// ```
/// let mut report = perf_query::Report::default();
/// report.settings.push(perf_query::advise_settings(
///     &[perf_query::PgSetting::new("random_page_cost", "4", None)],
///     &perf_query::MachineInfo::new(8 << 30, 4, true),
/// ).remove(0));
/// let md = report.to_markdown();
/// assert!(md.contains("random_page_cost"));
/// let json = report.to_json().unwrap();
/// assert!(json.contains("\"settings\": 1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// Slow statements (from `pg_stat_statements`).
    pub slow_queries: Vec<StatementStat>,
    /// Plan issues.
    pub issues: Vec<ReportIssue>,
    /// Index recommendations.
    pub index_recommendations: Vec<ReportIndex>,
    /// Findings on existing indexes.
    pub existing_indexes: Vec<IndexFinding>,
    /// N+1 findings.
    pub n_plus_one: Vec<NPlusOneFinding>,
    /// Settings advice.
    pub settings: Vec<SettingAdvice>,
}

impl Report {
    /// The counts.
    pub fn summary(&self) -> Summary {
        let count = |s: Severity| self.issues.iter().filter(|i| i.issue.severity == s).count();
        Summary {
            slow_queries: self.slow_queries.len(),
            high: count(Severity::High),
            medium: count(Severity::Medium),
            low: count(Severity::Low),
            index_recommendations: self.index_recommendations.len(),
            existing_index_findings: self.existing_indexes.len(),
            n_plus_one: self.n_plus_one.len(),
            settings: self.settings.len(),
        }
    }

    /// Pretty JSON: `{"summary": …, "slow_queries": …, …}` with issues sorted by severity.
    ///
    /// # Errors
    ///
    /// Serialization errors (none expected for these types).
    pub fn to_json(&self) -> std::result::Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            summary: Summary,
            #[serde(flatten)]
            report: &'a Report,
        }
        let mut sorted = self.clone();
        sorted
            .issues
            .sort_by_key(|i| std::cmp::Reverse(i.issue.severity));
        serde_json::to_string_pretty(&Out {
            summary: self.summary(),
            report: &sorted,
        })
    }

    /// Markdown with one section per part; issues by severity, most severe first.
    pub fn to_markdown(&self) -> String {
        let s = self.summary();
        let mut md = String::from("# perf-query report\n\n## Summary\n\n");
        let _ = writeln!(
            md,
            "- {} slow statements\n- issues: {} high, {} medium, {} low\n- {} index recommendations, {} findings on existing indexes\n- {} N+1 patterns\n- {} settings recommendations\n",
            s.slow_queries, s.high, s.medium, s.low, s.index_recommendations,
            s.existing_index_findings, s.n_plus_one, s.settings
        );
        if !self.slow_queries.is_empty() {
            md.push_str("## Slow statements\n\n| total ms | mean ms | calls | rows | statement |\n|---:|---:|---:|---:|---|\n");
            for q in &self.slow_queries {
                let _ = writeln!(
                    md,
                    "| {:.1} | {:.2} | {} | {} | `{}` |",
                    q.total_ms,
                    q.mean_ms,
                    q.calls,
                    q.rows,
                    cell(&q.query)
                );
            }
            md.push('\n');
        }
        if !self.issues.is_empty() {
            md.push_str("## Issues\n\n");
            for sev in [Severity::High, Severity::Medium, Severity::Low] {
                for i in self.issues.iter().filter(|i| i.issue.severity == sev) {
                    let _ = writeln!(
                        md,
                        "- **{}** {:?} at `{}`: {}  \n  query: `{}`  \n  fix: {}",
                        sev,
                        i.issue.kind,
                        i.issue.node,
                        i.issue.message,
                        cell(&i.query),
                        i.issue.recommendation
                    );
                }
            }
            md.push('\n');
        }
        if !self.index_recommendations.is_empty() {
            md.push_str("## Index recommendations\n\n| benefit | cost before → after | size | statement | for |\n|---:|---|---:|---|---|\n");
            for r in &self.index_recommendations {
                let _ = writeln!(
                    md,
                    "| {:.0} % | {:.1} → {:.1} | {} | `{}` | `{}` |",
                    r.improvement * 100.0,
                    r.cost_before,
                    r.cost_after,
                    r.predicted_size_bytes.map_or("?".into(), human_bytes),
                    cell(&r.statement),
                    cell(&r.query)
                );
            }
            md.push('\n');
        }
        if !self.existing_indexes.is_empty() {
            md.push_str("## Existing indexes\n\n");
            for f in &self.existing_indexes {
                let _ = writeln!(
                    md,
                    "- {:?} `{}` on `{}` ({}): {}",
                    f.kind,
                    f.index,
                    f.table,
                    human_bytes(f.size_bytes),
                    f.recommendation
                );
            }
            md.push('\n');
        }
        if !self.n_plus_one.is_empty() {
            md.push_str("## N+1 queries\n\n");
            for f in &self.n_plus_one {
                let _ = writeln!(
                    md,
                    "- `{}` ran {} times ({:.1} ms) in context `{}`{}",
                    cell(&f.example),
                    f.count,
                    f.total.as_secs_f64() * 1000.0,
                    cell(&f.context),
                    f.batched_rewrite
                        .as_ref()
                        .map(|r| format!("; batch it: `{}`", cell(r)))
                        .unwrap_or_default()
                );
            }
            md.push('\n');
        }
        if !self.settings.is_empty() {
            md.push_str(
                "## Settings\n\n| setting | current | recommended | why |\n|---|---|---|---|\n",
            );
            for a in &self.settings {
                let _ = writeln!(
                    md,
                    "| {} | {} | {}{} | {} |",
                    a.name,
                    a.current,
                    a.recommended,
                    if a.restart { " (restart)" } else { "" },
                    a.reason
                );
            }
        }
        md
    }
}

/// Escapes a value for a Markdown table cell or inline code.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('`', "'").replace('\n', " ")
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} kB", b as f64 / 1024.0)
    }
}
