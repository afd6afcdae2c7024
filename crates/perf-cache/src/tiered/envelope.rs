//! The bytes the manager stores in remote levels: perf-core's versioned codec around
//! `(expires_at_ms, tags, value)`, so a promotion keeps the entry's tags and never outlives it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Result;

/// Encodes an entry; `expires` is the absolute expiry on the wall clock, if any.
pub(crate) fn encode<V: Serialize>(
    value: &V,
    tags: &[&str],
    expires: Option<SystemTime>,
) -> Result<Vec<u8>> {
    Ok(perf_core::codec::encode(&(
        expires.map(millis_since_epoch),
        tags,
        value,
    ))?)
}

/// A decoded entry.
#[derive(Debug)]
pub(crate) struct Decoded<V> {
    pub(crate) value: V,
    pub(crate) tags: Vec<String>,
    pub(crate) expires_at_ms: Option<u64>,
}

impl<V> Decoded<V> {
    /// Time left at `now`; `None` means no expiry, `Some(ZERO)` an expired entry.
    pub(crate) fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at_ms
            .map(|at| Duration::from_millis(at.saturating_sub(millis_since_epoch(now))))
    }
}

/// Decodes bytes written by [`encode`]; any other bytes give a typed error.
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<Decoded<V>> {
    let (expires_at_ms, tags, value): (Option<u64>, Vec<String>, V) =
        perf_core::codec::decode(bytes)?;
    Ok(Decoded {
        value,
        tags,
        expires_at_ms,
    })
}

fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
