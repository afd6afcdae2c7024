//! Token budget enforcement: fit prompt parts and chat histories into a token budget, saying what
//! was cut.
//!
//! Text is cut at token boundaries of the model's encoding (snapped back to a character boundary
//! when a token ends inside a multi-byte character), then recounted: re-tokenizing a cut text can
//! differ at the cut, so the result is checked and cut further until its real count fits.

use serde::{Deserialize, Serialize};

use crate::error::CostError;
use crate::tokens::{ChatMessage, Encoder, TokenCounter};

/// Which end of a part to keep when it must be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Keep the beginning (cut the end): documents, instructions.
    Start,
    /// Keep the end (cut the beginning): logs, conversation transcripts.
    End,
}

/// One part of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptPart {
    /// Name used in the report.
    pub name: String,
    /// The text.
    pub text: String,
    /// The part's own token budget.
    pub max_tokens: Option<u64>,
    /// Parts with lower priority are cut first to meet the total; `required` parts are never cut
    /// below their own budget.
    pub priority: u32,
    /// Never cut to meet the total.
    pub required: bool,
    /// Which end to keep.
    pub keep: Keep,
}

impl PromptPart {
    /// A part with priority 0, no own budget, keeping its start.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            max_tokens: None,
            priority: 0,
            required: false,
            keep: Keep::Start,
        }
    }

    /// Sets the part's own budget.
    pub fn max_tokens(mut self, n: u64) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sets the priority (higher survives longer).
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = p;
        self
    }

    /// Marks the part as never cut for the total.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets which end is kept.
    pub fn keep(mut self, keep: Keep) -> Self {
        self.keep = keep;
        self
    }
}

/// What happened to one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartReport {
    /// The part's name.
    pub name: String,
    /// Tokens before.
    pub original_tokens: u64,
    /// Tokens after.
    pub tokens: u64,
    /// The text after.
    pub text: String,
    /// Whether the part's own budget cut it.
    pub cut_by_part_budget: bool,
    /// Whether the total budget cut it.
    pub cut_by_total: bool,
}

impl PartReport {
    /// Tokens removed.
    pub fn removed_tokens(&self) -> u64 {
        self.original_tokens - self.tokens
    }

    /// Whether the part was removed entirely.
    pub fn dropped(&self) -> bool {
        self.tokens == 0 && self.original_tokens > 0
    }
}

/// The result of fitting parts into a budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FittedPrompt {
    /// Parts in their original order.
    pub parts: Vec<PartReport>,
    /// Sum of the parts' tokens.
    pub total_tokens: u64,
    /// Whether the total fits (false only when required parts alone exceed it).
    pub fits: bool,
}

impl FittedPrompt {
    /// The parts that lost tokens.
    pub fn cut(&self) -> impl Iterator<Item = &PartReport> {
        self.parts.iter().filter(|p| p.tokens < p.original_tokens)
    }
}

/// Cuts `text` to at most `max` tokens, keeping `keep`; returns the text and its real count.
///
/// ```
/// use perf_cost::{trim::{truncate_tokens, Keep}, Encoding};
/// let enc = Encoding::O200kBase.encoder().unwrap();
/// let (text, n) = truncate_tokens(enc, "one two three four five", 3, Keep::Start);
/// assert_eq!((text.as_str(), n), ("one two three", 3));
/// let (text, n) = truncate_tokens(enc, "one two three four five", 2, Keep::End);
/// assert_eq!((text.as_str(), n), (" four five", 2));
/// ```
pub fn truncate_tokens(encoder: &Encoder, text: &str, max: u64, keep: Keep) -> (String, u64) {
    let count = encoder.count(text) as u64;
    if count <= max {
        return (text.to_owned(), count);
    }
    let ends = encoder.token_ends(text);
    let mut target = usize::try_from(max).unwrap_or(usize::MAX).min(ends.len());
    loop {
        let cut = match keep {
            Keep::Start => {
                let mut e = if target == 0 { 0 } else { ends[target - 1] };
                while !text.is_char_boundary(e) {
                    e -= 1;
                }
                &text[..e]
            }
            Keep::End => {
                // Keep the last `target` tokens: start after token number len - target.
                let skip = ends.len() - target;
                let mut s = if skip == 0 { 0 } else { ends[skip - 1] };
                while !text.is_char_boundary(s) {
                    s += 1;
                }
                &text[s..]
            }
        };
        let n = encoder.count(cut) as u64;
        if n <= max || target == 0 {
            return (cut.to_owned(), n);
        }
        target -= usize::try_from(n - max).unwrap_or(target).min(target);
    }
}

