//! `BudgetManager`: configuration, reserve/commit enforcement and once-per-period alerts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use perf_core::clock::{system_clock, SharedClock};
use perf_core::config::CostConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::ledger::{
    Committed, InMemoryLedger, Ledger, LineRequest, LineState, ReserveOutcome, ReserveRequest,
};
use super::period::{Budget, BudgetScope, Period};
use crate::error::CostError;
use crate::money::Usd;

/// Budgets, thresholds, the per-request cap and the time settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// `false`: usage is tracked and alerts fire, but nothing is refused (rollback switch).
    pub enabled: bool,
    /// The budgets.
    pub budgets: Vec<Budget>,
    /// Alert thresholds in percent, ascending.
    pub thresholds: Vec<u32>,
    /// Largest estimate allowed without explicit approval.
    pub per_request_cap: Option<Usd>,
    /// Time zone of calendar periods.
    pub time_zone: Tz,
    /// How long an uncommitted reservation holds its room.
    pub reservation_ttl: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            budgets: Vec::new(),
            thresholds: vec![80, 90, 100],
            per_request_cap: Some(Usd::from_cents(100)),
            time_zone: Tz::UTC,
            reservation_ttl: Duration::from_secs(300),
        }
    }
}

impl BudgetConfig {
    /// Adds a budget.
    pub fn budget(mut self, scope: BudgetScope, period: Period, limit: Usd) -> Self {
        self.budgets.push(Budget::new(scope, period, limit));
        self
    }

    /// Sets the per-request cap (`None`: no cap).
    pub fn per_request_cap(mut self, cap: Option<Usd>) -> Self {
        self.per_request_cap = cap;
        self
    }

    /// Sets the time zone.
    pub fn time_zone(mut self, tz: Tz) -> Self {
        self.time_zone = tz;
        self
    }

    /// Sets the alert thresholds (percent, ascending).
    pub fn thresholds(mut self, thresholds: Vec<u32>) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Sets the reservation TTL.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// Sets the enforcement switch.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Reads `perf.toml`'s `[cost]` section: its global budgets, thresholds, cap, time zone, TTL
    /// and `enabled` switch.
    ///
    /// ```
    /// use perf_core::config::CostConfig;
    /// use perf_cost::BudgetConfig;
    /// let mut section = CostConfig::default();
    /// section.daily_budget_usd = Some(25.0);
    /// section.timezone = "Europe/Berlin".into();
    /// let cfg = BudgetConfig::from_config(&section).unwrap();
    /// assert_eq!(cfg.budgets.len(), 1);
    /// assert_eq!(cfg.time_zone, chrono_tz::Europe::Berlin);
    /// ```
    pub fn from_config(section: &CostConfig) -> Result<Self, CostError> {
        let bad = |field: &str, reason: String| CostError::Config {
            field: format!("cost.{field}"),
            reason,
        };
        let dollars = |field: &str, v: f64| {
            Usd::from_dollars_f64(v)
                .filter(|u| u.nanos() >= 0)
                .ok_or_else(|| bad(field, format!("{v} is not a valid amount of dollars")))
        };
        let mut cfg = Self {
            enabled: section.enabled,
            thresholds: section.alert_thresholds_percent.clone(),
            time_zone: section
                .timezone
                .parse()
                .map_err(|e| bad("timezone", format!("{:?}: {e}", section.timezone)))?,
            reservation_ttl: Duration::from_secs(section.reservation_ttl_secs),
            per_request_cap: section
                .per_request_cap_usd
                .map(|v| dollars("per_request_cap_usd", v))
                .transpose()?,
            budgets: Vec::new(),
        };
        for (field, value, period) in [
            ("daily_budget_usd", section.daily_budget_usd, Period::Daily),
            (
                "weekly_budget_usd",
                section.weekly_budget_usd,
                Period::Weekly,
            ),
            (
                "monthly_budget_usd",
                section.monthly_budget_usd,
                Period::Monthly,
            ),
            ("total_budget_usd", section.total_budget_usd, Period::Total),
        ] {
            if let Some(v) = value {
                cfg.budgets
                    .push(Budget::new(BudgetScope::Global, period, dollars(field, v)?));
            }
        }
        if cfg.thresholds.windows(2).any(|w| w[0] >= w[1]) || cfg.thresholds.contains(&0) {
            return Err(bad(
                "alert_thresholds_percent",
                "must be positive and strictly ascending".into(),
            ));
        }
        Ok(cfg)
    }
}

