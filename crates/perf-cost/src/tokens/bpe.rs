//! Byte-pair merging that counts tokens without building a token vector.
//!
//! The merge rule is tiktoken's: repeatedly merge the adjacent pair whose concatenation has the
//! lowest rank (the leftmost one on a tie) until no adjacent pair is a token; the number of parts
//! left is the token count. Short pieces use tiktoken's small-vector scan on a stack buffer (no
//! heap allocation); long pieces use a binary heap over a linked list of parts, so a piece of `n`
//! bytes costs `O(n log n)` whatever its content (1 MiB of one repeated character included).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// Pieces shorter than this use the stack-buffer scan.
const SMALL: usize = 128;

/// The mergeable ranks of one encoding.
#[derive(Debug)]
pub(crate) struct RankTable {
    ranks: FxHashMap<Box<[u8]>, u32>,
    max_token_len: usize,
}

impl RankTable {
    /// Builds the table from `(bytes, rank)` pairs.
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, u32)>) -> Self {
        let mut ranks = FxHashMap::default();
        let mut max_token_len = 1;
        for (bytes, rank) in pairs {
            max_token_len = max_token_len.max(bytes.len());
            ranks.insert(bytes.into_boxed_slice(), rank);
        }
        Self {
            ranks,
            max_token_len,
        }
    }

    /// Number of mergeable tokens.
    pub(crate) fn len(&self) -> usize {
        self.ranks.len()
    }

    /// Length in bytes of the longest token; a piece of `n` bytes has at least
    /// `ceil(n / max_token_len)` tokens.
    pub(crate) fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    #[inline]
    fn rank(&self, bytes: &[u8]) -> u32 {
        // No token is longer than the longest one: skip hashing impossible candidates (merges of
        // long runs would otherwise hash slices of up to twice the longest token).
        if bytes.len() > self.max_token_len {
            return u32::MAX;
        }
        self.ranks.get(bytes).copied().unwrap_or(u32::MAX)
    }

    /// Number of tokens tiktoken produces for one pre-tokenization piece.
    pub(crate) fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 {
            return piece.len();
        }
        if self.ranks.contains_key(piece) {
            return 1;
        }
        if piece.len() < SMALL {
            self.count_small(piece)
        } else {
            self.count_large(piece)
        }
    }

    /// tiktoken's `_byte_pair_merge`, on a stack buffer, returning only the count.
    fn count_small(&self, piece: &[u8]) -> usize {
        let mut parts = [(0usize, u32::MAX); SMALL + 1];
        self.small_parts(piece, &mut parts) - 1
    }

    /// Runs the small merge; `parts[..len]` hold the token starts (and the end) afterwards.
    fn small_parts(&self, piece: &[u8], parts: &mut [(usize, u32)]) -> usize {
        let n = piece.len();
        let mut len = n + 1;
        for (i, part) in parts.iter_mut().enumerate().take(n - 1) {
            *part = (i, self.rank(&piece[i..i + 2]));
        }
        parts[n - 1] = (n - 1, u32::MAX);
        parts[n] = (n, u32::MAX);

        let rank_at = |parts: &[(usize, u32)], len: usize, i: usize| -> u32 {
            if i + 3 < len {
                self.rank(&piece[parts[i].0..parts[i + 3].0])
            } else {
                u32::MAX
            }
        };

        loop {
            let mut min = (u32::MAX, usize::MAX);
            for (i, &(_, rank)) in parts[..len - 1].iter().enumerate() {
                if rank < min.0 {
                    min = (rank, i);
                }
            }
            if min.0 == u32::MAX {
                break;
            }
            let i = min.1;
            if i > 0 {
                parts[i - 1].1 = rank_at(parts, len, i - 1);
            }
            parts[i].1 = rank_at(parts, len, i);
            parts.copy_within(i + 2..len, i + 1);
            len -= 1;
        }
        len
    }

    /// Byte offsets where the tokens of `piece` end, in order (the last is `piece.len()`).
    pub(crate) fn token_ends(&self, piece: &[u8]) -> Vec<usize> {
        let n = piece.len();
        if n <= 1 || self.ranks.contains_key(piece) {
            return vec![n];
        }
        if n < SMALL {
            let mut parts = [(0usize, u32::MAX); SMALL + 1];
            let len = self.small_parts(piece, &mut parts);
            return parts[1..len].iter().map(|p| p.0).collect();
        }
        let (state, _) = self.large_state(piece);
        let mut ends = Vec::new();
        let mut i = 0;
        while i < n {
            i = state[i].end;
            ends.push(i);
        }
        ends
    }

    /// tiktoken's `_byte_pair_merge_large`, returning only the count.
    fn count_large(&self, piece: &[u8]) -> usize {
        self.large_state(piece).1
    }

    /// Runs the heap merge; returns the part chain (`state[start].end`) and the part count.
    fn large_state(&self, piece: &[u8]) -> (Vec<Part>, usize) {
        let n = piece.len();
        // For each part start: end of the part, end of the part after it, and the rank of
        // merging the two (u32::MAX when they do not merge or the entry is stale).
        let mut state: Vec<Part> = (0..n)
            .map(|i| Part {
                prev: i.wrapping_sub(1),
                end: i + 1,
                next_end: i + 2,
                next_rank: u32::MAX,
            })
            .collect();
        let mut heap = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            let rank = self.rank(&piece[i..i + 2]);
            if rank != u32::MAX {
                state[i].next_rank = rank;
                heap.push(Merge { start: i, rank });
            }
        }
        let mut parts = n;
        while let Some(left) = heap.pop() {
            if left.rank != state[left.start].next_rank {
                continue; // stale
            }
            let left_start = left.start;
            let right_start = state[left_start].end;
            let right_end = state[left_start].next_end;
            let right_next_end = state[right_start].next_end;

            state[left_start].end = right_end;
            self.potential_merge(piece, &mut state, &mut heap, left_start, right_next_end);
            if right_end < n {
                state[right_end].prev = left_start;
            }
            if left_start > 0 {
                let prev_start = state[left_start].prev;
                self.potential_merge(piece, &mut state, &mut heap, prev_start, right_end);
            }
            state[right_start].next_rank = u32::MAX;
            parts -= 1;
        }
        (state, parts)
    }

    #[inline]
    fn potential_merge(
        &self,
        piece: &[u8],
        state: &mut [Part],
        heap: &mut BinaryHeap<Merge>,
        start: usize,
        next_end: usize,
    ) {
        state[start].next_end = next_end;
        state[start].next_rank = u32::MAX;
        if next_end <= piece.len() {
            let rank = self.rank(&piece[start..next_end]);
            if rank != u32::MAX {
                state[start].next_rank = rank;
                heap.push(Merge { start, rank });
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Part {
    prev: usize,
    end: usize,
    next_end: usize,
    next_rank: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Merge {
    start: usize,
    rank: u32,
}

impl Ord for Merge {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: the lowest rank, then the leftmost start, comes out first.
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.start.cmp(&self.start))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RankTable {
        // A toy vocabulary: bytes, then "ab" (rank 300), "abab" (301), "aa" (302).
        let mut pairs: Vec<(Vec<u8>, u32)> = (0u8..=255).map(|b| (vec![b], u32::from(b))).collect();
        pairs.push((b"ab".to_vec(), 300));
        pairs.push((b"abab".to_vec(), 301));
        pairs.push((b"aa".to_vec(), 302));
        RankTable::from_pairs(pairs)
    }

    #[test]
    fn small_and_large_agree() {
        let t = table();
        for n in [2usize, 3, 7, 64, 127, 128, 129, 1000] {
            let s: Vec<u8> = b"ab".iter().copied().cycle().take(n).collect();
            let small = if n < SMALL {
                t.count_small(&s)
            } else {
                usize::MAX
            };
            let large = t.count_large(&s);
            if n < SMALL {
                assert_eq!(small, large, "n={n}");
            }
            // "abab" tokens, then at most one "ab" and one "a".
            let expected = n / 4 + (n % 4) / 2 + (n % 2);
            assert_eq!(large, expected, "n={n}");
        }
        let aaa: Vec<u8> = vec![b'a'; 101];
        assert_eq!(t.count_large(&aaa), 51);
        assert_eq!(t.count_small(&aaa), 51);
    }
}
