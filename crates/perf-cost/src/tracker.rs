//! `CostTracker`: prices each call, keeps running aggregates and a bounded history.
//!
//! Aggregates by model, user, pipeline and day (in the tracker's time zone) are updated on every
//! call, so a report reads `O(groups)` entries and never scans the history. The history is a ring
//! buffer of the last `history_capacity` events (for exports and recommendations); when it is full
//! the oldest event is dropped, but the aggregates keep counting it.
//!
//! Recording is cheap on the hot path: model, user and pipeline names are interned (looked up by
//! `&str`, allocated once per distinct name), so an aggregate cell is a small `Copy` key and a
//! call to an existing cell allocates nothing; the event's own strings move into the history
//! without copies; the calendar day is computed once per day (the UTC range of the current local
//! day is cached), not converted through the time zone on every call.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use perf_core::clock::{system_clock, SharedClock};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Usage};
use crate::error::CostError;
use crate::money::Usd;

/// One call to record.
#[derive(Debug, Clone, Default)]
pub struct UsageEvent {
    /// Model name as sent to the provider.
    pub model: String,
    /// Token usage.
    pub usage: Usage,
    /// User the call was made for.
    pub user: Option<String>,
    /// Pipeline (feature, job) that made the call.
    pub pipeline: Option<String>,
    /// Free-form metadata kept in the history (never logged).
    pub metadata: BTreeMap<String, String>,
    /// blake3 hash of the normalized prompt, if known (see [`prompt_hash`](crate::prompt_hash));
    /// used to find duplicate prompts.
    pub prompt_hash: Option<[u8; 32]>,
}

impl UsageEvent {
    /// An event with model and usage only.
    pub fn new(model: impl Into<String>, usage: Usage) -> Self {
        Self {
            model: model.into(),
            usage,
            ..Self::default()
        }
    }

    /// Sets the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the pipeline.
    pub fn pipeline(mut self, pipeline: impl Into<String>) -> Self {
        self.pipeline = Some(pipeline.into());
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the prompt hash.
    pub fn prompt_hash(mut self, hash: [u8; 32]) -> Self {
        self.prompt_hash = Some(hash);
        self
    }
}

/// A recorded call, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Calendar day in the tracker's time zone.
    pub day: NaiveDate,
    /// Model name.
    pub model: String,
    /// Token usage.
    pub usage: Usage,
    /// User.
    pub user: Option<String>,
    /// Pipeline.
    pub pipeline: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Prompt hash (hex), if given.
    pub prompt_hash: Option<String>,
    /// Cost.
    pub cost: Usd,
}

/// Running totals of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Number of calls.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cached prompt tokens.
    pub cached_input_tokens: u64,
    /// Cost.
    pub cost: Usd,
}

impl Totals {
    fn add(&mut self, usage: &Usage, cost: Usd) {
        self.calls += 1;
        self.input_tokens += usage.input;
        self.output_tokens += usage.output;
        self.cached_input_tokens += usage.cached_input;
        self.cost += cost;
    }
}

/// How to group a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupBy {
    /// By model name.
    Model,
    /// By user (`-` when none).
    User,
    /// By pipeline (`-` when none).
    Pipeline,
    /// By calendar day.
    Day,
}

/// Aggregate key: (day, model, user, pipeline), names as ids of [`Names`]. Group reports fold
/// these, so their size is the number of distinct combinations, independent of the number of calls.
type Key = (NaiveDate, u32, u32, u32);

/// Interned names: each distinct model, user or pipeline name is stored once.
#[derive(Debug, Default)]
struct Names {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", |n| n)
    }
}

/// The UTC instants `[start, end)` of one local calendar day that has no offset change.
#[derive(Debug, Clone, Copy)]
struct DayRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    day: NaiveDate,
}

#[derive(Debug)]
struct State {
    names: Names,
    cells: FxHashMap<Key, Totals>,
    history: VecDeque<Recorded>,
    total: Totals,
    today: Option<DayRange>,
}

/// The local day of `at` in `tz`, and its UTC range when the day has one offset throughout (so
/// every instant in the range has the same local date).
fn local_day(tz: Tz, at: DateTime<Utc>) -> (NaiveDate, Option<DayRange>) {
    use chrono::{Offset, TimeZone};
    let day = at.with_timezone(&tz).date_naive();
    let range = (|| {
        let start = tz
            .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
            .single()?
            .with_timezone(&Utc);
        let end = tz
            .from_local_datetime(&day.succ_opt()?.and_hms_opt(0, 0, 0)?)
            .single()?
            .with_timezone(&Utc);
        let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix();
        let last = end - chrono::Duration::seconds(1);
        (start <= at && at < end && offset(start) == offset(last)).then_some(DayRange {
            start,
            end,
            day,
        })
    })();
    (day, range)
}

