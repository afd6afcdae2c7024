//! Prompt normalization and hashing, for finding duplicate prompts.

/// blake3 hash of a prompt after normalization: leading and trailing whitespace removed and every
/// whitespace run collapsed to one space (case and punctuation are kept: they change answers).
///
/// ```
/// let a = perf_cost::prompt_hash("  Summarize   this:\n\nhello ");
/// let b = perf_cost::prompt_hash("Summarize this: hello");
/// assert_eq!(a, b);
/// assert_ne!(a, perf_cost::prompt_hash("summarize this: hello"));
/// ```
pub fn prompt_hash(prompt: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    let mut first = true;
    for word in prompt.split_whitespace() {
        if !first {
            hasher.update(b" ");
        }
        hasher.update(word.as_bytes());
        first = false;
    }
    *hasher.finalize().as_bytes()
}
