//! Which encoding a model uses: tiktoken's model table, provider estimates and the fallback.

use super::encoder::Encoding;

/// How far a token count can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Accuracy {
    /// The count is what the provider's tokenizer produces (OpenAI models with a known encoding).
    Exact,
    /// An estimate: the provider publishes no local tokenizer (Anthropic Claude 3 and later, Google
    /// Gemini), the model is unknown and a fallback encoding was used, or the input contains parts
    /// whose rendering the provider does not publish (tool definitions).
    Estimate,
}

/// Why a model was counted with the encoding it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EncodingSource {
    /// tiktoken's model table (exact name or prefix).
    Known,
    /// A provider without a public local tokenizer; counted with a proxy encoding.
    ProviderEstimate,
    /// Not a model perf-cost knows; counted with the configured default encoding.
    Fallback,
}

/// The encoding chosen for a model, and how much to trust the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelEncoding {
    /// The encoding used to count.
    pub encoding: Encoding,
    /// Why this encoding was chosen.
    pub source: EncodingSource,
}

impl ModelEncoding {
    /// Whether counts with this choice are exact.
    pub fn accuracy(&self) -> Accuracy {
        match self.source {
            EncodingSource::Known => Accuracy::Exact,
            EncodingSource::ProviderEstimate | EncodingSource::Fallback => Accuracy::Estimate,
        }
    }
}

/// Exact model names (tiktoken's `MODEL_TO_ENCODING`, the entries perf-cost counts).
const EXACT: &[(&str, Encoding)] = &[
    ("o1", Encoding::O200kBase),
    ("o3", Encoding::O200kBase),
    ("o4-mini", Encoding::O200kBase),
    ("gpt-5", Encoding::O200kBase),
    ("gpt-4.1", Encoding::O200kBase),
    ("gpt-4o", Encoding::O200kBase),
    ("gpt-4", Encoding::Cl100kBase),
    ("gpt-3.5-turbo", Encoding::Cl100kBase),
    ("gpt-3.5", Encoding::Cl100kBase),
    ("gpt-35-turbo", Encoding::Cl100kBase),
    ("davinci-002", Encoding::Cl100kBase),
    ("babbage-002", Encoding::Cl100kBase),
    ("text-embedding-ada-002", Encoding::Cl100kBase),
    ("text-embedding-3-small", Encoding::Cl100kBase),
    ("text-embedding-3-large", Encoding::Cl100kBase),
];

/// Name prefixes (tiktoken's `MODEL_PREFIX_TO_ENCODING`), longest first where they overlap.
const PREFIXES: &[(&str, Encoding)] = &[
    ("ft:gpt-4o", Encoding::O200kBase),
    ("ft:gpt-4.1", Encoding::O200kBase),
    ("ft:gpt-4", Encoding::Cl100kBase),
    ("ft:gpt-3.5-turbo", Encoding::Cl100kBase),
    ("ft:davinci-002", Encoding::Cl100kBase),
    ("ft:babbage-002", Encoding::Cl100kBase),
    ("o1-", Encoding::O200kBase),
    ("o3-", Encoding::O200kBase),
    ("o4-mini-", Encoding::O200kBase),
    ("gpt-5", Encoding::O200kBase),
    ("gpt-4.5-", Encoding::O200kBase),
    ("gpt-4.1-", Encoding::O200kBase),
    ("chatgpt-4o-", Encoding::O200kBase),
    ("gpt-4o-", Encoding::O200kBase),
    ("gpt-4-", Encoding::Cl100kBase),
    ("gpt-3.5-turbo-", Encoding::Cl100kBase),
    ("gpt-35-turbo-", Encoding::Cl100kBase),
    ("gpt-oss-", Encoding::O200kHarmony),
    ("text-embedding-3-", Encoding::Cl100kBase),
];

/// Prefixes of providers that publish no local tokenizer for their current models.
const ESTIMATED: &[&str] = &[
    "claude-",
    "anthropic/",
    "gemini-",
    "google/",
    "models/gemini-",
];

/// Looks a model up in tiktoken's table; `None` when it is not an OpenAI model perf-cost knows.
///
/// ```
/// use perf_cost::{encoding_for_model, Encoding};
/// assert_eq!(encoding_for_model("gpt-4o-mini-2024-07-18"), Some(Encoding::O200kBase));
/// assert_eq!(encoding_for_model("gpt-4-0613"), Some(Encoding::Cl100kBase));
/// assert_eq!(encoding_for_model("ft:gpt-4o-mini:acme::abc123"), Some(Encoding::O200kBase));
/// assert_eq!(encoding_for_model("claude-sonnet-4-5"), None);
/// ```
pub fn encoding_for_model(model: &str) -> Option<Encoding> {
    // Provider-qualified names such as `openai/gpt-4o` or `azure/gpt-4o` count like the bare name.
    let bare = model.rsplit_once('/').map_or(model, |(_, m)| m);
    if let Some((_, enc)) = EXACT.iter().find(|(name, _)| *name == bare) {
        return Some(*enc);
    }
    PREFIXES
        .iter()
        .find(|(prefix, _)| bare.starts_with(prefix))
        .map(|(_, enc)| *enc)
}

/// Whether the model belongs to a provider whose counts can only be estimated locally.
pub(crate) fn is_estimated_provider(model: &str) -> bool {
    ESTIMATED.iter().any(|p| model.starts_with(p))
}
