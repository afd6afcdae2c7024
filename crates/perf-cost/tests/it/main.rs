//! Integration tests of `perf-cost`: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod budget;
mod catalog;
mod faults;
mod ledger;
mod report;
mod tokens;
mod tracker;
mod trim;
