//! `perf-query`: PostgreSQL query optimization — SQL understanding and fingerprints, plan
//! analysis, validated index advice, N+1 detection and a result cache.
//!
//! What it is: a library a service links to understand and speed up its PostgreSQL queries.
//! Everything that talks to a live server sits behind the `postgres` feature; SQL analysis,
//! fingerprints, redaction, plan-JSON analysis, N+1 detection over fed events and the
//! in-process result cache compile without it.
//!
//! What it is not: a query builder, an ORM, or a migration tool. It never changes data or
//! schema outside transactions it rolls back, and never changes server settings. Literals are
//! redacted in everything it reports or logs.
//!
//! Where things are:
//!
//! - SQL understanding: [`analyze`] → [`SqlAnalysis`] (tables with resolved aliases, filter
//!   columns with their [`FilterOp`], joins, ORDER BY / GROUP BY, LIMIT); fingerprints and
//!   redaction: [`normalize`], [`fingerprint`], [`redact`].
//! - Plans: [`Plan`] / [`PlanNode`] from `EXPLAIN (FORMAT JSON)`, [`detect_issues`]; against a
//!   server (feature `postgres`): `Explainer` (always rolled back, `statement_timeout`).
//! - Index advice: [`generate_candidates`], [`predict_index_size`],
//!   [`existing_index_findings`]; validated by what-if costing in `IndexAdvisor` (HypoPG, else
//!   real indexes in a rolled-back transaction); for a weighted workload (e.g. from
//!   `pg_stat_statements`), `IndexAdvisor::advise_workload` chooses an index set under a
//!   storage budget.
//! - N+1: [`NPlusOneDetector`] (fed events) and `TrackedPool` (a pool wrapper that records
//!   them and serves [`ResultCache`]d reads, invalidated by writes). With the `shared-cache`
//!   feature, `SharedResultCache` keeps results in perf-cache's Redis L2 so every process
//!   shares them and every process sees the invalidations.
//! - `top_statements` (pg_stat_statements), [`advise_settings`], [`Report`] (JSON, Markdown).
//!
//! ```
//! use perf_query::{analyze, normalize, FilterOp};
//!
//! // Queries that differ only in literal values share one fingerprint.
//! let a = normalize("SELECT * FROM orders WHERE customer_id = 42").unwrap();
//! let b = normalize("select * from orders where customer_id = 7").unwrap();
//! assert_eq!(a.fingerprint, b.fingerprint);
//! assert_eq!(a.text, "SELECT * FROM orders WHERE customer_id = $1");
//!
//! // The parsed predicates are what the index advisor builds candidates from.
//! let sql = analyze("SELECT * FROM orders WHERE customer_id = $1 AND created_at > now()").unwrap();
//! assert_eq!(sql.filters[0].op, FilterOp::Equality);
//! assert_eq!(sql.filters[1].op, FilterOp::Range);
//! ```

mod advisor;
mod error;
mod fingerprint;
mod nplusone;
#[cfg(feature = "postgres")]
mod pg;
mod plan;
mod report;
mod result_cache;
mod settings;
mod sql;

pub use advisor::candidates::{generate_candidates, CandidateConfig};
pub use advisor::existing::{
    existing_index_findings, ExistingIndexBuilder, IndexFinding, IndexFindingKind,
};
pub use advisor::size::predict_index_size;
pub use advisor::{ColumnStats, ExistingIndex, IndexCandidate, IndexColumn, TableInfo};
pub use error::{QueryError, Result};
pub use fingerprint::{
    fingerprint, normalize, redact, redact_or_marker, Fingerprint, NormalizedQuery, StatementKind,
};
pub use nplusone::{batched_rewrite, NPlusOneConfig, NPlusOneDetector, NPlusOneFinding};
pub use plan::detect::{detect_issues, DetectorConfig, Issue, IssueKind, Severity};
pub use plan::node::{Actual, Buffers, NodeType, Plan, PlanNode};
pub use report::{Report, ReportIndex, ReportIssue, StatementStat, Summary, TopBy};
pub use result_cache::{ResultCache, ResultCacheStats, ResultKey, ResultStore};
pub use settings::{advise_settings, MachineInfo, PgSetting, SettingAdvice, ADVISED_SETTINGS};
pub use sql::{
    analyze, analyze_statement, parse_statement, quote_ident, ColumnRef, Filter, FilterOp,
    JoinPair, Limit, SortKey, SqlAnalysis, TableName, TableRef,
};

#[cfg(feature = "postgres")]
pub use deadpool_postgres;
#[cfg(feature = "postgres")]
pub use pg::advisor::{
    Advice, IndexAdvisor, IndexRecommendation, RealCheck, WhatIfCacheStats, WhatIfMethod,
    WhatIfMode,
};
#[cfg(feature = "postgres")]
pub use pg::connect_pool;
#[cfg(feature = "postgres")]
pub use pg::explain::{Analysis, ExplainOptions, Explainer};
#[cfg(feature = "shared-cache")]
pub use pg::shared::{CachedColumn, CachedRows, SharedCacheStats, SharedResultCache};
#[cfg(feature = "postgres")]
pub use pg::stats::{read_settings, top_statements, PG_STAT_STATEMENTS_HINT};
#[cfg(feature = "postgres")]
pub use pg::tracked::{ResultCacheConfig, TrackedPool};
#[cfg(feature = "postgres")]
pub use pg::workload::{
    CandidateOutcome, WorkloadAdvice, WorkloadCandidate, WorkloadIndex, WorkloadQuery,
    WorkloadQueryCost,
};
#[cfg(feature = "postgres")]
pub use tokio_postgres;
