//! Linear-time pre-tokenization: the tiktoken split patterns run on a backtracking-free regex.
//!
//! tiktoken splits text with a pattern that contains the look-ahead `\s+(?!\S)`. tiktoken-rs runs
//! it on `fancy-regex`, a backtracking engine: on long whitespace runs it fails with a
//! `StackOverflow` error, which tiktoken-rs 0.12 turns into a panic (1 MiB of spaces is enough).
//! Here the pattern runs on `regex-automata`'s meta engine (guaranteed linear time), and the
//! look-ahead is emulated the way the `bpe-openai` crate does it: `\s+(?!\S)` becomes the pattern
//! `\s+\s`, a match of which gives back its last character. An end-of-text run is taken whole
//! by `\s+$`, which is what `\s+(?!\S)` does there. The golden-count tests against OpenAI's
//! Python tiktoken check that the pieces are the same.

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

/// The o200k_base split pattern, minus the look-ahead branch (see the module docs).
const O200K_MAIN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+$",
);

/// The cl100k_base split pattern, minus the look-ahead branch. tiktoken's possessive quantifiers
/// (`?+`, `++`) are written greedy: on a leftmost-first engine without backtracking into earlier
/// branches they split the same way (checked by the golden counts).
const CL100K_MAIN: &str = concat!(
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"|\s*[\r\n]|\s+$",
);

/// Whitespace run followed by one more whitespace character that is given back.
const LOOKAHEAD: &str = r"\s+\s";
/// Last resort: any whitespace run.
const REST: &str = r"\s+";

/// Which split pattern to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// cl100k_base.
    Cl100k,
    /// o200k_base and o200k_harmony.
    O200k,
}

/// A compiled split pattern.
#[derive(Debug)]
pub(crate) struct Pretokenizer {
    regex: Regex,
}

impl Pretokenizer {
    /// Compiles the split pattern; the patterns are constants, so an error is a bug caught by
    /// the tests, reported as a string rather than a panic.
    pub(crate) fn new(pattern: Pattern) -> Result<Self, String> {
        let main = match pattern {
            Pattern::Cl100k => CL100K_MAIN,
            Pattern::O200k => O200K_MAIN,
        };
        let regex = Regex::new_many(&[main, LOOKAHEAD, REST]).map_err(|e| e.to_string())?;
        Ok(Self { regex })
    }

    /// The pieces of `text`, in order, as tiktoken's `regex.find_iter` yields them.
    pub(crate) fn split<'a>(&'a self, text: &'a str) -> Pieces<'a> {
        Pieces {
            regex: &self.regex,
            text,
            pos: 0,
        }
    }
}

/// Iterator over the pre-tokenization pieces of a text.
#[derive(Debug)]
pub(crate) struct Pieces<'a> {
    regex: &'a Regex,
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let rest = self.text.get(self.pos..)?;
            let first = rest.chars().next()?;
            let start = self.pos;
            match self.regex.find(Input::new(rest).anchored(Anchored::Yes)) {
                Some(m) => {
                    let mut end = start + m.end();
                    if m.pattern().as_usize() == 1 {
                        // Give back the look-ahead character (always whitespace, at least one
                        // more whitespace character precedes it).
                        let last = rest[..m.end()]
                            .chars()
                            .next_back()
                            .map_or(0, char::len_utf8);
                        end -= last;
                    }
                    if end <= start {
                        end = start + first.len_utf8();
                    }
                    self.pos = end;
                    return self.text.get(start..end);
                }
                None => {
                    // tiktoken's `find_iter` skips text no branch matches (the patterns cover
                    // every character, so this is defensive), producing no token for it.
                    self.pos += first.len_utf8();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_tiktoken_on_whitespace() {
        let p = Pretokenizer::new(Pattern::O200k).unwrap();
        let pieces: Vec<_> = p.split("a   b  \n\n c   ").collect();
        assert_eq!(pieces, vec!["a", "  ", " b", "  \n\n", " c", "   "]);
    }

    #[test]
    fn cl100k_contractions() {
        let p = Pretokenizer::new(Pattern::Cl100k).unwrap();
        let pieces: Vec<_> = p.split("I'LL go 1234").collect();
        assert_eq!(pieces, vec!["I", "'LL", " go", " ", "123", "4"]);
    }
}
