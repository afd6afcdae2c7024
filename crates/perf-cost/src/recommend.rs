//! Savings recommendations computed from recorded usage and the catalog.
//!
//! - **Substitution**: for each model used, the cheapest model of the same provider and tier that
//!   is not retired and whose context window holds the largest prompt seen, repriced on the real
//!   token totals (input, cached input, output) at base prices.
//! - **Duplicate prompts**: calls grouped by the blake3 hash of the normalized prompt
//!   ([`prompt_hash`](crate::prompt_hash)), with their real count and cost; the avoidable cost is
//!   what every repeat after the first cost (what a response cache would save).
//! - **Oversized prompts** by pipeline: calls whose prompt exceeds a token threshold.
//! - **Unused cached-input discounts**: models with a cache price whose calls read (almost)
//!   nothing from the cache although identical prompts were sent again; savings are the repeated
//!   prompt tokens priced at the input minus the cached-input price.
//!
//! Duplicates, oversized prompts and the largest prompt come from the tracker's bounded history
//! (the most recent events); substitutions use the complete aggregates.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::catalog::{ModelPricing, Usage};
use crate::money::Usd;
use crate::tracker::{CostTracker, Recorded};

/// Knobs of [`Recommendations::analyze`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecommendOptions {
    /// Days to analyse (inclusive); `None` for everything.
    pub days: Option<(NaiveDate, NaiveDate)>,
    /// Prompts above this many tokens are oversized.
    pub oversized_input_tokens: u64,
    /// Models counted as retired on this date are never suggested.
    pub today: NaiveDate,
    /// A model reads "almost nothing" from the cache below this share of its prompt tokens (%).
    pub low_cache_share_percent: u64,
}

impl RecommendOptions {
    /// Defaults: everything, 16,000-token threshold, 10 % cache share, `today` as given.
    pub fn new(today: NaiveDate) -> Self {
        Self {
            days: None,
            oversized_input_tokens: 16_000,
            today,
            low_cache_share_percent: 10,
        }
    }

    /// Sets the oversized threshold.
    pub fn oversized_input_tokens(mut self, n: u64) -> Self {
        self.oversized_input_tokens = n;
        self
    }

    /// Restricts the analysis to days.
    pub fn days(mut self, from: NaiveDate, to: NaiveDate) -> Self {
        self.days = Some((from, to));
        self
    }
}

/// Use a cheaper model of the same provider and tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substitution {
    /// The model used.
    pub model: String,
    /// The suggested model.
    pub suggested: String,
    /// Provider of both.
    pub provider: String,
    /// Tier of both.
    pub tier: String,
    /// Calls made with `model`.
    pub calls: u64,
    /// What they cost.
    pub actual_cost: Usd,
    /// What the same tokens cost on `suggested`.
    pub suggested_cost: Usd,
    /// The difference.
    pub savings: Usd,
}

/// Calls that sent the same normalized prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicatePrompts {
    /// blake3 hash (hex) of the normalized prompt.
    pub prompt_hash: String,
    /// Number of calls.
    pub count: u64,
    /// Models used.
    pub models: Vec<String>,
    /// Pipelines that sent it.
    pub pipelines: Vec<String>,
    /// Total cost of the calls.
    pub total_cost: Usd,
    /// Cost of every call after the first.
    pub avoidable_cost: Usd,
}

/// A pipeline that sends prompts above the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OversizedPrompts {
    /// The pipeline (`-` for none).
    pub pipeline: String,
    /// Calls of the pipeline in the history.
    pub calls: u64,
    /// Calls above the threshold.
    pub oversized_calls: u64,
    /// The threshold.
    pub threshold: u64,
    /// Mean prompt tokens over all calls.
    pub mean_input_tokens: u64,
    /// Largest prompt.
    pub max_input_tokens: u64,
    /// Cost of the oversized calls.
    pub oversized_cost: Usd,
}

/// A model whose prompt-cache discount goes unused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusedCacheDiscount {
    /// The model.
    pub model: String,
    /// Prompt tokens sent.
    pub input_tokens: u64,
    /// Of which read from the cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens of repeated identical prompts (every occurrence after the first).
    pub repeated_input_tokens: u64,
    /// Savings had the repeats been cache reads.
    pub savings: Usd,
}

