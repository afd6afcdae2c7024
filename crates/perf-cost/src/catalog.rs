//! The pricing catalog: a TOML file shipped in the crate, user overrides, and the cost of a usage.
//!
//! The built-in catalog is `data/catalog.toml` (34 models, `as_of` 2026-11-21, sources and method in
//! its header; `data/verify_catalog.py` checks every number against LiteLLM 1.109.1 and tokencost
//! 0.1.26). Users extend or override it with their own file in the same format: an entry with the
//! same name replaces the built-in one. An unknown model is [`CostError::UnknownModel`] unless a
//! fallback model was configured explicitly with [`Catalog::with_fallback`].

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::CostError;
use crate::money::{cost_nanos, PerMillion, Usd};

const BUILTIN: &str = include_str!("../data/catalog.toml");

/// A higher price that applies to the whole request when its input exceeds `threshold` tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongContextTier {
    /// Input tokens above which the tier applies.
    pub threshold: u64,
    /// Input price above the threshold.
    pub input: PerMillion,
    /// Output price above the threshold.
    pub output: PerMillion,
    /// Cached-input price above the threshold, if it differs.
    pub cached_input: Option<PerMillion>,
}

/// Prices and limits of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelPricing {
    /// Catalog name of the model.
    pub model: String,
    /// `openai`, `anthropic`, `google`, ...
    pub provider: String,
    /// Capability tier (`frontier`, `standard`, `small`, `embedding`), used for substitutions.
    pub tier: String,
    /// Input price.
    pub input: PerMillion,
    /// Output price.
    pub output: PerMillion,
    /// Price of cached input tokens (cache reads); `None` when the provider has no discount.
    pub cached_input: Option<PerMillion>,
    /// Price of writing input tokens to the cache, where the provider charges it.
    pub cache_write: Option<PerMillion>,
    /// Batch API input price.
    pub batch_input: Option<PerMillion>,
    /// Batch API output price.
    pub batch_output: Option<PerMillion>,
    /// Batch API cached-input price.
    pub batch_cached_input: Option<PerMillion>,
    /// Long-context tier.
    pub long_context: Option<LongContextTier>,
    /// Maximum input tokens.
    pub context_window: u64,
    /// Maximum output tokens, where known.
    pub max_output: Option<u64>,
    /// When the provider retires (or retired) the model.
    pub deprecation: Option<NaiveDate>,
    /// Other names of the same model.
    pub aliases: Vec<String>,
}

/// Token usage of one call.
///
/// `input` is the total number of prompt tokens **including** `cached_input` and `cache_write`
/// tokens (OpenAI's `prompt_tokens` convention; for Anthropic add `cache_read_input_tokens` and
/// `cache_creation_input_tokens` to `input_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All prompt tokens.
    pub input: u64,
    /// Output (completion) tokens, reasoning tokens included.
    pub output: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_input: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write: u64,
    /// Whether the call went through the Batch API.
    pub batch: bool,
}

impl Usage {
    /// Usage with input and output tokens only.
    pub fn new(input: u64, output: u64) -> Self {
        Self {
            input,
            output,
            ..Self::default()
        }
    }

    /// Sets the cached-input tokens.
    pub fn with_cached(mut self, cached_input: u64) -> Self {
        self.cached_input = cached_input;
        self
    }
}

