//! Stable, versioned keys: a namespace and serialized arguments hashed with blake3 into a short
//! string that every process and every release computes the same way.
//!
//! Format `"{namespace}:v1:{32 hex digits}"`: the first 128 bits of
//! `blake3::derive_key("perfkit stable key v1", len(namespace) ‖ namespace ‖ postcard(args))`.
//! The postcard wire format is stable across postcard 1.x, and golden tests pin the output, so a
//! key written by one release is found by the next. A change to the scheme must bump `v1`.
//!
//! The arguments must serialize deterministically: use `BTreeMap`, not `HashMap` (whose order is
//! random per process), and note that `0.0` and `-0.0` are different keys.

use serde::Serialize;

use crate::error::{Error, Result};

/// The version tag in every key; bumped when the derivation changes.
pub const KEY_VERSION: &str = "v1";

const KEY_CONTEXT: &str = "perfkit stable key v1";

/// The key for `args` in `namespace`.
///
/// ```
/// let key = perf_core::keys::stable_key("llm", &("gpt-4o", "What is Rust?", 0.2f32)).unwrap();
/// assert!(key.starts_with("llm:v1:"));
/// assert_eq!(key.len(), "llm:v1:".len() + 32);
/// // Same arguments, same key; any difference, another key.
/// assert_eq!(key, perf_core::keys::stable_key("llm", &("gpt-4o", "What is Rust?", 0.2f32)).unwrap());
/// assert_ne!(key, perf_core::keys::stable_key("llm", &("gpt-4o", "What is Rust?", 0.3f32)).unwrap());
/// ```
pub fn stable_key<A: Serialize + ?Sized>(namespace: &str, args: &A) -> Result<String> {
    let mut builder = KeyBuilder::new(namespace);
    builder.arg(args)?;
    Ok(builder.finish())
}

/// The key for raw bytes in `namespace` (a byte string is hashed as itself, not re-serialized).
///
/// ```
/// let key = perf_core::keys::bytes_key("blob", b"\x00\xff any bytes");
/// assert!(key.starts_with("blob:v1:"));
/// ```
pub fn bytes_key(namespace: &str, bytes: &[u8]) -> String {
    let mut builder = KeyBuilder::new(namespace);
    builder.raw(bytes);
    builder.finish()
}

/// Builds a key from arguments added one by one; `arg(a)` then `arg(b)` gives the same key as
/// [`stable_key`] of the tuple `(a, b)`.
///
/// ```
/// use perf_core::keys::{stable_key, KeyBuilder};
///
/// let mut builder = KeyBuilder::new("search");
/// builder.arg("rust caches").unwrap().arg(&10u32).unwrap();
/// assert_eq!(builder.finish(), stable_key("search", &("rust caches", 10u32)).unwrap());
/// ```
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    namespace: String,
    hasher: blake3::Hasher,
    scratch: Vec<u8>,
}

impl KeyBuilder {
    /// A builder for keys in `namespace`.
    pub fn new(namespace: &str) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(KEY_CONTEXT);
        hasher.update(&(namespace.len() as u64).to_le_bytes());
        hasher.update(namespace.as_bytes());
        Self {
            namespace: namespace.to_owned(),
            hasher,
            scratch: Vec::new(),
        }
    }

    /// Adds one serialized argument.
    pub fn arg<A: Serialize + ?Sized>(&mut self, arg: &A) -> Result<&mut Self> {
        self.scratch.clear();
        let scratch = std::mem::take(&mut self.scratch);
        let bytes = postcard::to_extend(arg, scratch).map_err(|e| Error::KeyArguments {
            namespace: self.namespace.clone(),
            reason: e.to_string(),
        })?;
        self.hasher.update(&bytes);
        self.scratch = bytes;
        Ok(self)
    }

    /// Adds bytes as they are.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.hasher.update(bytes);
        self
    }

    /// The finished key.
    pub fn finish(&self) -> String {
        let hash = self.hasher.finalize();
        let mut key = String::with_capacity(self.namespace.len() + 4 + 32);
        key.push_str(&self.namespace);
        key.push(':');
        key.push_str(KEY_VERSION);
        key.push(':');
        for byte in &hash.as_bytes()[..16] {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        key
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