/// A budget threshold crossed for the first time in its period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// `global`, `user:<name>` or `pipeline:<name>`.
    pub scope: String,
    /// `day:…`, `week:…`, `month:…` or `total`.
    pub period: String,
    /// The threshold in percent.
    pub threshold: u32,
    /// Committed spend when it fired.
    pub spent: Usd,
    /// The budget limit.
    pub limit: Usd,
}

/// What a call asks to reserve.
#[derive(Debug, Clone, Default)]
pub struct SpendRequest {
    /// The user the call is for.
    pub user: Option<String>,
    /// The pipeline making the call.
    pub pipeline: Option<String>,
    /// Worst-case cost: counted input plus the requested maximum output, priced.
    pub estimate: Usd,
    /// Explicit approval to exceed the per-request cap.
    pub approved_over_cap: bool,
}

impl SpendRequest {
    /// A request for `estimate`.
    pub fn new(estimate: Usd) -> Self {
        Self {
            estimate,
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

    /// Approves an estimate above the per-request cap.
    pub fn approve_over_cap(mut self) -> Self {
        self.approved_over_cap = true;
        self
    }
}

/// Room held for one call; pass it to [`BudgetManager::commit`] or [`BudgetManager::release`].
/// Dropping it without either leaves the room held until the TTL passes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "commit or release the reservation, or its room stays held until it expires"]
pub struct Reservation {
    id: String,
    lines: Vec<LineRequest>,
    amount: Usd,
    expires_at_ms: i64,
    seen: Vec<LineState>,
}

impl Reservation {
    /// Unique id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The reserved amount.
    pub fn amount(&self) -> Usd {
        self.amount
    }

    /// When it expires (ms since the Unix epoch).
    pub fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }

    /// The lines' states the ledger saw when it granted the reservation.
    pub fn seen(&self) -> &[LineState] {
        &self.seen
    }
}

type Callback = Arc<dyn Fn(&Alert) + Send + Sync>;

/// Enforces budgets over a [`Ledger`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use perf_cost::{BudgetConfig, BudgetManager, BudgetScope, CostError, Period, SpendRequest, Usd};
///
/// let config = BudgetConfig::default().budget(BudgetScope::Global, Period::Daily, Usd::from_cents(100));
/// let budgets = BudgetManager::in_memory(config);
/// let r = budgets.reserve(&SpendRequest::new(Usd::from_cents(70))).await.unwrap();
/// budgets.commit(r, Usd::from_cents(60)).await.unwrap();
/// let refused = budgets.reserve(&SpendRequest::new(Usd::from_cents(50))).await;
/// assert!(matches!(refused, Err(CostError::BudgetExceeded { .. })));
/// # });
/// ```
pub struct BudgetManager {
    config: BudgetConfig,
    ledger: Arc<dyn Ledger>,
    clock: SharedClock,
    instance: String,
    seq: AtomicU64,
    callbacks: Mutex<Vec<Callback>>,
    channels: Mutex<Vec<mpsc::UnboundedSender<Alert>>>,
}

impl std::fmt::Debug for BudgetManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetManager")
            .field("config", &self.config)
            .field("ledger", &self.ledger)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl BudgetManager {
    /// A manager over `ledger`, on `clock`.
    pub fn new(config: BudgetConfig, ledger: Arc<dyn Ledger>, clock: SharedClock) -> Self {
        // Reservation ids must be unique across processes sharing a ledger: a hash of the pid,
        // the wall time and this value's address, plus a counter.
        let mut h = blake3::Hasher::new();
        h.update(&std::process::id().to_le_bytes());
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.update(&nanos.to_le_bytes());
        let marker = 0u8;
        h.update(&(std::ptr::addr_of!(marker) as usize).to_le_bytes());
        let instance = h.finalize().to_hex()[..16].to_owned();
        Self {
            config,
            ledger,
            clock,
            instance,
            seq: AtomicU64::new(0),
            callbacks: Mutex::new(Vec::new()),
            channels: Mutex::new(Vec::new()),
        }
    }

    /// A manager with an in-process ledger on the system clock.
    pub fn in_memory(config: BudgetConfig) -> Self {
        Self::new(config, Arc::new(InMemoryLedger::new()), system_clock())
    }

    /// The configuration.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Calls `f` for every alert (on the task that committed the spend; keep it short).
    pub fn on_alert(&self, f: impl Fn(&Alert) + Send + Sync + 'static) {
        self.callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(f));
    }

