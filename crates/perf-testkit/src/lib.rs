//! Test support shared by perfkit's integration tests and by `xtask`: finding the shared Redis
//! and PostgreSQL servers, the skip-or-fail policy, unique names, and private throwaway servers
//! for fault tests.
//!
//! This crate is not published and is not a client: it never speaks PostgreSQL's protocol and
//! only knows enough RESP to send `PING`. Tests bring their own client crates.
//!
//! # The environment contract
//!
//! - `REDIS_URL`, e.g. `redis://127.0.0.1:6379`.
//! - `DATABASE_URL`, e.g. `postgres://postgres@127.0.0.1:5432/test`.
//! - `PERFKIT_REQUIRE_SERVICES=1` turns a missing or unreachable server from a skip into a
//!   failure. `cargo xtask test` finds or starts the servers, exports all three and runs the
//!   workspace's tests, so nothing is silently skipped there; a plain `cargo test` on a machine
//!   without servers skips those tests and says so on stderr.
//!
//! # Example
//!
//! ```
//! fn writes_and_reads_back() {
//!     // Returns early (a skip, printed to stderr) when Redis is not configured.
//!     let url = perf_testkit::require_redis!();
//!     // Keys under a unique prefix, so parallel tests and reruns never collide.
//!     let prefix = perf_testkit::unique_name("roundtrip");
//!     assert!(url.starts_with("redis://") && prefix.starts_with("t_roundtrip_"));
//! }
//! writes_and_reads_back();
//! ```
//!
//! For tests that crash the server on purpose, [`TempRedis`] and [`TempPostgres`] start private
//! instances on free ports that can be stopped and restarted at will.

mod certs;
mod child;
mod error;
mod names;
mod rng;
mod services;
pub mod support;
mod temp_postgres;
mod temp_redis;

pub use certs::TestCertificates;
pub use child::{run_child_test, ChildResult};
pub use error::TestkitError;
pub use names::unique_name;
pub use rng::{lcg_text, XorShift};
pub use services::{
    database_url, redis_url, require_services, DATABASE_URL_VAR, REDIS_URL_VAR,
    REQUIRE_SERVICES_VAR,
};
pub use temp_postgres::TempPostgres;
pub use temp_redis::TempRedis;