/// All recommendations, each list sorted by descending savings or cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendations {
    /// Model substitutions.
    pub substitutions: Vec<Substitution>,
    /// Duplicate prompts.
    pub duplicates: Vec<DuplicatePrompts>,
    /// Oversized prompts by pipeline.
    pub oversized: Vec<OversizedPrompts>,
    /// Unused cache discounts.
    pub unused_cache: Vec<UnusedCacheDiscount>,
}

fn base_cost(p: &ModelPricing, input: u64, cached: u64, output: u64) -> Usd {
    // Base prices: the whole aggregate must not be mistaken for one long-context call.
    let mut flat = p.clone();
    flat.long_context = None;
    flat.cost(&Usage {
        input,
        output,
        cached_input: cached,
        ..Usage::default()
    })
}

impl Recommendations {
    /// Analyses a tracker's usage against its catalog.
    ///
    /// ```
    /// use perf_cost::{prompt_hash, Catalog, CostTracker, RecommendOptions, Recommendations, Usage, UsageEvent};
    /// let t = CostTracker::new(Catalog::builtin().unwrap());
    /// for _ in 0..3 {
    ///     let e = UsageEvent::new("gpt-4o", Usage::new(2000, 100)).prompt_hash(prompt_hash("same question"));
    ///     t.track(e).unwrap();
    /// }
    /// let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
    /// let recs = Recommendations::analyze(&t, &RecommendOptions::new(today));
    /// assert_eq!(recs.duplicates[0].count, 3);
    /// // Same provider and tier, cheapest on these tokens: gpt-5 ($1.25/$10 vs $2.50/$10).
    /// assert_eq!(recs.substitutions[0].suggested, "gpt-5");
    /// ```
    pub fn analyze(tracker: &CostTracker, options: &RecommendOptions) -> Self {
        let catalog = tracker.catalog();
        let in_window = |day: NaiveDate| {
            options
                .days
                .is_none_or(|(from, to)| day >= from && day <= to)
        };
        let history: Vec<Recorded> = tracker
            .history()
            .into_iter()
            .filter(|r| in_window(r.day))
            .collect();
        let mut largest_prompt: HashMap<&str, u64> = HashMap::new();
        for r in &history {
            let e = largest_prompt.entry(r.model.as_str()).or_default();
            *e = (*e).max(r.usage.input);
        }

        // Substitutions from the complete aggregates.
        let mut per_model: BTreeMap<String, (u64, u64, u64, u64, Usd)> = BTreeMap::new();
        for ((day, model, _, _), t) in tracker.cells() {
            if !in_window(day) {
                continue;
            }
            let e = per_model.entry(model).or_default();
            e.0 += t.calls;
            e.1 += t.input_tokens;
            e.2 += t.cached_input_tokens;
            e.3 += t.output_tokens;
            e.4 += t.cost;
        }
        let mut substitutions = Vec::new();
        for (model, (calls, input, cached, output, actual)) in &per_model {
            let Ok(current) = catalog.get(model) else {
                continue;
            };
            let needed = largest_prompt.get(model.as_str()).copied().unwrap_or(0);
            let best = catalog
                .models()
                .filter(|c| c.model != current.model)
                .filter(|c| c.provider == current.provider && c.tier == current.tier)
                .filter(|c| !c.is_deprecated_on(options.today))
                .filter(|c| c.context_window >= needed)
                .map(|c| (base_cost(c, *input, *cached, *output), c))
                .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.model.cmp(&b.1.model)));
            let reference = base_cost(current, *input, *cached, *output);
            if let Some((cost, c)) = best {
                if cost < reference {
                    substitutions.push(Substitution {
                        model: model.clone(),
                        suggested: c.model.clone(),
                        provider: c.provider.clone(),
                        tier: c.tier.clone(),
                        calls: *calls,
                        actual_cost: *actual,
                        suggested_cost: cost,
                        savings: actual.saturating_sub(cost),
                    });
                }
            }
        }
        substitutions.sort_by_key(|s| std::cmp::Reverse(s.savings));

        // Duplicates from the history.
        struct Group<'a> {
            count: u64,
            models: Vec<&'a str>,
            pipelines: Vec<&'a str>,
            total: Usd,
            first: Usd,
        }
        let mut groups: HashMap<&str, Group<'_>> = HashMap::new();
        for r in &history {
            let Some(h) = r.prompt_hash.as_deref() else {
                continue;
            };
            let g = groups.entry(h).or_insert(Group {
                count: 0,
                models: Vec::new(),
                pipelines: Vec::new(),
                total: Usd::ZERO,
                first: r.cost,
            });
            g.count += 1;
            g.total += r.cost;
            if !g.models.contains(&r.model.as_str()) {
                g.models.push(&r.model);
            }
            let p = r.pipeline.as_deref().unwrap_or("-");
            if !g.pipelines.contains(&p) {
                g.pipelines.push(p);
            }
        }
        let mut duplicates: Vec<DuplicatePrompts> = groups
            .into_iter()
            .filter(|(_, g)| g.count > 1)
            .map(|(h, g)| DuplicatePrompts {
                prompt_hash: h.to_owned(),
                count: g.count,
                models: g.models.iter().map(|s| (*s).to_owned()).collect(),
                pipelines: g.pipelines.iter().map(|s| (*s).to_owned()).collect(),
                total_cost: g.total,
                avoidable_cost: g.total.saturating_sub(g.first),
            })
            .collect();
        duplicates.sort_by(|a, b| {
            b.avoidable_cost
                .cmp(&a.avoidable_cost)
                .then_with(|| a.prompt_hash.cmp(&b.prompt_hash))
        });

        // Oversized prompts by pipeline.
        let mut by_pipeline: BTreeMap<&str, (u64, u64, u64, u64, Usd)> = BTreeMap::new();
        for r in &history {
            let e = by_pipeline
                .entry(r.pipeline.as_deref().unwrap_or("-"))
                .or_default();
            e.0 += 1;
            e.2 += r.usage.input;
            e.3 = e.3.max(r.usage.input);
            if r.usage.input > options.oversized_input_tokens {
                e.1 += 1;
                e.4 += r.cost;
            }
        }
        let mut oversized: Vec<OversizedPrompts> = by_pipeline
            .into_iter()
            .filter(|(_, e)| e.1 > 0)
            .map(|(p, e)| OversizedPrompts {
                pipeline: p.to_owned(),
                calls: e.0,
                oversized_calls: e.1,
                threshold: options.oversized_input_tokens,
                mean_input_tokens: e.2 / e.0.max(1),
                max_input_tokens: e.3,
                oversized_cost: e.4,
            })
            .collect();
        oversized.sort_by_key(|o| std::cmp::Reverse(o.oversized_cost));

        // Unused cache discounts: repeated prompts on models with a cheaper cached price.
        let mut seen_hashes: HashMap<(&str, &str), ()> = HashMap::new();
        let mut repeated: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &history {
            let Some(h) = r.prompt_hash.as_deref() else {
                continue;
            };
            if seen_hashes.insert((r.model.as_str(), h), ()).is_some() {
                *repeated.entry(r.model.as_str()).or_default() +=
                    r.usage.input - r.usage.cached_input.min(r.usage.input);
            }
        }
        let mut unused_cache = Vec::new();
        for (model, (_, input, cached, _, _)) in &per_model {
            let Ok(p) = catalog.get(model) else { continue };
            let Some(cached_price) = p.cached_input else {
                continue;
            };
            if cached_price >= p.input || *input == 0 {
                continue;
            }
            if cached * 100 >= input * options.low_cache_share_percent {
                continue;
            }
            let rep = repeated.get(model.as_str()).copied().unwrap_or(0);
            if rep == 0 {
                continue;
            }
            let savings = p.input.cost(rep).saturating_sub(cached_price.cost(rep));
            unused_cache.push(UnusedCacheDiscount {
                model: model.clone(),
                input_tokens: *input,
                cached_input_tokens: *cached,
                repeated_input_tokens: rep,
                savings,
            });
        }
        unused_cache.sort_by_key(|u| std::cmp::Reverse(u.savings));

        Self {
            substitutions,
            duplicates,
            oversized,
            unused_cache,
        }
    }
}
