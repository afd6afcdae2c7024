//! Cross-process L1 coherency (feature `redis`): every write, delete, tag invalidation or clear
//! made through one [`TieredCache`](crate::tiered::TieredCache) is published on
//! `{prefix}:invalidate`, and every other process attached to the channel drops the affected
//! entries from its L1.
//!
//! # Staleness bound
//!
//! A write publishes before it returns, so once `set` has returned, another process's L1 serves
//! the old value only until the message is delivered: one pub/sub hop, measured in
//! [`CoherencyStats::staleness`] (see the crate's benchmark notes for figures). Messages that
//! cannot be delivered — the subscriber is disconnected, or the publish itself failed (counted
//! in [`CoherencyStats::publish_errors`]) — are not replayed by Redis, so:
//!
//! - on every (re)subscription the local L1 is **cleared**, since invalidations may have been
//!   missed while disconnected; this costs a burst of L1 misses after a Redis restart and
//!   bounds the staleness to the outage;
//! - during the outage, [`DisconnectPolicy::KeepServing`] (the default) keeps serving L1 —
//!   availability first, staleness up to the outage length — while
//!   [`DisconnectPolicy::BypassL1`] stops reading and writing L1 until the subscription is back
//!   (no staleness beyond one pub/sub hop, at the cost of L1 hits during the outage).
//!
//! A process ignores its own messages (each carries the sender's random origin id).

mod message;
mod subscriber;

pub use subscriber::{Coherency, CoherencyConfig, CoherencyStats, DisconnectPolicy};
