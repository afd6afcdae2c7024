//! perf-core: the shared base of perfkit.
//!
//! Every perfkit crate builds on these pieces, and services can use them directly:
//!
//! - [`metrics`]: lock-free counters and gauges, a latency histogram with p50/p95/p99 and
//!   bounded relative error, a registry of named metrics, mergeable serde snapshots and
//!   Prometheus text exposition (and, with the `metrics-facade` feature, export to `metrics`).
//! - [`timing`]: a guard and wrappers for futures and closures that record each call's
//!   duration and success under a name.
//! - [`resource`]: this process's RSS and CPU, the system's memory and load.
//! - [`keys`]: stable, versioned blake3 keys from a namespace and serialized arguments.
//! - [`codec`]: postcard with a marker, a format version and a checksum; bad bytes give an
//!   error, never a panic.
//! - [`config`]: `perf.toml` with environment overrides, rollback switches and validation.
//! - [`clock`]: a [`Clock`](clock::Clock) trait with the real clock and a manual clock for tests.
//!
//! What it is not: perf-core does no network I/O and starts no threads or tasks of its own; it
//! is not a metrics backend (it renders Prometheus text, it does not serve it) and not a
//! general-purpose serialization format.
//!
//! ```
//! use std::time::Duration;
//! use perf_core::{codec, keys, metrics::MetricsRegistry, timing::Operation};
//!
//! // Time an operation into a registry and read its quantiles.
//! let registry = MetricsRegistry::new();
//! let op = Operation::new(&registry, "summarize");
//! let summary: Result<String, std::fmt::Error> = op.track_sync(|| Ok("short".to_owned()));
//! assert!(summary.is_ok());
//! let snapshot = registry.snapshot();
//! assert_eq!(snapshot.histograms["summarize"].count, 1);
//!
//! // A key every process computes the same way, and a value encoding that detects corruption.
//! let key = keys::stable_key("summaries", &("doc-17", 3u32))?;
//! let bytes = codec::encode(&summary.unwrap())?;
//! assert_eq!(codec::decode::<String>(&bytes)?, "short");
//! assert!(key.starts_with("summaries:v1:"));
//! # Ok::<(), perf_core::Error>(())
//! ```

pub mod clock;
pub mod codec;
pub mod config;
mod error;
pub mod keys;
pub mod metrics;
pub mod resource;
pub mod timing;

pub use error::{Error, Result};