    /// A channel that receives every alert.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Alert> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    fn now(&self) -> (DateTime<Utc>, i64) {
        let at: DateTime<Utc> = self.clock.system_now().into();
        (at, at.timestamp_millis())
    }

    /// The ledger lines (with limits) that apply to a call at time `at`.
    fn lines_for(
        &self,
        user: Option<&str>,
        pipeline: Option<&str>,
        at: DateTime<Utc>,
    ) -> Vec<LineRequest> {
        let mut lines: Vec<LineRequest> = self
            .config
            .budgets
            .iter()
            .filter_map(|b| {
                b.scope.key_for(user, pipeline).map(|scope| LineRequest {
                    key: format!("{scope}|{}", b.period.key(at, self.config.time_zone)),
                    limit: b.limit,
                })
            })
            .collect();
        // Two budgets on the same line keep the tighter limit; sorted keys give every ledger a
        // fixed lock order.
        lines.sort_by(|a, b| a.key.cmp(&b.key).then(a.limit.cmp(&b.limit)));
        lines.dedup_by(|later, first| later.key == first.key);
        lines
    }

    /// Holds `request.estimate` on every applicable budget, or refuses with a typed error:
    /// [`CostError::PerRequestCap`] above the cap without approval, [`CostError::BudgetExceeded`]
    /// when a budget has no room (with the state the ledger saw). With `enabled = false`, nothing
    /// is refused.
    pub async fn reserve(&self, request: &SpendRequest) -> Result<Reservation, CostError> {
        if self.config.enabled && !request.approved_over_cap {
            if let Some(cap) = self.config.per_request_cap {
                if request.estimate > cap {
                    return Err(CostError::PerRequestCap {
                        requested: request.estimate,
                        cap,
                    });
                }
            }
        }
        let (at, now_ms) = self.now();
        let lines = self.lines_for(request.user.as_deref(), request.pipeline.as_deref(), at);
        let ttl_ms = i64::try_from(self.config.reservation_ttl.as_millis()).unwrap_or(i64::MAX);
        let id = format!(
            "{}-{}",
            self.instance,
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let req = ReserveRequest {
            id,
            lines,
            amount: request.estimate,
            now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            enforce: self.config.enabled,
        };
        match self.ledger.reserve(&req).await? {
            ReserveOutcome::Granted { seen } => Ok(Reservation {
                id: req.id,
                lines: req.lines,
                amount: req.amount,
                expires_at_ms: req.expires_at_ms,
                seen,
            }),
            ReserveOutcome::Refused { seen } => {
                let (scope, period) = seen.key.split_once('|').unwrap_or((&seen.key, ""));
                Err(CostError::BudgetExceeded {
                    scope: scope.to_owned(),
                    period: period.to_owned(),
                    spent: seen.spent,
                    reserved: seen.reserved,
                    requested: request.estimate,
                    limit: seen.limit,
                })
            }
        }
    }

    /// Records the actual cost of a reserved call, releases the reservation, and fires the alerts
    /// whose thresholds the spend crossed for the first time in the period. Returns the lines'
    /// states after the commit, and whether the reservation was still held (see
    /// [`Committed::reservation_found`]).
    pub async fn commit(
        &self,
        reservation: Reservation,
        actual: Usd,
    ) -> Result<Committed, CostError> {
        let (_, now_ms) = self.now();
        let done = self
            .ledger
            .commit(&reservation.id, &reservation.lines, actual, now_ms)
            .await?;
        if !done.reservation_found {
            tracing::warn!(
                reservation = %reservation.id,
                "committed a reservation that had expired; its room may have been reused (raise the TTL)"
            );
        }
        self.check_alerts(&done.lines).await?;
        Ok(done)
    }

    /// Records spend that was not reserved (such as a call made while budgets were off).
    pub async fn record(
        &self,
        user: Option<&str>,
        pipeline: Option<&str>,
        actual: Usd,
    ) -> Result<Vec<LineState>, CostError> {
        let (at, now_ms) = self.now();
        let lines = self.lines_for(user, pipeline, at);
        let after = self.ledger.commit("", &lines, actual, now_ms).await?.lines;
        self.check_alerts(&after).await?;
        Ok(after)
    }

    /// Renews a reservation for a call that runs longer than expected: its expiry becomes now
    /// plus the configured TTL (never earlier than it was). Call it periodically (well within
    /// the TTL) while a long call runs, so its commit finds the reservation. `false` when the
    /// reservation had already expired and been swept (its room may have been reused: the commit
    /// will still record the spend, and report `reservation_found: false`).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use perf_cost::{BudgetConfig, BudgetManager, SpendRequest, Usd};
    /// let budgets = BudgetManager::in_memory(BudgetConfig::default());
    /// let mut r = budgets.reserve(&SpendRequest::new(Usd::from_cents(5))).await.unwrap();
    /// assert!(budgets.extend(&mut r).await.unwrap());
    /// assert!(budgets.commit(r, Usd::from_cents(4)).await.unwrap().reservation_found);
    /// # });
    /// ```
    pub async fn extend(&self, reservation: &mut Reservation) -> Result<bool, CostError> {
        let (_, now_ms) = self.now();
        let ttl_ms = i64::try_from(self.config.reservation_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = now_ms.saturating_add(ttl_ms).max(reservation.expires_at_ms);
        let found = self.ledger.extend(&reservation.id, expires).await?;
        if found {
            reservation.expires_at_ms = expires;
        }
        Ok(found)
    }

    /// Gives the room back without spend (the call failed or was cancelled before it cost
    /// anything).
    pub async fn release(&self, reservation: Reservation) -> Result<bool, CostError> {
        let (_, now_ms) = self.now();
        self.ledger.release(&reservation.id, now_ms).await
    }

    /// Releases every reservation whose TTL has passed; returns how many. Reserving does this too.
    pub async fn sweep_expired(&self) -> Result<u64, CostError> {
        let (_, now_ms) = self.now();
        self.ledger.sweep(now_ms).await
    }

    /// The state of the line of `scope` (`global`, `user:alice`, ...) for `period` now.
    pub async fn state(&self, scope: &str, period: Period) -> Result<LineState, CostError> {
        let (at, _) = self.now();
        let key = format!("{scope}|{}", period.key(at, self.config.time_zone));
        self.ledger.line_state(&key).await
    }

    async fn check_alerts(&self, lines: &[LineState]) -> Result<(), CostError> {
        for line in lines {
            if line.limit.nanos() <= 0 {
                continue;
            }
            for &t in &self.config.thresholds {
                let crossed = i128::from(line.spent.nanos()) * 100
                    >= i128::from(line.limit.nanos()) * i128::from(t);
                if !crossed {
                    break;
                }
                if self.ledger.mark_alert(&line.key, t).await? {
                    let (scope, period) = line.key.split_once('|').unwrap_or((&line.key, ""));
                    let alert = Alert {
                        scope: scope.to_owned(),
                        period: period.to_owned(),
                        threshold: t,
                        spent: line.spent,
                        limit: line.limit,
                    };
                    tracing::warn!(
                        scope = %alert.scope,
                        period = %alert.period,
                        threshold = t,
                        spent = %alert.spent,
                        limit = %alert.limit,
                        "budget threshold crossed"
                    );
                    let callbacks = self
                        .callbacks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    for cb in callbacks {
                        cb(&alert);
                    }
                    self.channels
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .retain(|tx| tx.send(alert.clone()).is_ok());
                }
            }
        }
        Ok(())
    }
}
