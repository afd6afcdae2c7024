//! The hasher L1's index, shards and frequency sketch share: foldhash, randomly seeded by
//! default, or fixed by [`CacheBuilder::hash_seed`](super::CacheBuilder::hash_seed) for
//! reproducible runs.

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;

/// Builds the per-key hashers of one cache: one foldhash type for both modes, so the hot path
/// has no branch on the mode.
pub(crate) type Hasher = SeedableRandomState;

/// A hasher seeded at random per cache: an attacker who picks keys cannot predict which ones
/// collide (hash flooding).
pub(crate) fn random() -> Hasher {
    SeedableRandomState::random()
}

/// A hasher keyed by a fixed seed: the same keys hash alike in every run and process, so the
/// policy's decisions, and thus its hit ratio, are reproducible.
pub(crate) fn seeded(seed: u64) -> Hasher {
    SeedableRandomState::with_seed(seed, SharedSeed::global_fixed())
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn seeded_hashers_agree_and_seeds_differ() {
        let a = seeded(7).hash_one("key");
        assert_eq!(a, seeded(7).hash_one("key"));
        assert_ne!(a, seeded(8).hash_one("key"));
        let random = random();
        assert_eq!(random.hash_one(42_u64), random.hash_one(42_u64));
        assert_ne!(random.hash_one(42_u64), super::random().hash_one(42_u64));
    }
}
