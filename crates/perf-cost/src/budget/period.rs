//! Budget scopes and calendar periods, and the ledger line keys they produce.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::money::Usd;

/// A calendar period a budget covers, in the configured time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Period {
    /// A calendar day (midnight to midnight).
    Daily,
    /// An ISO week (Monday to Sunday).
    Weekly,
    /// A calendar month.
    Monthly,
    /// Forever.
    Total,
}

impl Period {
    /// The identifier of the period containing `at`, such as `day:2026-11-21`, `week:2026-W47`,
    /// `month:2026-11` or `total`.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use perf_cost::Period;
    /// let at = Utc.with_ymd_and_hms(2026, 11, 21, 23, 30, 0).unwrap();
    /// assert_eq!(Period::Daily.key(at, chrono_tz::Tz::UTC), "day:2026-11-21");
    /// assert_eq!(Period::Daily.key(at, chrono_tz::Europe::Berlin), "day:2026-11-22");
    /// assert_eq!(Period::Weekly.key(at, chrono_tz::Tz::UTC), "week:2026-W47");
    /// assert_eq!(Period::Monthly.key(at, chrono_tz::Tz::UTC), "month:2026-11");
    /// ```
    pub fn key(self, at: DateTime<Utc>, tz: Tz) -> String {
        let local = at.with_timezone(&tz);
        match self {
            Self::Daily => format!("day:{}", local.date_naive()),
            Self::Weekly => {
                let w = local.iso_week();
                format!("week:{}-W{:02}", w.year(), w.week())
            }
            Self::Monthly => format!("month:{}-{:02}", local.year(), local.month()),
            Self::Total => "total".to_owned(),
        }
    }
}

/// Whom a budget applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetScope {
    /// All calls.
    Global,
    /// Calls of one user.
    User(String),
    /// Calls of one pipeline.
    Pipeline(String),
    /// Each user separately (every user gets this limit).
    EachUser,
    /// Each pipeline separately.
    EachPipeline,
}

impl BudgetScope {
    /// The scope key this budget uses for a call, or `None` when it does not apply to the call.
    pub(crate) fn key_for(&self, user: Option<&str>, pipeline: Option<&str>) -> Option<String> {
        match self {
            Self::Global => Some("global".to_owned()),
            Self::User(u) => (user == Some(u.as_str())).then(|| format!("user:{u}")),
            Self::EachUser => user.map(|u| format!("user:{u}")),
            Self::Pipeline(p) => (pipeline == Some(p.as_str())).then(|| format!("pipeline:{p}")),
            Self::EachPipeline => pipeline.map(|p| format!("pipeline:{p}")),
        }
    }
}

/// One budget: a limit on spend of a scope in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Whom it applies to.
    pub scope: BudgetScope,
    /// Which calendar period.
    pub period: Period,
    /// The limit.
    pub limit: Usd,
}

impl Budget {
    /// A budget.
    pub fn new(scope: BudgetScope, period: Period, limit: Usd) -> Self {
        Self {
            scope,
            period,
            limit,
        }
    }
}
