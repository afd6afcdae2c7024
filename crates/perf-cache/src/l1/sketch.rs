//! A count-min sketch of 4-bit counters with periodic halving: TinyLFU's frequency estimate.

/// Counters per row for each entry the sketch is sized for. Caffeine's sketch has one 64-bit
/// word per entry, four counters per row in these units; one was too few (collisions make a key
/// seen once look like one seen two or three times, and such a candidate beats a victim seen
/// once and evicts it), and four did worse than two on the LIRS loop @ 512 (48.0–49.3 % hits
/// over hash seeds 1–8). Two, together with [`FrequencySketch::grow`], took that loop from
/// 47.9–49.7 to 49.96–50.04, Zipf 0.8 @ 1000 from 31.5 to 31.75 and ARC's OLTP @ 512 from 33.5
/// to 33.9.
pub(crate) const COUNTERS_PER_ENTRY: usize = 2;

/// The largest width (counters per row): 2^26, a 128 MiB table, enough for 2^25 entries in one
/// shard.
const MAX_WIDTH: usize = 1 << 26;

/// Eight words of sixteen 4-bit counters, aligned to a cache line: a key's four counters all sit
/// in one block, so counting a key touches one line. (A `Vec<u64>` is only 8-byte aligned, and
/// most of its 64-byte blocks straddled two lines: 1.6 first-level misses per get instead of
/// about 0.8, measured with cachegrind on the `cache_throughput` workload.)
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

/// Four 4-bit counters per key, all in one 64-byte block (one cache line), so counting a key
/// costs one memory access rather than four (Caffeine's block layout).
///
/// A sketch sized for `entries` keys has [`COUNTERS_PER_ENTRY`] × `entries` counters per row
/// (rounded up to a power of two). After `10 × entries` increments every counter is halved, so
/// the estimate follows recent popularity (TinyLFU's "reset"). Memory: half a byte per
/// counter, four rows: `2 × width` bytes, 4–8 bytes per entry.
#[derive(Debug)]
pub(crate) struct FrequencySketch {
    table: Vec<Block>,
    /// Counters per row, a power of two ≥ 32.
    width: usize,
    block_mask: usize,
    additions: u64,
    sample_size: u64,
}

impl FrequencySketch {
    /// A sketch sized for `entries` keys.
    pub(crate) fn new(entries: usize) -> Self {
        let width = entries
            .saturating_mul(COUNTERS_PER_ENTRY)
            .clamp(32, MAX_WIDTH)
            .next_power_of_two();
        // width × 4 counters, 16 per word, 8 words per block: width / 32 blocks (≥ 1).
        let blocks = width / 32;
        Self {
            table: vec![Block::default(); blocks],
            width,
            block_mask: blocks - 1,
            additions: 0,
            sample_size: 10 * (width / COUNTERS_PER_ENTRY) as u64,
        }
    }

    /// How many keys this sketch is sized for.
    pub(crate) fn entries(&self) -> usize {
        self.width / COUNTERS_PER_ENTRY
    }

    /// Doubles the sketch, every estimate kept; at its largest size it stays as it is. A key's
    /// block index is its hash masked by the block count, and its counters sit at offsets
    /// within the block that do not depend on that count; doubling the blocks adds one bit to
    /// the mask, so the key's block in the new table is its old block or the one `old blocks`
    /// further on, and a table made of two copies of the old one gives every key exactly its
    /// old counters. (A fresh table would forget every count at the moment a shard first fills,
    /// which is when admission starts to depend on them: on the LIRS loop @ 512 it let a few
    /// hundred one-time newcomers evict the keys the loop comes back to.)
    pub(crate) fn grow(&mut self) {
        if self.width >= MAX_WIDTH {
            return;
        }
        self.table.extend_from_within(..);
        self.width *= 2;
        self.block_mask = self.table.len() - 1;
        self.additions *= 2;
        self.sample_size *= 2;
    }

    /// The index of `hash`'s block and the hash that picks its counters in it.
    #[inline]
    fn locate(&self, hash: u64) -> (usize, u64) {
        let block_hash = (hash ^ (hash >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let block = (block_hash >> 32) as usize & self.block_mask;
        let counter_hash = block_hash.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ (block_hash >> 31);
        (block, counter_hash)
    }

    /// Row `row`'s counter of a key whose counters `counter_hash` picks: the word within the
    /// key's block (two words per row) and the counter's bit shift in it.
    #[inline]
    fn counter(counter_hash: u64, row: usize) -> (usize, u32) {
        let h = (counter_hash >> (row << 3)) as usize;
        ((row << 1) + (h & 1), (((h >> 1) & 15) << 2) as u32)
    }

    /// The word (counting from the table's start) and bit shift of `hash`'s counter in each
    /// row.
    #[cfg(test)]
    fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        let (block, counter_hash) = self.locate(hash);
        std::array::from_fn(|row| {
            let (word, shift) = Self::counter(counter_hash, row);
            (block * 8 + word, shift)
        })
    }

    /// The estimated frequency of `hash`, 0..=15.
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let (block, counter_hash) = self.locate(hash);
        let Some(Block(words)) = self.table.get(block) else {
            return 0;
        };
        let mut min = 15;
        for row in 0..4 {
            let (word, shift) = Self::counter(counter_hash, row);
            min = min.min((words[word & 7] >> shift) & 0xF);
        }
        min as u8
    }

