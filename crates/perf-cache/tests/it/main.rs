//! Integration tests of `perf-cache`: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod analytics;
#[cfg(feature = "macros")]
mod cached_macro;
mod l1;
mod l1_memory;
mod l1_snapshot;
mod memory_size;
mod single_flight;
mod warming;

#[cfg(feature = "redis")]
mod coherency;
#[cfg(feature = "postgres")]
mod postgres_tier;
#[cfg(feature = "redis-cluster")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_tier;
#[cfg(feature = "redis")]
mod tiered;
