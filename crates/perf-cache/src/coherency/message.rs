//! The invalidation message on the pub/sub channel: origin, send time and what changed,
//! encoded with perf-core's checked codec so foreign or damaged messages are recognised.

use serde::{Deserialize, Serialize};

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// These keys were written or deleted.
    Keys(Vec<Vec<u8>>),
    /// These tags were invalidated.
    Tags(Vec<String>),
    /// Everything was cleared.
    Clear,
}

/// One invalidation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    /// The sending process's id; a process ignores its own messages.
    pub(crate) origin: u64,
    /// Wall-clock send time in microseconds since the Unix epoch (for the staleness figure).
    pub(crate) sent_at_us: u64,
    /// What changed.
    pub(crate) change: Change,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_and_rejects_foreign_bytes() {
        let m = Message {
            origin: 7,
            sent_at_us: 1,
            change: Change::Keys(vec![b"\x00k".to_vec()]),
        };
        let bytes = perf_core::codec::encode(&m).unwrap();
        assert_eq!(perf_core::codec::decode::<Message>(&bytes).unwrap(), m);
        assert!(perf_core::codec::decode::<Message>(b"hello").is_err());
    }
}
