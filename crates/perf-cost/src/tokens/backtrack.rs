//! Near-linear exact byte-pair encoding of long pieces: backtracking over compatible token pairs.
//!
//! tiktoken's merge loop costs `O(n log n)` with a heap (`O(n²)` without); on a piece that
//! pre-tokenization cannot split, such as 1 MiB of one character, that is hundreds of
//! milliseconds. This module computes the same tokens with the method of GitHub's `bpe` crate
//! (rust-gems, "backtracking encoder"), written anew for perf-cost's rank table:
//!
//! - Every token `t` that merging can produce has a *split*: the pair `(l, r)` whose merge BPE
//!   performs last when it encodes `t`'s own bytes. Tokens are processed in rank order; the split
//!   of `t` is its longest token prefix `l` whose rest `r` is a token, both of lower rank, that is
//!   a compatible pair (below). Tokens with no such pair are atomic (the single bytes).
//! - Two adjacent tokens `a b` are *compatible* when BPE on the bytes of `a b` yields `a b`, i.e.
//!   no merge across their boundary happens before `a` and `b` are complete. That is checked by
//!   undoing the later of the two tokens' last merges, step by step, and looking up whether the
//!   parts now facing each other across the boundary form a token of lower rank than the merge
//!   that would have absorbed them (on a tie the leftmost pair merges first).
//! - BPE's result is the unique tokenization in which every adjacent pair is compatible. The
//!   encoder walks left to right taking the longest token at each position, steps down to
//!   shorter token prefixes when the pair with the previous token is not compatible, and
//!   backtracks (popping the previous token) when none is; a bit per position remembers
//!   positions from which no valid continuation exists, so no position is explored twice.
//!
//! The result is checked against the exact heap merge on random long pieces (unit tests in
//! `bpe.rs`) and against OpenAI's Python tiktoken through the golden counts.

use rustc_hash::FxHashMap;

/// "No token" in the tables below.
const NONE: u32 = u32::MAX;

#[inline]
fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

#[inline]
fn edge_key(node: u32, byte: u8) -> u64 {
    (u64::from(node) << 8) | u64::from(byte)
}

/// Tables for backtracking encoding of one encoding's ranks; built once, on the first long piece.
#[derive(Debug)]
pub(crate) struct Backtracker {
    /// Byte length of each token, by rank (0 where no token has that rank).
    len: Vec<u32>,
    /// The longest token that is a proper prefix of each token, by rank, or `NONE`.
    shorter: Vec<u32>,
    /// The pair whose merge produces each token, by rank, or `(NONE, NONE)` for atomic tokens.
    split: Vec<(u32, u32)>,
    /// `(left, right)` → the token whose split it is.
    merged: FxHashMap<u64, u32>,
    /// Children of the byte trie of all tokens below the root: `(node << 8 | byte)` → node.
    children: FxHashMap<u64, u32>,
    /// Children of the root, by byte (every walk starts there).
    root: [u32; 256],
    /// Nodes of depth 2, by their two bytes (`b0 << 8 | b1`): most walks end within two bytes
    /// of the start, so this spares most hash lookups.
    second: Vec<u32>,
    /// The token whose bytes end at each trie node, or `NONE`.
    token_at: Vec<u32>,
}

