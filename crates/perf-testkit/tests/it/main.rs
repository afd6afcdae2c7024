//! Integration tests of perf-testkit: throwaway servers and the environment policy.

// Helpers outside `#[test]` functions may unwrap too: a panic is a test failure here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod env_policy;
mod temp_postgres;
mod temp_redis;
