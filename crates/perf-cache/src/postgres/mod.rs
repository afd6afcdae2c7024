//! The PostgreSQL tier (feature `postgres`) for teams without Redis: [`PostgresTier`] keeps
//! entries in an UNLOGGED table created on first use, ignores expired rows on reads and purges
//! them in bounded batches.

mod config;
mod sql;
mod tier;

pub use config::PostgresTierConfig;
pub use tier::PostgresTier;