impl Backtracker {
    /// Builds the tables from `(token bytes, rank)` pairs.
    pub(crate) fn build<'a>(tokens: impl Iterator<Item = (&'a [u8], u32)>) -> Self {
        let mut by_rank: Vec<(u32, &[u8])> = tokens
            .filter(|(bytes, rank)| !bytes.is_empty() && *rank != NONE)
            .map(|(bytes, rank)| (rank, bytes))
            .collect();
        by_rank.sort_unstable_by_key(|&(rank, _)| rank);
        let size = by_rank.last().map_or(0, |&(rank, _)| rank as usize + 1);
        let mut this = Self {
            len: vec![0; size],
            shorter: vec![NONE; size],
            split: vec![(NONE, NONE); size],
            merged: FxHashMap::default(),
            children: FxHashMap::default(),
            root: [NONE; 256],
            second: vec![NONE; 1 << 16],
            token_at: vec![NONE],
        };
        for &(rank, bytes) in &by_rank {
            this.len[rank as usize] = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            let mut node = 0u32;
            for &b in bytes {
                node = match this.child(node, b) {
                    Some(next) => next,
                    None => this.add_child(node, b),
                };
            }
            this.token_at[node as usize] = rank;
        }
        for b0 in 0..=255u8 {
            let Some(first) = this.child(0, b0) else {
                continue;
            };
            for b1 in 0..=255u8 {
                if let Some(node) = this.child(first, b1) {
                    this.second[usize::from(b0) << 8 | usize::from(b1)] = node;
                }
            }
        }
        for &(rank, bytes) in &by_rank {
            this.shorter[rank as usize] = this.longest_prefix(&bytes[..bytes.len() - 1]);
        }
        // Splits in rank order: a token's split only involves lower ranks, whose splits are final.
        for &(rank, bytes) in &by_rank {
            let mut left = this.shorter[rank as usize];
            while left != NONE {
                let rest = &bytes[this.len[left as usize] as usize..];
                let right = this.exact(rest);
                if right != NONE && left < rank && right < rank && this.compatible(left, right) {
                    this.split[rank as usize] = (left, right);
                    this.merged.insert(pair_key(left, right), rank);
                    break;
                }
                left = this.shorter[left as usize];
            }
        }
        this
    }

    #[inline]
    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        let next = if node == 0 {
            self.root[usize::from(byte)]
        } else {
            self.children
                .get(&edge_key(node, byte))
                .copied()
                .unwrap_or(NONE)
        };
        (next != NONE).then_some(next)
    }

    fn add_child(&mut self, node: u32, byte: u8) -> u32 {
        let next = u32::try_from(self.token_at.len()).unwrap_or(NONE);
        self.token_at.push(NONE);
        if node == 0 {
            self.root[usize::from(byte)] = next;
        } else {
            self.children.insert(edge_key(node, byte), next);
        }
        next
    }

    /// The longest token that is a prefix of `text`, or `NONE`.
    #[inline]
    fn longest_prefix(&self, text: &[u8]) -> u32 {
        let Some(&b0) = text.first() else {
            return NONE;
        };
        let first = self.root[usize::from(b0)];
        if first == NONE {
            return NONE;
        }
        let mut best = self.token_at[first as usize];
        let Some(&b1) = text.get(1) else {
            return best;
        };
        let mut node = self.second[usize::from(b0) << 8 | usize::from(b1)];
        if node == NONE {
            return best;
        }
        for &b in &text[2..] {
            let token = self.token_at[node as usize];
            if token != NONE {
                best = token;
            }
            match self.children.get(&edge_key(node, b)) {
                Some(&next) => node = next,
                None => return best,
            }
        }
        let token = self.token_at[node as usize];
        if token != NONE {
            best = token;
        }
        best
    }

    /// The token whose bytes are exactly `bytes`, or `NONE`.
    fn exact(&self, bytes: &[u8]) -> u32 {
        let mut node = 0u32;
        for &b in bytes {
            match self.child(node, b) {
                Some(next) => node = next,
                None => return NONE,
            }
        }
        if node == 0 {
            NONE
        } else {
            self.token_at[node as usize]
        }
    }

    /// Whether BPE on the bytes of `left right` yields exactly `left right`.
    fn compatible(&self, mut left: u32, mut right: u32) -> bool {
        // A token formed across the boundary with a rank below `bound` would have been merged
        // before the part it takes was absorbed into `left` or `right`.
        let mut bound = NONE;
        loop {
            if let Some(&joined) = self.merged.get(&pair_key(left, right)) {
                if joined < bound {
                    return false;
                }
            }
            let (_, left_right) = self.split[left as usize];
            let (right_left, _) = self.split[right as usize];
            let undo_left = match (left_right != NONE, right_left != NONE) {
                (false, false) => return true,
                (true, false) => true,
                (false, true) => false,
                (true, true) => left > right,
            };
            if undo_left {
                // The right part of `left` met `right` until merge `left` absorbed it; an equal
                // rank across the boundary loses to `left`'s merge, which is further left.
                bound = left;
                left = left_right;
            } else {
                // `left` met the left part of `right` until merge `right`; an equal rank across
                // the boundary is further left, so it would win.
                bound = right.saturating_add(1);
                right = right_left;
            }
        }
    }

    /// Appends the tokens of `piece` to `out` (cleared first). `false` if the tables cannot
    /// encode it (a byte that is no token), in which case the caller falls back to merging.
    pub(crate) fn encode(&self, piece: &[u8], out: &mut Vec<u32>) -> bool {
        out.clear();
        let n = piece.len();
        // Positions from which the rest of the piece cannot be encoded after the current prefix.
        let mut dead = vec![0u64; n / 64 + 1];
        let mut pos = 0usize;
        let mut next = self.longest_prefix(piece);
        while next != NONE {
            let mut token = next;
            let last = out.last().copied();
            loop {
                let end = pos + self.len[token as usize] as usize;
                let end_dead = dead[end / 64] & (1 << (end % 64)) != 0;
                if !end_dead && last.is_none_or(|l| self.compatible(l, token)) {
                    out.push(token);
                    pos = end;
                    next = self.longest_prefix(&piece[end..]);
                    break;
                }
                let shorter = self.shorter[token as usize];
                if shorter != NONE {
                    token = shorter;
                    continue;
                }
                // No token fits here after `last`: this position is a dead end; retry `last`
                // (its next shorter prefix) from where it started.
                dead[pos / 64] |= 1 << (pos % 64);
                match out.pop() {
                    Some(l) => {
                        pos -= self.len[l as usize] as usize;
                        next = l;
                    }
                    None => next = NONE,
                }
                break;
            }
        }
        pos == n
    }

    /// Byte length of token `rank`.
    #[inline]
    pub(crate) fn token_len(&self, rank: u32) -> usize {
        self.len.get(rank as usize).map_or(0, |&l| l as usize)
    }
}
