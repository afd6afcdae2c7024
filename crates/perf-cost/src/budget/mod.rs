//! Budgets: scopes and calendar periods, the ledger, and enforcement with alerts.

mod ledger;
mod manager;
mod period;
#[cfg(feature = "postgres")]
mod postgres_ledger;
#[cfg(feature = "redis")]
mod redis_ledger;

pub use ledger::{
    Committed, InMemoryLedger, Ledger, LineRequest, LineState, ReserveOutcome, ReserveRequest,
};
pub use manager::{Alert, BudgetConfig, BudgetManager, Reservation, SpendRequest};
pub use period::{Budget, BudgetScope, Period};
#[cfg(feature = "postgres")]
pub use postgres_ledger::{PostgresLedger, PostgresLedgerOptions};
#[cfg(feature = "redis")]
pub use redis_ledger::RedisLedger;
