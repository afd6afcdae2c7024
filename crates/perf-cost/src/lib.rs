//! `perf-cost`: LLM cost control — exact token counting, a pricing catalog, cost tracking,
//! budgets enforced across workers, reports and savings recommendations.
//!
//! What it is:
//! - [`TokenCounter`] / [`Encoding`]: token counts equal to OpenAI's tiktoken (checked against
//!   golden counts produced with Python tiktoken), in near-linear time on any input (a 1 MiB
//!   piece that pre-tokenization cannot split takes milliseconds; tiktoken-rs needs up to seconds
//!   and panics on long whitespace runs), without building a token vector, with an early-stop
//!   [`Encoder::count_till_limit`]; chat overheads and tool definitions; estimates for providers
//!   without a public tokenizer say they are estimates.
//! - [`Catalog`]: prices of 34 models shipped as `data/catalog.toml` (as of 2026-11-21), user
//!   overrides, typed errors for unknown models. Money is exact integer nano-dollars ([`Usd`]).
//! - [`CostTracker`]: prices calls, keeps incremental aggregates (reports cost `O(groups)`) and a
//!   bounded history; [`UsageReport`] exports JSON and CSV; [`Recommendations`] finds savings.
//! - [`BudgetManager`]: daily/weekly/monthly/total budgets, global and per user or pipeline, on
//!   calendar periods in a time zone; `reserve` before a call, `commit` after; once-per-period
//!   alerts; on an [`InMemoryLedger`], or shared across processes on Redis (feature `redis`) or
//!   PostgreSQL (feature `postgres`).
//! - [`trim`]: fit prompt parts and chat histories into a token budget.
//!
//! What it is not: an HTTP client for LLM providers, or a billing system of record (provider
//! invoices remain the truth; perf-cost estimates them closely and enforces budgets before calls).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use perf_cost::{
//!     BudgetConfig, BudgetManager, BudgetScope, Catalog, ChatMessage, CostTracker, Period,
//!     SpendRequest, TokenCounter, Usage, UsageEvent, Usd,
//! };
//!
//! let counter = TokenCounter::global();
//! assert_eq!(counter.count("gpt-4o", "Hello, world!").unwrap().tokens, 4);
//! let chat = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
//! let prompt = counter.count_chat("gpt-4o", &chat, &[]).unwrap().tokens;
//!
//! // Before the call: reserve the worst case (prompt + max output).
//! let catalog = Catalog::builtin().unwrap();
//! let worst = catalog.cost("gpt-4o", &Usage::new(prompt, 500)).unwrap();
//! let budgets = BudgetManager::in_memory(
//!     BudgetConfig::default().budget(BudgetScope::EachUser, Period::Daily, Usd::from_cents(500)),
//! );
//! let reservation = budgets.reserve(&SpendRequest::new(worst).user("alice")).await.unwrap();
//!
//! // After the call: record the real usage and commit its cost.
//! let tracker = CostTracker::new(catalog);
//! let cost = tracker.track(UsageEvent::new("gpt-4o", Usage::new(prompt, 42)).user("alice")).unwrap();
//! budgets.commit(reservation, cost).await.unwrap();
//! assert!(cost <= worst);
//! # });
//! ```

pub mod budget;
mod catalog;
mod error;
mod money;
mod prompt;
mod recommend;
mod report;
pub mod tokens;
mod tracker;
pub mod trim;

#[cfg(feature = "redis")]
pub use budget::RedisLedger;
pub use budget::{
    Alert, Budget, BudgetConfig, BudgetManager, BudgetScope, Committed, InMemoryLedger, Ledger,
    LineRequest, LineState, Period, Reservation, ReserveOutcome, ReserveRequest, SpendRequest,
};
#[cfg(feature = "postgres")]
pub use budget::{PostgresLedger, PostgresLedgerOptions};
pub use catalog::{Catalog, LongContextTier, ModelPricing, Usage};
pub use error::CostError;
pub use money::{PerMillion, Usd};
pub use prompt::prompt_hash;
pub use recommend::{
    DuplicatePrompts, OversizedPrompts, RecommendOptions, Recommendations, Substitution,
    UnusedCacheDiscount,
};
pub use report::{ReportRow, UsageReport};
pub use tokens::{
    encoding_for_model, Accuracy, ChatMessage, Encoder, Encoding, EncodingSource, ModelEncoding,
    TokenCount, TokenCounter, ToolDefinition,
};
pub use tracker::{CostTracker, GroupBy, Recorded, Totals, UsageEvent};
