//! Integration tests of `perf-batch`: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alloc;
mod checkpoint;
mod coalesce;
#[cfg(feature = "redis")]
mod distributed;
mod processor;
mod strategies;
mod stream;