impl ModelPricing {
    /// The cost of `usage`, exact in nano-dollars (see [`Usd`] for the rounding rule).
    ///
    /// Cache reads without a cached price and cache writes without a write price are charged at the
    /// input price; batch calls of a model without batch prices at the standard prices (never less
    /// than the provider may charge). Above the long-context threshold the tier's prices apply to
    /// the whole call.
    ///
    /// ```
    /// use perf_cost::{Catalog, Usage, Usd};
    /// let cat = Catalog::builtin().unwrap();
    /// let p = cat.get("gpt-4o").unwrap();
    /// // 1M input tokens at $2.50/M + 100k output at $10/M = $3.50
    /// assert_eq!(p.cost(&Usage::new(1_000_000, 100_000)), Usd::from_cents(350));
    /// ```
    pub fn cost(&self, usage: &Usage) -> Usd {
        let long = self
            .long_context
            .as_ref()
            .filter(|tier| usage.input > tier.threshold);
        let (mut input, mut output, mut cached) = match long {
            Some(t) => (t.input, t.output, t.cached_input.or(self.cached_input)),
            None => (self.input, self.output, self.cached_input),
        };
        if usage.batch {
            if let (Some(bi), Some(bo)) = (self.batch_input, self.batch_output) {
                if long.is_none() {
                    input = bi;
                    output = bo;
                    cached = self.batch_cached_input.or(cached);
                }
            }
        }
        let cached_tokens = usage.cached_input.min(usage.input);
        let write_tokens = usage.cache_write.min(usage.input - cached_tokens);
        let plain = usage.input - cached_tokens - write_tokens;
        Usd::from_nanos(cost_nanos(&[
            (plain, input),
            (cached_tokens, cached.unwrap_or(input)),
            (write_tokens, self.cache_write.unwrap_or(input)),
            (usage.output, output),
        ]))
    }

    /// Price per million tokens blending input and output 3:1, used to rank models by cost.
    pub fn blended(&self) -> u64 {
        (3 * self.input.micros() + self.output.micros()) / 4
    }

    /// Whether the model is retired on `date`.
    pub fn is_deprecated_on(&self, date: NaiveDate) -> bool {
        self.deprecation.is_some_and(|d| d <= date)
    }
}

/// The price list: the built-in catalog, user overrides, and an optional explicit fallback.
///
/// ```
/// use perf_cost::{Catalog, CostError};
/// let cat = Catalog::builtin().unwrap();
/// assert!(cat.len() >= 25);
/// assert!(matches!(cat.get("no-such-model"), Err(CostError::UnknownModel { .. })));
/// let cat = cat.with_fallback("gpt-4o").unwrap();
/// assert_eq!(cat.get("no-such-model").unwrap().model, "gpt-4o");
/// ```
#[derive(Debug, Clone)]
pub struct Catalog {
    as_of: Option<NaiveDate>,
    models: BTreeMap<String, ModelPricing>,
    aliases: BTreeMap<String, String>,
    fallback: Option<String>,
}

impl Catalog {
    /// The catalog shipped with the crate.
    pub fn builtin() -> Result<Self, CostError> {
        Self::from_toml_str(BUILTIN, "built-in catalog")
    }

