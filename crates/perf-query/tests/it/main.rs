//! Integration tests of `perf-query`: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "postgres")]
mod advisor;
mod candidates;
#[cfg(feature = "postgres")]
mod explain;
mod fingerprint;
mod nplusone;
mod report;
mod result_cache;
#[cfg(feature = "shared-cache")]
mod shared_cache;
mod sql;
#[cfg(feature = "postgres")]
mod support;
#[cfg(feature = "postgres")]
mod tracked;
#[cfg(feature = "postgres")]
mod workload;