/// Fits prompt parts into `total` tokens: each part is first cut to its own budget, then parts
/// are cut (lowest priority first, later parts first among equals; `required` parts never) until
/// the sum fits. The result reports every part's tokens before and after.
///
/// ```
/// use perf_cost::{trim::{fit_parts, PromptPart}, Encoding};
/// let enc = Encoding::O200kBase.encoder().unwrap();
/// let parts = vec![
///     PromptPart::new("system", "You answer briefly.").required(),
///     PromptPart::new("context", "word ".repeat(500)).priority(1),
///     PromptPart::new("question", "What is the answer?").required(),
/// ];
/// let fitted = fit_parts(enc, parts, 100);
/// assert!(fitted.fits && fitted.total_tokens <= 100);
/// let cut: Vec<_> = fitted.cut().map(|p| p.name.as_str()).collect();
/// assert_eq!(cut, ["context"]);
/// ```
pub fn fit_parts(encoder: &Encoder, parts: Vec<PromptPart>, total: u64) -> FittedPrompt {
    let mut reports: Vec<PartReport> = parts
        .iter()
        .map(|p| {
            let original = encoder.count(&p.text) as u64;
            let (text, tokens) = match p.max_tokens {
                Some(max) if original > max => truncate_tokens(encoder, &p.text, max, p.keep),
                _ => (p.text.clone(), original),
            };
            PartReport {
                name: p.name.clone(),
                original_tokens: original,
                tokens,
                text,
                cut_by_part_budget: tokens < original,
                cut_by_total: false,
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].required).collect();
    order.sort_by_key(|&i| (parts[i].priority, std::cmp::Reverse(i)));
    for i in order {
        let sum: u64 = reports.iter().map(|r| r.tokens).sum();
        if sum <= total {
            break;
        }
        let excess = sum - total;
        let r = &mut reports[i];
        let target = r.tokens.saturating_sub(excess);
        let (text, tokens) = truncate_tokens(encoder, &r.text, target, parts[i].keep);
        r.cut_by_total = tokens < r.tokens;
        r.text = text;
        r.tokens = tokens;
    }
    let total_tokens = reports.iter().map(|r| r.tokens).sum();
    FittedPrompt {
        parts: reports,
        total_tokens,
        fits: total_tokens <= total,
    }
}

/// The result of fitting a chat history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FittedChat {
    /// The messages kept, in order.
    pub messages: Vec<ChatMessage>,
    /// Indices (in the input) of the messages dropped, oldest first.
    pub dropped: Vec<usize>,
    /// Prompt tokens of the kept messages, chat overheads included.
    pub tokens: u64,
    /// Whether it fits (false when the system messages and the last message alone exceed it).
    pub fits: bool,
}

/// Drops whole messages, oldest first, until the chat fits `max_tokens` (overheads included).
/// System messages and the last message are never dropped.
///
/// ```
/// use perf_cost::{trim::fit_chat, ChatMessage, TokenCounter};
/// let c = TokenCounter::new();
/// let mut msgs = vec![ChatMessage::new("system", "Be brief.")];
/// for i in 0..20 {
///     msgs.push(ChatMessage::new("user", format!("message number {i} with some words")));
/// }
/// let fitted = fit_chat(&c, "gpt-4o", &msgs, 60).unwrap();
/// assert!(fitted.fits && fitted.tokens <= 60);
/// assert_eq!(fitted.dropped[0], 1); // the oldest user message went first
/// assert_eq!(fitted.messages.last(), msgs.last());
/// ```
pub fn fit_chat(
    counter: &TokenCounter,
    model: &str,
    messages: &[ChatMessage],
    max_tokens: u64,
) -> Result<FittedChat, CostError> {
    // The chat count is additive: 3 tokens of reply priming plus each message's own tokens.
    let per_message: Vec<u64> = messages
        .iter()
        .map(|m| {
            Ok(counter
                .count_chat(model, std::slice::from_ref(m), &[])?
                .tokens
                - 3)
        })
        .collect::<Result<_, CostError>>()?;
    let mut keep = vec![true; messages.len()];
    let mut dropped = Vec::new();
    let mut tokens = 3 + per_message.iter().sum::<u64>();
    let last = messages.len().saturating_sub(1);
    for i in 0..messages.len() {
        if tokens <= max_tokens {
            break;
        }
        if i == last || messages[i].role == "system" {
            continue;
        }
        keep[i] = false;
        dropped.push(i);
        tokens -= per_message[i];
    }
    Ok(FittedChat {
        messages: messages
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(m, _)| m.clone())
            .collect(),
        dropped,
        tokens,
        fits: tokens <= max_tokens,
    })
}
