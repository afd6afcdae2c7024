//! The crate's error type.

use std::time::Duration;

use crate::money::Usd;

/// Everything that can go wrong in perf-cost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CostError {
    /// An encoder could not be built (a bug or corrupt embedded data, not bad input).
    #[error("tokenizer {encoding} could not be built: {reason}")]
    Tokenizer {
        /// The encoding's name.
        encoding: &'static str,
        /// What failed.
        reason: String,
    },
    /// The model is not in the pricing catalog and no fallback is configured.
    #[error("model {model:?} is not in the pricing catalog and no fallback model is configured")]
    UnknownModel {
        /// The model asked for.
        model: String,
    },
    /// A catalog file could not be parsed; names the model and field where known.
    #[error("catalog {source_name}: model {model:?}, field {field:?}: {reason}")]
    Catalog {
        /// Which catalog (the built-in one or a user file path).
        source_name: String,
        /// The model entry, or empty when the error is not inside one.
        model: String,
        /// The field, or empty when the error is not about one field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration {field}: {reason}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A request was refused because it would exceed a budget.
    #[error("budget {scope} {period} exceeded: spent {spent} + reserved {reserved} + request {requested} > limit {limit}")]
    BudgetExceeded {
        /// The budget scope, such as `global` or `user:alice`.
        scope: String,
        /// The budget period, such as `daily:2026-11-21`.
        period: String,
        /// Committed spend in the period.
        spent: Usd,
        /// Outstanding reservations in the period.
        reserved: Usd,
        /// The amount asked for.
        requested: Usd,
        /// The budget limit.
        limit: Usd,
    },
    /// A single request's estimate is above the per-request cap and was not explicitly approved.
    #[error(
        "request estimate {requested} is above the per-request cap {cap} (needs explicit approval)"
    )]
    PerRequestCap {
        /// The estimate.
        requested: Usd,
        /// The cap.
        cap: Usd,
    },
    /// A reservation is unknown: already committed, released, or expired.
    #[error("reservation {id} is unknown (committed, released or expired after {ttl:?})")]
    UnknownReservation {
        /// The reservation's id.
        id: String,
        /// The configured reservation TTL.
        ttl: Duration,
    },
    /// A shared ledger backend failed.
    #[error("ledger backend {backend}: {reason}")]
    Ledger {
        /// `redis` or `postgres`.
        backend: &'static str,
        /// What failed.
        reason: String,
    },
    /// Export failed.
    #[error("export: {0}")]
    Export(String),
}
