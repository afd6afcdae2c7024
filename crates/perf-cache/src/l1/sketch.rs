//! A count-min sketch of 4-bit counters with periodic halving: TinyLFU's frequency estimate.

/// Four 4-bit counters per key, all in one 64-byte block (one cache line), so counting a key
/// costs one memory access rather than four (Caffeine's block layout).
///
/// After `10 × width` increments every counter is halved, so the estimate follows recent
/// popularity (TinyLFU's "reset"). Memory: half a byte per counter, `width` counters per row,
/// four rows: `2 × width` bytes.
#[derive(Debug)]
pub(crate) struct FrequencySketch {
    table: Vec<u64>,
    /// Counters per row, a power of two ≥ 32.
    width: usize,
    block_mask: usize,
    additions: u64,
    sample_size: u64,
}

impl FrequencySketch {
    pub(crate) fn new(capacity: usize) -> Self {
        let width = capacity.clamp(32, 1 << 26).next_power_of_two();
        // width × 4 counters, 16 per word, 8 words per block.
        let words = width * 4 / 16;
        Self {
            table: vec![0; words],
            width,
            block_mask: words / 8 - 1,
            additions: 0,
            sample_size: 10 * width as u64,
        }
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// The word and bit shift of `hash`'s counter in each row.
    #[inline]
    fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        let block_hash = (hash ^ (hash >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let block = ((block_hash >> 32) as usize & self.block_mask) << 3;
        let counter_hash = block_hash.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ (block_hash >> 31);
        let mut out = [(0, 0); 4];
        for (row, slot) in out.iter_mut().enumerate() {
            let h = (counter_hash >> (row << 3)) as usize;
            let word = block + (row << 1) + (h & 1);
            let index = (h >> 1) & 15;
            *slot = (word, (index << 2) as u32);
        }
        out
    }

    /// The estimated frequency of `hash`, 0..=15.
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        self.slots(hash)
            .iter()
            .map(|&(word, shift)| (self.table[word] >> shift) & 0xF)
            .min()
            .unwrap_or(0) as u8
    }

    /// Counts one occurrence of `hash`.
    #[inline]
    pub(crate) fn increment(&mut self, hash: u64) {
        let mut added = false;
        for (word, shift) in self.slots(hash) {
            let w = &mut self.table[word];
            if (*w >> shift) & 0xF < 15 {
                *w += 1 << shift;
                added = true;
            }
        }
        if added {
            self.additions += 1;
            if self.additions >= self.sample_size {
                self.reset();
            }
        }
    }

    /// Halves every counter.
    fn reset(&mut self) {
        for word in &mut self.table {
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
