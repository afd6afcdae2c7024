//! Plan analysis: `EXPLAIN (FORMAT JSON)` parsed into typed nodes ([`node`]) and the issue
//! detectors ([`detect`]). Pure: the server side lives in the `postgres`-gated explainer.

pub(crate) mod detect;
pub(crate) mod node;
