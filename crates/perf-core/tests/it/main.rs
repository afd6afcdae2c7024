//! Integration tests of perf-core: one binary, one module per area.

// Helpers outside `#[test]` functions unwrap too: a panic there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod clock;
mod codec;
mod config;
mod histogram;
mod keys;
mod registry;
mod timing;
