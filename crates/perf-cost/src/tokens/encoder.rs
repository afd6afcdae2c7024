//! The shared encoders: one rank table and one split pattern per encoding, built once per process.

use std::sync::OnceLock;

use super::bpe::RankTable;
use super::pretokenize::{Pattern, Pretokenizer};
use crate::error::CostError;

/// A tiktoken encoding perf-cost can count exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Encoding {
    /// `cl100k_base`: gpt-4, gpt-3.5-turbo, text-embedding-3-*, text-embedding-ada-002.
    Cl100kBase,
    /// `o200k_base`: gpt-5*, gpt-4.5, gpt-4.1, gpt-4o, chatgpt-4o, o1, o3, o4-mini.
    O200kBase,
    /// `o200k_harmony`: gpt-oss. Same ranks and split pattern as `o200k_base` (it differs only in
    /// special tokens, which ordinary text never produces), so its counts are the same.
    O200kHarmony,
}

impl Encoding {
    /// tiktoken's name of the encoding.
    ///
    /// ```
    /// assert_eq!(perf_cost::Encoding::O200kBase.name(), "o200k_base");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Self::Cl100kBase => "cl100k_base",
            Self::O200kBase => "o200k_base",
            Self::O200kHarmony => "o200k_harmony",
        }
    }

    /// Parses tiktoken's name of an encoding.
    ///
    /// ```
    /// use perf_cost::Encoding;
    /// assert_eq!(Encoding::from_name("cl100k_base"), Some(Encoding::Cl100kBase));
    /// assert_eq!(Encoding::from_name("gpt2"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "cl100k_base" => Some(Self::Cl100kBase),
            "o200k_base" => Some(Self::O200kBase),
            "o200k_harmony" => Some(Self::O200kHarmony),
            _ => None,
        }
    }

    /// The shared encoder, built on first use (tens of milliseconds) and kept for the process.
    ///
    /// ```
    /// use perf_cost::Encoding;
    /// let enc = Encoding::O200kBase.encoder().unwrap();
    /// assert_eq!(enc.count("hello world"), 2);
    /// ```
    pub fn encoder(self) -> Result<&'static Encoder, CostError> {
        static CL100K: OnceLock<Result<Encoder, String>> = OnceLock::new();
        static O200K: OnceLock<Result<Encoder, String>> = OnceLock::new();
        let cell = match self {
            Self::Cl100kBase => &CL100K,
            Self::O200kBase | Self::O200kHarmony => &O200K,
        };
        cell.get_or_init(|| Encoder::build(self))
            .as_ref()
            .map_err(|reason| CostError::Tokenizer {
                encoding: self.name(),
                reason: reason.clone(),
            })
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts tokens of one encoding exactly as tiktoken's `encode_ordinary` would, without building a
/// token vector.
///
/// Shared by every thread (`&'static`); counting takes no lock and allocates only for pieces of
/// 128 bytes or more. Special-token text such as `<|endoftext|>` is counted as ordinary text, as
/// `encode_ordinary` does.
#[derive(Debug)]
pub struct Encoder {
    encoding: Encoding,
    ranks: RankTable,
    pre: Pretokenizer,
}

impl Encoder {
    fn build(encoding: Encoding) -> Result<Self, String> {
        // The rank data is the one tiktoken-rs embeds. Its `CoreBPE` does not expose the rank map,
        // so it is read back token by token with `decode_bytes` from a temporary instance that is
        // dropped afterwards (only our table stays in memory).
        let (bpe, pattern) = match encoding {
            Encoding::Cl100kBase => (tiktoken_rs::cl100k_base(), Pattern::Cl100k),
            Encoding::O200kBase | Encoding::O200kHarmony => {
                (tiktoken_rs::o200k_base(), Pattern::O200k)
            }
        };
        let bpe = bpe.map_err(|e| e.to_string())?;
        let special: std::collections::HashSet<u32> = bpe
            .special_tokens()
            .into_iter()
            .flat_map(|s| bpe.encode_with_special_tokens(s))
            .collect();
        let mut pairs = Vec::with_capacity(200_000);
        let mut misses = 0u32;
        let mut rank = 0u32;
        // Ranks are dense; stop after a long run of unknown ids past the end.
        while misses < 4096 {
            if !special.contains(&rank) {
                match bpe.decode_bytes(&[rank]) {
                    Ok(bytes) => {
                        misses = 0;
                        pairs.push((bytes, rank));
                    }
                    Err(_) => misses += 1,
                }
            }
            rank += 1;
        }
        drop(bpe);
        let ranks = RankTable::from_pairs(pairs);
        if ranks.len() < 50_000 {
            return Err(format!("only {} ranks read back", ranks.len()));
        }
        Ok(Self {
            encoding,
            ranks,
            pre: Pretokenizer::new(pattern)?,
        })
    }

    /// The rank table (for the merge cross-checks in `bpe.rs`).
    #[cfg(test)]
    pub(crate) fn ranks(&self) -> &RankTable {
        &self.ranks
    }

    /// The encoding this encoder counts.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Number of tokens in `text`.
    ///
    /// ```
    /// let enc = perf_cost::Encoding::Cl100kBase.encoder().unwrap();
    /// assert_eq!(enc.count("tiktoken is great!"), 6);
    /// ```
    pub fn count(&self, text: &str) -> usize {
        self.pre
            .split(text)
            .map(|piece| self.ranks.count_piece(piece.as_bytes()))
            .sum()
    }

    /// Number of tokens in `text` if it is at most `limit`, or `None` as soon as it is known to be
    /// more. Work stops at the first piece that crosses the limit, and a long piece is skipped
    /// without merging when even its lower bound (`bytes / longest token`) crosses it.
    ///
    /// ```
    /// let enc = perf_cost::Encoding::O200kBase.encoder().unwrap();
    /// assert_eq!(enc.count_till_limit("hello world", 5), Some(2));
    /// assert_eq!(enc.count_till_limit("hello world", 1), None);
    /// ```
    pub fn count_till_limit(&self, text: &str, limit: usize) -> Option<usize> {
        let mut total = 0usize;
        for piece in self.pre.split(text) {
            let lower = piece.len().div_ceil(self.ranks.max_token_len());
            if total + lower > limit {
                return None;
            }
            total += self.ranks.count_piece(piece.as_bytes());
            if total > limit {
                return None;
            }
        }
        Some(total)
    }

    /// Byte offsets in `text` where its tokens end, in order: cutting there cuts at a token
    /// boundary (which may fall inside a multi-byte character; callers snap to characters).
    pub(crate) fn token_ends(&self, text: &str) -> Vec<usize> {
        let base = text.as_ptr() as usize;
        let mut ends = Vec::new();
        for piece in self.pre.split(text) {
            let start = piece.as_ptr() as usize - base;
            ends.extend(
                self.ranks
                    .token_ends(piece.as_bytes())
                    .into_iter()
                    .map(|e| start + e),
            );
        }
        ends
    }
}
