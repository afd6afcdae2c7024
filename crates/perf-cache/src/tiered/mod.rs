//! The tiered manager: [`TieredCache`] over an optional L1, L2 and database tier, with
//! promotion, per-level statistics, a circuit breaker per remote level, per-level write reports,
//! single-flight `get_or_compute` and stale-while-revalidate (`get_or_refresh`).

mod breaker;
mod builder;
mod cache;
mod compute;
mod envelope;
mod epoch;
mod refresh;
mod report;

pub use breaker::BreakerConfig;
pub use builder::TieredCacheBuilder;
#[cfg(feature = "redis")]
pub(crate) use cache::{futures_lite, InvalidationSink, L1Handle};
pub use cache::{CacheValue, TieredCache, WriteOptions};
#[cfg(feature = "macros")]
pub(crate) use compute::call_key;
#[cfg(feature = "redis")]
pub use compute::FleetLockConfig;
pub use report::{LevelStats, TieredStats, WriteReport};