    /// Parses a catalog file; errors name the source, model and field.
    ///
    /// ```
    /// use perf_cost::Catalog;
    /// let err = Catalog::from_toml_str(
    ///     "[models.m]\nprovider = \"x\"\ninput = \"abc\"\noutput = 1\ncontext_window = 10",
    ///     "mine.toml",
    /// )
    /// .unwrap_err()
    /// .to_string();
    /// assert!(err.contains("\"m\"") && err.contains("\"input\""), "{err}");
    /// ```
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, CostError> {
        let err = |model: &str, field: &str, reason: String| CostError::Catalog {
            source_name: source_name.to_owned(),
            model: model.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err("", "", e.to_string()))?;
        let as_of = match doc.get("as_of") {
            None => None,
            Some(v) => Some(parse_date(v).map_err(|r| err("", "as_of", r))?),
        };
        let mut catalog = Self {
            as_of,
            models: BTreeMap::new(),
            aliases: BTreeMap::new(),
            fallback: None,
        };
        if let Some(fallback) = doc.get("fallback") {
            let name = fallback
                .as_str()
                .ok_or_else(|| err("", "fallback", "expected a model name string".into()))?;
            catalog.fallback = Some(name.to_owned());
        }
        let models = match doc.get("models") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(err("", "models", "expected a table of models".into())),
            None => return Ok(catalog),
        };
        for (name, value) in models {
            let table = value
                .as_table()
                .ok_or_else(|| err(name, "", "expected a table".into()))?;
            let pricing =
                parse_model(name, table).map_err(|(field, reason)| err(name, &field, reason))?;
            catalog.insert(pricing);
        }
        if let Some(fb) = &catalog.fallback {
            if catalog.resolve(fb).is_none() {
                return Err(err(
                    fb,
                    "fallback",
                    "fallback model is not in this catalog".into(),
                ));
            }
        }
        Ok(catalog)
    }

    /// Reads a catalog file from disk.
    pub fn from_file(path: &std::path::Path) -> Result<Self, CostError> {
        let text = std::fs::read_to_string(path).map_err(|e| CostError::Catalog {
            source_name: path.display().to_string(),
            model: String::new(),
            field: String::new(),
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The built-in catalog with a user file applied on top.
    pub fn builtin_with_overrides(path: &std::path::Path) -> Result<Self, CostError> {
        let mut cat = Self::builtin()?;
        cat.merge(Self::from_file(path)?);
        Ok(cat)
    }

    /// Adds or replaces a model.
    pub fn insert(&mut self, pricing: ModelPricing) {
        for alias in &pricing.aliases {
            self.aliases.insert(alias.clone(), pricing.model.clone());
        }
        self.models.insert(pricing.model.clone(), pricing);
    }

    /// Applies `other` on top of this catalog: its models replace same-named ones, its fallback and
    /// `as_of` (if set) win.
    pub fn merge(&mut self, other: Catalog) {
        for (_, pricing) in other.models {
            self.insert(pricing);
        }
        if other.fallback.is_some() {
            self.fallback = other.fallback;
        }
        if other.as_of.is_some() {
            self.as_of = other.as_of;
        }
    }

    /// Prices unknown models as `model` (which must be in the catalog): an explicit choice, never
    /// a default.
    pub fn with_fallback(mut self, model: &str) -> Result<Self, CostError> {
        if self.resolve(model).is_none() {
            return Err(CostError::UnknownModel {
                model: model.to_owned(),
            });
        }
        self.fallback = Some(model.to_owned());
        Ok(self)
    }

    fn resolve(&self, model: &str) -> Option<&ModelPricing> {
        let lookup = |m: &str| {
            self.models
                .get(m)
                .or_else(|| self.aliases.get(m).and_then(|canon| self.models.get(canon)))
        };
        lookup(model).or_else(|| {
            // Provider-qualified names (`openai/gpt-4o`, `anthropic/claude-haiku-4-5`).
            model.rsplit_once('/').and_then(|(_, bare)| lookup(bare))
        })
    }

    /// Whether `model` is in the catalog (by name or alias), ignoring the fallback.
    pub fn contains(&self, model: &str) -> bool {
        self.resolve(model).is_some()
    }

    /// The pricing of `model`, the configured fallback's, or [`CostError::UnknownModel`].
    pub fn get(&self, model: &str) -> Result<&ModelPricing, CostError> {
        self.resolve(model)
            .or_else(|| self.fallback.as_deref().and_then(|fb| self.resolve(fb)))
            .ok_or_else(|| CostError::UnknownModel {
                model: model.to_owned(),
            })
    }

    /// The cost of `usage` on `model`.
    pub fn cost(&self, model: &str, usage: &Usage) -> Result<Usd, CostError> {
        Ok(self.get(model)?.cost(usage))
    }

    /// All models, by name.
    pub fn models(&self) -> impl Iterator<Item = &ModelPricing> {
        self.models.values()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the catalog has no models.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The date the prices were read.
    pub fn as_of(&self) -> Option<NaiveDate> {
        self.as_of
    }
}

fn parse_date(v: &toml::Value) -> Result<NaiveDate, String> {
    let s = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        _ => return Err("expected a YYYY-MM-DD date".into()),
    };
    NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|e| format!("{s:?}: {e}"))
}

/// A price: a decimal string, an integer or a float, in dollars per million tokens.
fn parse_price(v: &toml::Value) -> Result<PerMillion, String> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) if *i >= 0 => i.to_string(),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => {
            let micros = (f * 1e6).round();
            if ((f * 1e6) - micros).abs() > 1e-6 * micros.max(1.0) {
                return Err(format!("{f} has more than six decimals"));
            }
            return Ok(PerMillion::from_micros(micros as u64));
        }
        other => {
            return Err(format!(
                "expected a non-negative price in dollars per million tokens, got {other}"
            ))
        }
    };
    PerMillion::parse_dollars(&text).ok_or_else(|| {
        format!("{text:?} is not a non-negative dollar amount with at most six decimals")
    })
}