    /// Counts one occurrence of `hash`: each of its four counters that is below 15 gains one.
    /// Branch-free over the counters, since this runs on every get.
    #[inline]
    pub(crate) fn increment(&mut self, hash: u64) {
        let (block, counter_hash) = self.locate(hash);
        let Some(Block(words)) = self.table.get_mut(block) else {
            return;
        };
        let mut added = 0;
        for row in 0..4 {
            let (word, shift) = Self::counter(counter_hash, row);
            let w = &mut words[word & 7];
            let below_max = u64::from((*w >> shift) & 0xF != 15);
            *w += below_max << shift;
            added |= below_max;
        }
        if added != 0 {
            self.additions += 1;
            if self.additions >= self.sample_size {
                self.reset();
            }
        }
    }

    /// Halves every counter (once per `10 × entries` increments: kept out of line).
    #[cold]
    fn reset(&mut self) {
        for word in self.table.iter_mut().flat_map(|Block(words)| words) {
            *word = (*word >> 1) & 0x7777_7777_7777_7777;
        }
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_saturates() {
        let mut s = FrequencySketch::new(64);
        for _ in 0..20 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), 15);
        assert!(s.frequency(7) <= 1);
    }

    #[test]
    fn growing_keeps_every_estimate() {
        let mut s = FrequencySketch::new(64);
        for key in 0..200u64 {
            let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for _ in 0..key % 7 {
                s.increment(hash);
            }
        }
        let before: Vec<u8> = (0..400u64)
            .map(|k| s.frequency(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        assert!(before.iter().any(|&f| f >= 5));
        let entries = s.entries();
        s.grow();
        assert_eq!(s.entries(), 2 * entries);
        let after: Vec<u8> = (0..400u64)
            .map(|k| s.frequency(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        assert_eq!(before, after);
        assert_eq!(s.block_mask, s.table.len() - 1);
        // The new bit is used: keys that shared a block before now count apart. Counting the
        // keys of the lower half again leaves every key of the upper half where it was.
        let block = |s: &FrequencySketch, hash: u64| s.slots(hash)[0].0 / 8;
        let half = s.table.len() / 2;
        let hashes: Vec<u64> = (0..400u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let lower: Vec<u64> = hashes
            .iter()
            .copied()
            .filter(|&h| block(&s, h) < half)
            .collect();
        // Stay short of the next halving, which would move every counter.
        let room = (s.sample_size - s.additions).saturating_sub(1) as usize;
        assert!(room >= 20 && !lower.is_empty());
        for h in lower.into_iter().take(room) {
            s.increment(h);
        }
        let upper: Vec<(u8, u8)> = hashes
            .iter()
            .zip(&after)
            .filter(|&(&h, _)| block(&s, h) >= half)
            .map(|(&h, &old)| (s.frequency(h), old))
            .collect();
        assert!(upper.len() > 100, "{} keys in the upper half", upper.len());
        assert!(upper.iter().all(|&(now, old)| now == old));
    }

    #[test]
    fn growing_keeps_the_reset_period_per_entry() {
        let mut s = FrequencySketch::new(32);
        for key in 0..8 {
            s.increment(key);
        }
        let (sample_size, additions) = (s.sample_size, s.additions);
        assert_eq!(sample_size, 10 * 32);
        s.grow();
        // Twice the entries: twice the increments before the halving, and the ones already
        // counted are as far along that period as before.
        assert_eq!(s.sample_size, 2 * sample_size);
        assert_eq!(s.additions, 2 * additions);
    }

    #[test]
    fn blocks_are_cache_lines_before_and_after_growing() {
        let mut s = FrequencySketch::new(1000);
        for _ in 0..2 {
            assert_eq!(std::mem::align_of::<Block>(), 64);
            assert_eq!(
                s.table.as_ptr() as usize % 64,
                0,
                "a block straddles two lines"
            );
            s.grow();
        }
    }

    #[test]
    fn halves_after_sample() {
        let mut s = FrequencySketch::new(32);
        for _ in 0..8 {
            s.increment(1);
        }
        assert_eq!(s.frequency(1), 8);
        for i in 0..400u64 {
            s.increment(1_000 + i);
        }
        assert!(s.frequency(1) < 8);
    }
}
