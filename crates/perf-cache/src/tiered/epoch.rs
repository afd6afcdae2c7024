//! Invalidation epochs: a remote read may copy a value into L1 only if no write or invalidation
//! of its key happened while the read was in flight, so a slow read never puts back a value
//! that a concurrent write (local, or from another process through coherency) replaced.

use std::sync::atomic::{AtomicU64, Ordering};

const STRIPES: usize = 64;

/// One counter for "everything" (tags, clear) and 64 striped by key hash.
#[derive(Debug)]
pub(crate) struct Epochs {
    global: AtomicU64,
    stripes: [AtomicU64; STRIPES],
}

/// What a reader saw before its remote read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen(u64, u64);

impl Default for Epochs {
    fn default() -> Self {
        Self {
            global: AtomicU64::new(0),
            stripes: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn stripe(key: &[u8]) -> usize {
    // FNV-1a: cheap, and only spreads keys over stripes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as usize) % STRIPES
}

impl Epochs {
    /// Before a remote read of `key`.
    pub(crate) fn seen(&self, key: &[u8]) -> Seen {
        Seen(
            self.global.load(Ordering::SeqCst),
            self.stripes[stripe(key)].load(Ordering::SeqCst),
        )
    }

    /// Whether nothing touched `key` since `seen`.
    pub(crate) fn unchanged(&self, key: &[u8], seen: Seen) -> bool {
        self.seen(key) == seen
    }

    /// Before a write or invalidation of `key` reaches L1.
    pub(crate) fn bump_key(&self, key: &[u8]) {
        self.stripes[stripe(key)].fetch_add(1, Ordering::SeqCst);
    }

    /// Before a tag invalidation or clear reaches L1.
    pub(crate) fn bump_all(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_during_a_read_is_noticed() {
        let e = Epochs::default();
        let seen = e.seen(b"k");
        assert!(e.unchanged(b"k", seen));
        e.bump_key(b"k");
        assert!(!e.unchanged(b"k", seen));
        let seen = e.seen(b"k");
        e.bump_all();
        assert!(!e.unchanged(b"k", seen));
    }
}
