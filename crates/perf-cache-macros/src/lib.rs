//! `perf-cache-macros`: the `#[cached]` attribute of `perf-cache`. Use it through
//! `perf_cache::cached` (feature `macros` of `perf-cache`), not from this crate directly: the
//! code it generates names `::perf_cache` items.
//!
//! `#[cached(cache = EXPR)]` on an `async fn` returning `Result<T, E>` caches its results in a
//! `perf_cache::tiered::TieredCache<T>`, keyed by the function's name and arguments with
//! perf-core's stable key hashing, over `TieredCache::get_or_compute` (the same key as
//! `TieredCache::cached_call` with the arguments as a tuple). Concurrent calls with the same
//! arguments run the body once (single-flight); errors are not cached.
//!
//! Options:
//! - `cache = EXPR` (required): an expression of type `TieredCache<T>` (or anything that
//!   dereferences to one: a `static` `LazyLock`, an `Arc`, a `&TieredCache<T>` parameter). It is
//!   evaluated once per call, before the body. A parameter named by it is left out of the key.
//! - `ttl = EXPR`: a `std::time::Duration`; without it each level's default applies.
//! - `name = "..."`: the key's namespace; default `module_path!()::function_name`.
//! - `skip(a, b)`: parameters left out of the key (handles, clients, loggers).
//!
//! Every other parameter must implement `serde::Serialize`; `T` must be a cacheable value
//! (`Serialize + DeserializeOwned + Clone + Send + Sync`), and `E: From<perf_cache::Error>`
//! (for a failure of the cache itself, or another caller's failed load it waited for). The
//! caller that ran the body gets its own error back unchanged.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::LazyLock;
//! use perf_cache::l1::Cache;
//! use perf_cache::tiered::TieredCache;
//!
//! static PRICES: LazyLock<TieredCache<u64>> =
//!     LazyLock::new(|| TieredCache::builder().l1(Cache::new(1 << 20)).build());
//! static CALLS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[perf_cache::cached(cache = PRICES, ttl = std::time::Duration::from_secs(60))]
//! async fn price(sku: &str, qty: u32) -> Result<u64, perf_cache::Error> {
//!     CALLS.fetch_add(1, Ordering::SeqCst);
//!     Ok(u64::from(qty) * 3)
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! assert_eq!(price("a", 4).await?, 12);
//! assert_eq!(price("a", 4).await?, 12);
//! assert_eq!(price("b", 4).await?, 12);
//! assert_eq!(CALLS.load(Ordering::SeqCst), 2);
//! # Ok::<(), perf_cache::Error>(())
//! # }).unwrap();
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType};