type FieldError = (String, String);

fn parse_model(name: &str, t: &toml::Table) -> Result<ModelPricing, FieldError> {
    const KNOWN: &[&str] = &[
        "provider",
        "tier",
        "input",
        "output",
        "cached_input",
        "cache_write",
        "batch_input",
        "batch_output",
        "batch_cached_input",
        "long_context",
        "context_window",
        "max_output",
        "deprecation",
        "aliases",
    ];
    if let Some(unknown) = t.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err((unknown.clone(), "unknown field".into()));
    }
    let field = |f: &str, r: String| (f.to_owned(), r);
    let req_price = |f: &str| -> Result<PerMillion, FieldError> {
        let v = t.get(f).ok_or_else(|| field(f, "missing".into()))?;
        parse_price(v).map_err(|r| field(f, r))
    };
    let opt_price = |f: &str| -> Result<Option<PerMillion>, FieldError> {
        t.get(f)
            .map(|v| parse_price(v).map_err(|r| field(f, r)))
            .transpose()
    };
    let opt_u64 = |f: &str| -> Result<Option<u64>, FieldError> {
        match t.get(f) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i > 0 => Ok(Some(*i as u64)),
            Some(other) => Err(field(
                f,
                format!("expected a positive integer, got {other}"),
            )),
        }
    };
    let string = |f: &str| -> Result<Option<String>, FieldError> {
        match t.get(f) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(field(f, format!("expected a string, got {other}"))),
        }
    };
    let long_context = match t.get("long_context") {
        None => None,
        Some(toml::Value::Table(lc)) => {
            let sub = |f: &str| format!("long_context.{f}");
            let threshold = match lc.get("threshold") {
                Some(toml::Value::Integer(i)) if *i > 0 => *i as u64,
                _ => {
                    return Err(field(
                        &sub("threshold"),
                        "expected a positive integer".into(),
                    ))
                }
            };
            let price = |f: &str| -> Result<Option<PerMillion>, FieldError> {
                lc.get(f)
                    .map(|v| parse_price(v).map_err(|r| field(&sub(f), r)))
                    .transpose()
            };
            Some(LongContextTier {
                threshold,
                input: price("input")?.ok_or_else(|| field(&sub("input"), "missing".into()))?,
                output: price("output")?.ok_or_else(|| field(&sub("output"), "missing".into()))?,
                cached_input: price("cached_input")?,
            })
        }
        Some(other) => {
            return Err(field(
                "long_context",
                format!("expected a table, got {other}"),
            ))
        }
    };
    let aliases = match t.get("aliases") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| field("aliases", "expected an array of strings".into()))?,
        Some(other) => return Err(field("aliases", format!("expected an array, got {other}"))),
    };
    Ok(ModelPricing {
        model: name.to_owned(),
        provider: string("provider")?.ok_or_else(|| field("provider", "missing".into()))?,
        tier: string("tier")?.unwrap_or_else(|| "standard".into()),
        input: req_price("input")?,
        output: req_price("output")?,
        cached_input: opt_price("cached_input")?,
        cache_write: opt_price("cache_write")?,
        batch_input: opt_price("batch_input")?,
        batch_output: opt_price("batch_output")?,
        batch_cached_input: opt_price("batch_cached_input")?,
        long_context,
        context_window: opt_u64("context_window")?
            .ok_or_else(|| field("context_window", "missing".into()))?,
        max_output: opt_u64("max_output")?,
        deprecation: t
            .get("deprecation")
            .map(|v| parse_date(v).map_err(|r| field("deprecation", r)))
            .transpose()?,
        aliases,
    })
}
