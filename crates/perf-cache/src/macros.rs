//! Support for the `#[cached]` attribute macro (feature `macros`): the helpers the generated
//! code calls. Not a public API: names and signatures may change in any release.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tiered::{CacheValue, TieredCache};

/// A cheap clone of the cache an attribute's `cache = EXPR` names; deref coercion lets `EXPR`
/// be a `TieredCache`, a reference to one, an `Arc` or a `LazyLock` of one.
pub fn tiered<V: CacheValue>(cache: &TieredCache<V>) -> TieredCache<V> {
    cache.clone()
}

/// The key of a call: the same as [`TieredCache::cached_call`] computes.
pub fn call_key<A: serde::Serialize + ?Sized>(function: &str, args: &A) -> Result<String> {
    crate::tiered::call_key(function, args)
}

/// The value out of the cache's `Arc`, cloned only when the `Arc` is shared.
pub fn unshare<V: Clone>(value: Arc<V>) -> V {
    Arc::unwrap_or_clone(value)
}

/// What the generated loader reports to the cache when the function failed; the function's
/// own error is handed back to its caller separately.
#[derive(Debug, Clone, Copy)]
pub struct LoaderFailed;

impl fmt::Display for LoaderFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the cached function returned an error")
    }
}

impl std::error::Error for LoaderFailed {}

/// The return types a `#[cached]` function may have: `Result<T, E>` with a cacheable `T` and
/// an `E` that a cache error converts into.
#[diagnostic::on_unimplemented(
    message = "a #[cached] function must return `Result<T, E>` with a cacheable `T` and `E: From<perf_cache::Error>`, not `{Self}`",
    label = "this return type"
)]
pub trait CachedReturn: Sized {
    /// The cached value type.
    type Value: CacheValue;
    /// The function's error type.
    type Error;
    /// The function's result as a value or its error.
    fn split(self) -> std::result::Result<Self::Value, Self::Error>;
    /// A (cached or computed) value.
    fn from_value(value: Self::Value) -> Self;
    /// The function's own error, returned to the caller that ran it.
    fn from_failure(error: Self::Error) -> Self;
    /// A failure of the cache, or of another caller's load this call waited for.
    fn from_cache_error(error: Error) -> Self;
}

impl<T: CacheValue, E: From<Error>> CachedReturn for std::result::Result<T, E> {
    type Value = T;
    type Error = E;
    fn split(self) -> std::result::Result<T, E> {
        self
    }
    fn from_value(value: T) -> Self {
        Ok(value)
    }
    fn from_failure(error: E) -> Self {
        Err(error)
    }
    fn from_cache_error(error: Error) -> Self {
        Err(E::from(error))
    }
}