/// Caches an `async fn`'s results in a `TieredCache`, keyed by its name and arguments; see the
/// [crate docs](crate) and `perf_cache::cached`.
#[proc_macro_attribute]
pub fn cached(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The attribute's options.
#[derive(Default)]
struct Options {
    cache: Option<Expr>,
    ttl: Option<Expr>,
    name: Option<LitStr>,
    skip: Vec<Ident>,
}

const USAGE: &str =
    "expected `cache = <expr>`, `ttl = <Duration expr>`, `name = \"...\"` or `skip(param, ...)`";

fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    let mut o = Options::default();
    let parser = syn::meta::parser(|meta| {
        let once = |set: bool| {
            if set {
                Err(meta.error("this #[cached] option is given twice"))
            } else {
                Ok(())
            }
        };
        if meta.path.is_ident("cache") {
            once(o.cache.is_some())?;
            o.cache = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("ttl") {
            once(o.ttl.is_some())?;
            o.ttl = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("name") {
            once(o.name.is_some())?;
            o.name = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("skip") {
            meta.parse_nested_meta(|param| match param.path.get_ident() {
                Some(id) => {
                    o.skip.push(id.clone());
                    Ok(())
                }
                None => Err(param.error("`skip(...)` takes parameter names")),
            })?;
        } else {
            return Err(meta.error(format!("unknown #[cached] option: {USAGE}")));
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(o)
}

/// The name of a parameter given as `name: Type` (or `mut name: Type`).
fn param_name(arg: &FnArg) -> syn::Result<(Ident, bool)> {
    match arg {
        FnArg::Receiver(r) => Err(syn::Error::new(
            r.span(),
            "#[cached] does not support methods with a `self` receiver: make it a free function \
             that takes what it needs, or call `TieredCache::cached_call` inside the method",
        )),
        FnArg::Typed(pt) => match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                Ok((pi.ident.clone(), pi.mutability.is_some()))
            }
            other => Err(syn::Error::new(
                other.span(),
                "#[cached] needs a plain parameter name (`x: T`) to hash the argument; \
                 destructure it inside the body",
            )),
        },
    }
}

fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let options = parse_options(attr)?;
    let func: ItemFn = syn::parse2(item)?;
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[cached] works on `async fn` only: the cache is asynchronous",
        ));
    }
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(
            c.span(),
            "#[cached] cannot cache a `const fn`",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "#[cached] cannot cache a variadic function",
        ));
    }
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "#[cached] needs a return type `Result<T, E>` (T cacheable, E: From<perf_cache::Error>)",
            ))
        }
    };
    let Some(cache) = &options.cache else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[cached] needs `cache = <expr>`: the TieredCache<T> to use (a static, or a parameter)",
        ));
    };
    let mut params = Vec::with_capacity(sig.inputs.len());
    for arg in &sig.inputs {
        params.push(param_name(arg)?);
    }
    for s in &options.skip {
        if !params.iter().any(|(p, _)| p == s) {
            return Err(syn::Error::new(
                s.span(),
                format!("`skip({s})`: `{}` has no parameter named `{s}`", sig.ident),
            ));
        }
    }
    // A parameter that is the cache itself is not part of the key.
    let cache_param = match cache {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
        _ => None,
    };
    let key_args: Vec<&Ident> = params
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !options.skip.contains(p) && cache_param.as_ref() != Some(*p))
        .collect();
    let arg_names: Vec<&Ident> = params.iter().map(|(p, _)| p).collect();

    // The outer function: the same signature without `mut` on its parameters (the body, which
    // may mutate them, runs in the inner function).
    let mut outer_sig = sig.clone();
    for arg in &mut outer_sig.inputs {
        if let FnArg::Typed(pt) = arg {
            if let Pat::Ident(pi) = &mut *pt.pat {
                pi.mutability = None;
            }
        }
    }
    let mut inner_sig = sig.clone();
    inner_sig.ident = format_ident!("__perf_cache_uncached_{}", sig.ident);
    let inner_ident = &inner_sig.ident;
    let attrs = &func.attrs;
    let vis = &func.vis;
    let block = &func.block;
    let fn_ident = &sig.ident;
    let name = match &options.name {
        Some(lit) => quote!(#lit),
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#fn_ident)
        )),
    };
    let opts = match &options.ttl {
        Some(ttl) => quote!(::perf_cache::tiered::WriteOptions::new().ttl(#ttl)),
        None => quote!(::perf_cache::tiered::WriteOptions::new()),
    };
    // The body need not use the cache parameter: the generated code does.
    let touch_cache = match &cache_param {
        Some(p) if arg_names.contains(&p) => quote!(let _ = &#p;),
        _ => quote!(),
    };
    let support = quote!(::perf_cache::__private);
    Ok(quote! {
        #(#attrs)*
        #vis #outer_sig {
            #[allow(clippy::too_many_arguments)]
            #inner_sig {
                #touch_cache
                #block
            }

            let __perf_cache = #support::tiered(&(#cache));
            let __perf_cache_key = match #support::call_key(#name, &(#(&#key_args,)*)) {
                ::core::result::Result::Ok(key) => key,
                ::core::result::Result::Err(e) => {
                    return <#ret as #support::CachedReturn>::from_cache_error(e);
                }
            };
            let mut __perf_cache_failure = ::core::option::Option::None;
            let __perf_cache_got = __perf_cache
                .get_or_compute(__perf_cache_key.as_bytes(), #opts, || async {
                    match #support::CachedReturn::split(#inner_ident(#(#arg_names),*).await) {
                        ::core::result::Result::Ok(v) => ::core::result::Result::Ok(v),
                        ::core::result::Result::Err(e) => {
                            __perf_cache_failure = ::core::option::Option::Some(e);
                            ::core::result::Result::Err(#support::LoaderFailed)
                        }
                    }
                })
                .await;
            match (__perf_cache_got, __perf_cache_failure) {
                (::core::result::Result::Ok(v), _) => {
                    <#ret as #support::CachedReturn>::from_value(#support::unshare(v))
                }
                (::core::result::Result::Err(_), ::core::option::Option::Some(e)) => {
                    <#ret as #support::CachedReturn>::from_failure(e)
                }
                (::core::result::Result::Err(e), ::core::option::Option::None) => {
                    <#ret as #support::CachedReturn>::from_cache_error(e)
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(attr: &str, item: &str) -> String {
        let attr: TokenStream = attr.parse().unwrap_or_default();
        let item: TokenStream = item.parse().unwrap_or_default();
        match expand(attr, item) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_plain_async_fn_expands() {
        assert_eq!(
            error_of(
                "cache = C, ttl = D, name = \"n\", skip(h)",
                "async fn f(a: u32, mut b: String, h: Handle) -> Result<u8, E> { Ok(1) }",
            ),
            ""
        );
    }

    #[test]
    fn unsupported_signatures_are_clear_errors() {
        let cases = [
            (
                "cache = C",
                "fn f(a: u32) -> Result<u8, E> { Ok(1) }",
                "`async fn` only",
            ),
            (
                "cache = C",
                "async fn f(&self) -> Result<u8, E> { Ok(1) }",
                "`self` receiver",
            ),
            (
                "cache = C",
                "async fn f((a, b): (u8, u8)) -> Result<u8, E> { Ok(a) }",
                "plain parameter name",
            ),
            ("cache = C", "async fn f(a: u8) { }", "needs a return type"),
            (
                "",
                "async fn f(a: u8) -> Result<u8, E> { Ok(a) }",
                "needs `cache = <expr>`",
            ),
            (
                "cache = C, skip(z)",
                "async fn f(a: u8) -> Result<u8, E> { Ok(a) }",
                "no parameter named `z`",
            ),
            (
                "cache = C, cache = D",
                "async fn f(a: u8) -> Result<u8, E> { Ok(a) }",
                "given twice",
            ),
            (
                "cache = C, size = 3",
                "async fn f(a: u8) -> Result<u8, E> { Ok(a) }",
                "unknown #[cached] option",
            ),
        ];
        for (attr, item, expected) in cases {
            let e = error_of(attr, item);
            assert!(e.contains(expected), "{attr} / {item}: got {e:?}");
        }
    }

    #[test]
    fn the_cache_parameter_and_skipped_ones_are_not_hashed() {
        let out = expand(
            "cache = cache, skip(log)".parse().unwrap_or_default(),
            "async fn f(cache: &C, log: L, a: u8) -> Result<u8, E> { Ok(a) }"
                .parse()
                .unwrap_or_default(),
        )
        .map(|t| t.to_string())
        .unwrap_or_default();
        assert!(out.contains("call_key"), "{out}");
        assert!(out.contains("& (& a ,)"), "{out}");
    }
}
