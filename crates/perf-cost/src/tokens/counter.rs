//! `TokenCounter`: counts text and chat requests for a model name, with the fallback policy.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::chat::{self, ChatMessage, ToolDefinition};
use super::encoder::Encoding;
use super::model::{
    encoding_for_model, is_estimated_provider, Accuracy, EncodingSource, ModelEncoding,
};
use crate::error::CostError;

/// A token count and how far to trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenCount {
    /// Number of tokens.
    pub tokens: u64,
    /// Whether the count is exact or an estimate.
    pub accuracy: Accuracy,
    /// The encoding that produced it.
    pub encoding: Encoding,
}

impl TokenCount {
    /// Whether this count is an estimate rather than the provider's exact count.
    pub fn is_estimate(&self) -> bool {
        self.accuracy == Accuracy::Estimate
    }
}

/// Counts tokens for model names.
///
/// Known OpenAI models are counted exactly with their tiktoken encoding. Anthropic and Google
/// models, which publish no local tokenizer, are counted with `o200k_base` as a proxy and marked
/// [`Accuracy::Estimate`]. Any other model is counted with the default encoding (`o200k_base`
/// unless configured), marked as an estimate, and logged once per model name with
/// `tracing::warn!`.
///
/// ```
/// use perf_cost::{Accuracy, TokenCounter};
///
/// let counter = TokenCounter::new();
/// let c = counter.count("gpt-4o", "hello world").unwrap();
/// assert_eq!((c.tokens, c.accuracy), (2, Accuracy::Exact));
/// assert!(counter.count("claude-sonnet-4-5", "hello world").unwrap().is_estimate());
/// ```
#[derive(Debug)]
pub struct TokenCounter {
    default_encoding: Encoding,
    estimate_encoding: Encoding,
    warned: Mutex<HashSet<String>>,
}

impl Default for TokenCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCounter {
    /// A counter whose fallback encoding is `o200k_base`.
    pub fn new() -> Self {
        Self::with_default_encoding(Encoding::O200kBase)
    }

    /// A counter with an explicit fallback encoding for unknown models.
    pub fn with_default_encoding(default_encoding: Encoding) -> Self {
        Self {
            default_encoding,
            estimate_encoding: Encoding::O200kBase,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The process-wide counter (fallback `o200k_base`), so warnings are deduplicated globally.
    pub fn global() -> &'static TokenCounter {
        static GLOBAL: OnceLock<TokenCounter> = OnceLock::new();
        GLOBAL.get_or_init(TokenCounter::new)
    }

    /// The encoding used for `model` and why.
    ///
    /// ```
    /// use perf_cost::{EncodingSource, TokenCounter};
    /// let c = TokenCounter::new();
    /// assert_eq!(c.resolve("my-local-llm").source, EncodingSource::Fallback);
    /// ```
    pub fn resolve(&self, model: &str) -> ModelEncoding {
        if let Some(encoding) = encoding_for_model(model) {
            return ModelEncoding {
                encoding,
                source: EncodingSource::Known,
            };
        }
        if is_estimated_provider(model) {
            return ModelEncoding {
                encoding: self.estimate_encoding,
                source: EncodingSource::ProviderEstimate,
            };
        }
        let first = self
            .warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(model.to_owned());
        if first {
            tracing::warn!(
                model,
                fallback = self.default_encoding.name(),
                "unknown model: token counts use the fallback encoding and are estimates"
            );
        }
        ModelEncoding {
            encoding: self.default_encoding,
            source: EncodingSource::Fallback,
        }
    }

    /// Number of distinct unknown models warned about so far.
    pub fn warned_models(&self) -> usize {
        self.warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Counts `text` for `model`.
    pub fn count(&self, model: &str, text: &str) -> Result<TokenCount, CostError> {
        let choice = self.resolve(model);
        let tokens = choice.encoding.encoder()?.count(text);
        Ok(TokenCount {
            tokens: tokens as u64,
            accuracy: choice.accuracy(),
            encoding: choice.encoding,
        })
    }

    /// Counts `text` for `model`, stopping early: `Ok(None)` once it has more than `limit` tokens.
    ///
    /// ```
    /// let c = perf_cost::TokenCounter::new();
    /// assert_eq!(c.count_till_limit("gpt-4o", &"word ".repeat(1000), 10).unwrap(), None);
    /// ```
    pub fn count_till_limit(
        &self,
        model: &str,
        text: &str,
        limit: u64,
    ) -> Result<Option<TokenCount>, CostError> {
        let choice = self.resolve(model);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(choice
            .encoding
            .encoder()?
            .count_till_limit(text, limit)
            .map(|tokens| TokenCount {
                tokens: tokens as u64,
                accuracy: choice.accuracy(),
                encoding: choice.encoding,
            }))
    }

    /// Counts the prompt tokens of a chat request: messages (with the chat format's per-message,
    /// name and reply-priming overheads) and tool definitions.
    ///
    /// With tools the count is an estimate: OpenAI does not publish how tool definitions are
    /// rendered into the prompt (see [`chat`](crate::tokens::chat) for the method used).
    ///
    /// ```
    /// use perf_cost::{ChatMessage, TokenCounter};
    /// let c = TokenCounter::new();
    /// let msgs = [ChatMessage::new("user", "hello world")];
    /// // 3 per message + "user" (1) + "hello world" (2) + 3 reply priming.
    /// assert_eq!(c.count_chat("gpt-4o", &msgs, &[]).unwrap().tokens, 9);
    /// ```
    pub fn count_chat(
        &self,
        model: &str,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
    ) -> Result<TokenCount, CostError> {
        let choice = self.resolve(model);
        let encoder = choice.encoding.encoder()?;
        let tokens = chat::count_chat(encoder, model, messages, tools);
        let accuracy = if tools.is_empty() {
            choice.accuracy()
        } else {
            Accuracy::Estimate
        };
        Ok(TokenCount {
            tokens,
            accuracy,
            encoding: choice.encoding,
        })
    }
}