/// Prices calls and keeps aggregates; thread-safe (`&self` everywhere).
///
/// ```
/// use perf_cost::{Catalog, CostTracker, GroupBy, Usage, UsageEvent, Usd};
///
/// let tracker = CostTracker::new(Catalog::builtin().unwrap());
/// let cost = tracker
///     .track(UsageEvent::new("gpt-4o-mini", Usage::new(1_000_000, 0)).user("alice"))
///     .unwrap();
/// assert_eq!(cost, Usd::from_cents(15));
/// let by_user = tracker.totals_by(GroupBy::User, None);
/// assert_eq!(by_user["alice"].cost, cost);
/// ```
#[derive(Debug)]
pub struct CostTracker {
    catalog: Catalog,
    clock: SharedClock,
    tz: Tz,
    capacity: usize,
    state: Mutex<State>,
}

impl CostTracker {
    /// A tracker on the system clock, UTC days, 10,000 events of history.
    pub fn new(catalog: Catalog) -> Self {
        Self::with_options(catalog, system_clock(), Tz::UTC, 10_000)
    }

    /// A tracker with explicit clock, day time zone and history capacity.
    pub fn with_options(
        catalog: Catalog,
        clock: SharedClock,
        tz: Tz,
        history_capacity: usize,
    ) -> Self {
        Self {
            catalog,
            clock,
            tz,
            capacity: history_capacity,
            state: Mutex::new(State {
                names: Names::default(),
                cells: FxHashMap::default(),
                history: VecDeque::with_capacity(history_capacity.min(65_536)),
                total: Totals::default(),
                today: None,
            }),
        }
    }

    /// The catalog used for prices.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The time zone of days.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Records a call and returns its cost. Unknown models are an error (nothing is recorded)
    /// unless the catalog has a fallback.
    #[allow(clippy::too_many_arguments)]
    pub fn track_usage(
        &self,
        model: &str,
        input: u64,
        output: u64,
        cached: u64,
        user: Option<&str>,
        pipeline: Option<&str>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Usd, CostError> {
        self.track(UsageEvent {
            model: model.to_owned(),
            usage: Usage {
                input,
                output,
                cached_input: cached,
                ..Usage::default()
            },
            user: user.map(str::to_owned),
            pipeline: pipeline.map(str::to_owned),
            metadata,
            prompt_hash: None,
        })
    }

    /// Records an event and returns its cost.
    pub fn track(&self, event: UsageEvent) -> Result<Usd, CostError> {
        let cost = self.catalog.cost(&event.model, &event.usage)?;
        let at: DateTime<Utc> = self.clock.system_now().into();
        let prompt_hash = event
            .prompt_hash
            .map(|h| blake3::Hash::from(h).to_hex().to_string());
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let day = match st.today {
            Some(r) if r.start <= at && at < r.end => r.day,
            _ => {
                let (day, range) = local_day(self.tz, at);
                st.today = range;
                day
            }
        };
        let key = (
            day,
            st.names.id(&event.model),
            st.names.id(event.user.as_deref().unwrap_or("-")),
            st.names.id(event.pipeline.as_deref().unwrap_or("-")),
        );
        st.cells.entry(key).or_default().add(&event.usage, cost);
        st.total.add(&event.usage, cost);
        if self.capacity > 0 {
            let recorded = Recorded {
                at,
                day,
                model: event.model,
                usage: event.usage,
                user: event.user,
                pipeline: event.pipeline,
                metadata: event.metadata,
                prompt_hash,
                cost,
            };
            let evicted = if st.history.len() == self.capacity {
                st.history.pop_front()
            } else {
                None
            };
            st.history.push_back(recorded);
            drop(st);
            // The evicted event's strings are freed outside the lock.
            drop(evicted);
        }
        Ok(cost)
    }

    /// Totals of everything recorded.
    pub fn total(&self) -> Totals {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Totals grouped by one dimension, optionally only for days in `days` (inclusive).
    pub fn totals_by(
        &self,
        group: GroupBy,
        days: Option<(NaiveDate, NaiveDate)>,
    ) -> BTreeMap<String, Totals> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: BTreeMap<String, Totals> = BTreeMap::new();
        for (&(day, model, user, pipeline), t) in &st.cells {
            if let Some((from, to)) = days {
                if day < from || day > to {
                    continue;
                }
            }
            let name = |id| st.names.name(id);
            let e = match group {
                GroupBy::Model => out.entry(name(model).to_owned()),
                GroupBy::User => out.entry(name(user).to_owned()),
                GroupBy::Pipeline => out.entry(name(pipeline).to_owned()),
                GroupBy::Day => out.entry(day.to_string()),
            }
            .or_default();
            e.calls += t.calls;
            e.input_tokens += t.input_tokens;
            e.output_tokens += t.output_tokens;
            e.cached_input_tokens += t.cached_input_tokens;
            e.cost += t.cost;
        }
        out
    }

    /// The aggregate cells `(day, model, user, pipeline) -> totals`, sorted.
    pub fn cells(&self) -> Vec<((NaiveDate, String, String, String), Totals)> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let name = |id| st.names.name(id).to_owned();
        let mut v: Vec<_> = st
            .cells
            .iter()
            .map(|(&(day, m, u, p), t)| ((day, name(m), name(u), name(p)), *t))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// A copy of the history, oldest first.
    pub fn history(&self) -> Vec<Recorded> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.history.iter().cloned().collect()
    }

    /// Number of events in the history (at most the capacity).
    pub fn history_len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .history
            .len()
    }
}
