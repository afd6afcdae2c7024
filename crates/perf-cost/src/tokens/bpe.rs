//! Byte-pair merging that counts tokens without building a token vector.
//!
//! The merge rule is tiktoken's: repeatedly merge the adjacent pair whose concatenation has the
//! lowest rank (the leftmost one on a tie) until no adjacent pair is a token; the number of parts
//! left is the token count. Short pieces use tiktoken's small-vector scan on a stack buffer (no
//! heap allocation). Long pieces use the backtracking encoder of `backtrack.rs`, which finds the
//! same tokens in near-linear time whatever the content (1 MiB of one repeated character
//! included); the heap merge over a linked list of parts (`O(n log n)`, tiktoken's
//! `_byte_pair_merge_large`) stays as the reference it is tested against and as the fallback.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use super::backtrack::Backtracker;

/// Pieces shorter than this use the stack-buffer scan.
const SMALL: usize = 128;

/// The mergeable ranks of one encoding.
#[derive(Debug)]
pub(crate) struct RankTable {
    ranks: FxHashMap<Box<[u8]>, u32>,
    max_token_len: usize,
    /// Tables for long pieces, built on the first one (about 0.1 s in a release build).
    backtracker: OnceLock<Backtracker>,
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
            backtracker: OnceLock::new(),
        }
    }

    fn backtracker(&self) -> &Backtracker {
        self.backtracker
            .get_or_init(|| Backtracker::build(self.ranks.iter().map(|(b, &r)| (&b[..], r))))
    }

    /// The tokens of a long piece by backtracking, or `None` if the tables cannot encode it.
    fn backtrack(&self, piece: &[u8]) -> Option<Vec<u32>> {
        let mut tokens = Vec::with_capacity(piece.len() / 4 + 1);
        self.backtracker()
            .encode(piece, &mut tokens)
            .then_some(tokens)
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
            match self.backtrack(piece) {
                Some(tokens) => tokens.len(),
                None => self.count_large(piece),
            }
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
        if let Some(tokens) = self.backtrack(piece) {
            let bt = self.backtracker();
            let mut end = 0;
            return tokens
                .iter()
                .map(|&t| {
                    end += bt.token_len(t);
                    end
                })
                .collect();
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
    use crate::tokens::Encoding;

    fn table() -> RankTable {
        // A toy vocabulary: bytes, then "ab" (rank 300), "abab" (301), "aa" (302).
        let mut pairs: Vec<(Vec<u8>, u32)> = (0u8..=255).map(|b| (vec![b], u32::from(b))).collect();
        pairs.push((b"ab".to_vec(), 300));
        pairs.push((b"abab".to_vec(), 301));
        pairs.push((b"aa".to_vec(), 302));
        RankTable::from_pairs(pairs)
    }

    /// Token ends by the reference heap merge (tiktoken's `_byte_pair_merge_large`).
    fn heap_ends(t: &RankTable, piece: &[u8]) -> Vec<usize> {
        let (state, _) = t.large_state(piece);
        let mut ends = Vec::new();
        let mut i = 0;
        while i < piece.len() {
            i = state[i].end;
            ends.push(i);
        }
        ends
    }

    /// Token ends by backtracking.
    fn backtrack_ends(t: &RankTable, piece: &[u8]) -> Vec<usize> {
        let tokens = t.backtrack(piece).expect("every byte is a token");
        let mut end = 0;
        tokens
            .iter()
            .map(|&r| {
                end += t.backtracker().token_len(r);
                end
            })
            .collect()
    }

    #[test]
    fn small_and_large_agree() {
        let t = table();
        for n in [2usize, 3, 7, 64, 127, 128, 129, 1000] {
            let s: Vec<u8> = b"ab".iter().copied().cycle().take(n).collect();
            let large = t.count_large(&s);
            if n < SMALL {
                assert_eq!(t.count_small(&s), large, "n={n}");
            }
            assert_eq!(t.count_piece(&s), large, "n={n}");
            assert_eq!(backtrack_ends(&t, &s), heap_ends(&t, &s), "n={n}");
            // "abab" tokens, then at most one "ab" and one "a".
            let expected = n / 4 + (n % 4) / 2 + (n % 2);
            assert_eq!(large, expected, "n={n}");
        }
        let aaa: Vec<u8> = vec![b'a'; 101];
        assert_eq!(t.count_large(&aaa), 51);
        assert_eq!(t.count_small(&aaa), 51);
        assert_eq!(t.backtrack(&aaa).map(|v| v.len()), Some(51));
    }

    use perf_testkit::XorShift as Rng;

    /// A random piece of `len` bytes from one of the shapes pre-tokenization cannot split (or that
    /// stress merges): one repeated character, a repeated short pattern, random text over a small
    /// or full alphabet, digits, whitespace, CJK, accented Latin, arbitrary bytes.
    fn random_piece(rng: &mut Rng, len: usize) -> Vec<u8> {
        const CHARS: &[&str] = &[
            "a", "b", "e", "z", "A", " ", "\n", "\t", "0", "7", "!", "=", "-", "中", "の", "é",
            "😀", "\u{3000}", "한",
        ];
        let mut out = Vec::with_capacity(len + 8);
        match rng.index(8) {
            0 => {
                let c = rng.pick(CHARS).as_bytes();
                while out.len() < len {
                    out.extend_from_slice(c);
                }
            }
            1 => {
                let k = 2 + rng.index(3);
                let pattern: Vec<u8> = (0..k)
                    .flat_map(|_| rng.pick(CHARS).as_bytes().to_vec())
                    .collect();
                while out.len() < len {
                    out.extend_from_slice(&pattern);
                }
            }
            2 => {
                let alphabet = 2 + rng.index(25);
                while out.len() < len {
                    out.push(b'a' + rng.index(alphabet) as u8);
                }
            }
            3 => {
                while out.len() < len {
                    out.push(b'0' + rng.index(10) as u8);
                }
            }
            4 => {
                while out.len() < len {
                    out.push(*rng.pick(b" \t\n\r "));
                }
            }
            5 => {
                let cjk = [
                    "中", "文", "字", "の", "日", "本", "語", "한", "국", "人", "大",
                ];
                while out.len() < len {
                    out.extend_from_slice(rng.pick(&cjk).as_bytes());
                }
            }
            6 => {
                let latin = ["é", "è", "a", "n", "ñ", "o", "ö", "s", "ß", "e", "r"];
                while out.len() < len {
                    out.extend_from_slice(rng.pick(&latin).as_bytes());
                }
            }
            _ => {
                while out.len() < len {
                    out.push(rng.next_u64() as u8);
                }
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn backtracking_equals_the_heap_merge_on_random_pieces_of_the_real_encodings() {
        for (encoding, seed) in [(Encoding::O200kBase, 1u64), (Encoding::Cl100kBase, 2)] {
            let t = encoding.encoder().unwrap().ranks();
            let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ seed);
            let mut checked = 0;
            for i in 0..1500 {
                // Mostly long pieces; a share of short ones compares with the stack-buffer scan.
                let len = if i % 3 == 0 {
                    2 + rng.index(SMALL - 2)
                } else {
                    SMALL + rng.index(3000)
                };
                let piece = random_piece(&mut rng, len);
                let expected = heap_ends(t, &piece);
                assert_eq!(
                    backtrack_ends(t, &piece),
                    expected,
                    "{encoding}: piece {i} {:?}",
                    String::from_utf8_lossy(&piece)
                );
                if len < SMALL {
                    assert_eq!(
                        t.count_small(&piece),
                        expected.len(),
                        "{encoding}: piece {i}"
                    );
                }
                assert_eq!(
                    t.count_piece(&piece),
                    expected.len(),
                    "{encoding}: piece {i}"
                );
                checked += 1;
            }
            // A few long ones, where backtracking has the most room to go wrong.
            for i in 0..8 {
                let len = 40_000 + rng.index(30_000);
                let piece = random_piece(&mut rng, len);
                assert_eq!(
                    backtrack_ends(t, &piece),
                    heap_ends(t, &piece),
                    "{encoding}: long piece {i}"
                );
                checked += 1;
            }
            assert_eq!(checked, 1508);
        }
    }
}
