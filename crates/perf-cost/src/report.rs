//! Usage reports for a period, grouped by model, user, pipeline or day, with JSON and CSV export.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::CostError;
use crate::money::Usd;
use crate::tracker::{CostTracker, GroupBy, Totals};

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// The group's key (model name, user, pipeline or `YYYY-MM-DD`; `-` for none).
    pub key: String,
    /// Number of calls.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cached prompt tokens.
    pub cached_input_tokens: u64,
    /// Cost in nano-dollars (exact).
    pub cost_nanos: i64,
    /// Cost as an exact decimal string of dollars.
    pub cost_usd: String,
}

impl ReportRow {
    fn new(key: String, t: &Totals) -> Self {
        Self {
            key,
            calls: t.calls,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cached_input_tokens: t.cached_input_tokens,
            cost_nanos: t.cost.nanos(),
            cost_usd: t.cost.to_decimal_string(),
        }
    }
}

/// Usage in a date range grouped by one dimension, with the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// First day (inclusive).
    pub from: NaiveDate,
    /// Last day (inclusive).
    pub to: NaiveDate,
    /// IANA time zone of the days.
    pub time_zone: String,
    /// The grouping.
    pub group_by: GroupBy,
    /// Rows, by descending cost then key.
    pub rows: Vec<ReportRow>,
    /// Sum over the rows.
    pub total: ReportRow,
}

impl UsageReport {
    /// Builds a report from a tracker's aggregates: reads `O(groups)` cells, never the history.
    ///
    /// ```
    /// use perf_cost::{Catalog, CostTracker, GroupBy, Usage, UsageEvent, UsageReport};
    /// let t = CostTracker::new(Catalog::builtin().unwrap());
    /// t.track(UsageEvent::new("gpt-4o", Usage::new(1000, 100)).pipeline("chat")).unwrap();
    /// let day = chrono::Utc::now().date_naive();
    /// let r = UsageReport::build(&t, GroupBy::Pipeline, day - chrono::Days::new(1), day + chrono::Days::new(1));
    /// assert_eq!(r.rows[0].key, "chat");
    /// assert!(r.to_csv().starts_with("group_by,key,calls"));
    /// ```
    pub fn build(tracker: &CostTracker, group_by: GroupBy, from: NaiveDate, to: NaiveDate) -> Self {
        let groups = tracker.totals_by(group_by, Some((from, to)));
        let mut total = Totals::default();
        let mut rows: Vec<ReportRow> = groups
            .into_iter()
            .map(|(k, t)| {
                total.calls += t.calls;
                total.input_tokens += t.input_tokens;
                total.output_tokens += t.output_tokens;
                total.cached_input_tokens += t.cached_input_tokens;
                total.cost += t.cost;
                ReportRow::new(k, &t)
            })
            .collect();
        rows.sort_by(|a, b| {
            b.cost_nanos
                .cmp(&a.cost_nanos)
                .then_with(|| a.key.cmp(&b.key))
        });
        Self {
            from,
            to,
            time_zone: tracker.time_zone().name().to_owned(),
            group_by,
            rows,
            total: ReportRow::new("TOTAL".into(), &total),
        }
    }

    /// The total cost.
    pub fn total_cost(&self) -> Usd {
        Usd::from_nanos(self.total.cost_nanos)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String, CostError> {
        serde_json::to_string_pretty(self).map_err(|e| CostError::Export(e.to_string()))
    }

    /// CSV (RFC 4180): a header, one line per row, then the `TOTAL` line. Costs are exact decimal
    /// dollars.
    pub fn to_csv(&self) -> String {
        let group = match self.group_by {
            GroupBy::Model => "model",
            GroupBy::User => "user",
            GroupBy::Pipeline => "pipeline",
            GroupBy::Day => "day",
        };
        let mut out = String::from(
            "group_by,key,calls,input_tokens,output_tokens,cached_input_tokens,cost_usd\r\n",
        );
        for r in self.rows.iter().chain(std::iter::once(&self.total)) {
            out.push_str(&format!(
                "{group},{},{},{},{},{},{}\r\n",
                csv_field(&r.key),
                r.calls,
                r.input_tokens,
                r.output_tokens,
                r.cached_input_tokens,
                r.cost_usd
            ));
        }
        out
    }
}

/// Quotes a CSV field when it contains a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is prefixed with `'` so spreadsheets do not evaluate user-controlled names as formulas.
pub(crate) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s != "-" {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
