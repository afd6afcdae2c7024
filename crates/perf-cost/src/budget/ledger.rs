//! The `Ledger` trait (where spend and reservations live) and its in-process implementation.
//!
//! A ledger holds, per line (`scope|period`, such as `user:alice|day:2026-11-21`), the committed
//! `spent` and the outstanding `reserved` amounts, plus the reservations themselves with their
//! expiry. Reserving is atomic over all lines of a call: either every line has room and all are
//! charged, or none is. Expired reservations are released before any check, so a crashed worker's
//! reservation frees its room once the TTL passes. Times are passed in by the caller (milliseconds
//! since the Unix epoch from the budget manager's clock), so tests drive expiry with a manual clock.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::CostError;
use crate::money::Usd;

/// One budget line a reservation touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRequest {
    /// `scope|period`.
    pub key: String,
    /// The budget's limit on this line.
    pub limit: Usd,
}

/// An atomic reservation request over several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// Unique reservation id.
    pub id: String,
    /// Lines to charge.
    pub lines: Vec<LineRequest>,
    /// Amount to reserve on every line.
    pub amount: Usd,
    /// The caller's current time, ms since the Unix epoch.
    pub now_ms: i64,
    /// When the reservation expires, ms since the Unix epoch.
    pub expires_at_ms: i64,
    /// Refuse when a line would exceed its limit (`false`: record, never refuse).
    pub enforce: bool,
}

/// The state of a line as the ledger saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineState {
    /// `scope|period`.
    pub key: String,
    /// Committed spend.
    pub spent: Usd,
    /// Outstanding reservations.
    pub reserved: Usd,
    /// The limit the check used.
    pub limit: Usd,
}

/// Result of a reservation attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReserveOutcome {
    /// Reserved on every line; the states are those seen *before* this reservation was added.
    Granted {
        /// Line states before the reservation.
        seen: Vec<LineState>,
    },
    /// Refused: this line had `spent + reserved + amount > limit` at the moment of the check.
    Refused {
        /// The line that had no room, as seen.
        seen: LineState,
    },
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The lines' states after the commit.
    pub lines: Vec<LineState>,
    /// Whether the reservation still existed. `false` means it had expired (or was released)
    /// and its room may have been given to another call: the spend is recorded anyway, and can
    /// take a line over its limit. Choose a TTL longer than the slowest call.
    pub reservation_found: bool,
}

/// Storage of spend and reservations; implementations must make `reserve` atomic across lines
/// and across every process that shares the ledger.
#[async_trait]
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Releases expired reservations, then reserves `amount` on every line if all have room (or
    /// `enforce` is false).
    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveOutcome, CostError>;

    /// Ends reservation `id` (if it still exists) and adds `actual` to the spend of `lines`;
    /// returns the lines' states afterwards. Spend is recorded even when the reservation had
    /// already expired: the call happened.
    async fn commit(
        &self,
        id: &str,
        lines: &[LineRequest],
        actual: Usd,
        now_ms: i64,
    ) -> Result<Committed, CostError>;

    /// Releases reservation `id` without spend; `false` when it no longer existed.
    async fn release(&self, id: &str, now_ms: i64) -> Result<bool, CostError>;

    /// Moves the expiry of reservation `id` to `expires_at_ms` (a lease renewal for a call that
    /// runs longer than the TTL); `false` when the reservation no longer exists (released, or
    /// expired and swept: its room may already be reused). A reservation that has expired but
    /// was not swept yet still holds its room, so extending it is safe.
    ///
    /// The default implementation cannot extend and returns `false`; the ledgers of this crate
    /// all override it.
    async fn extend(&self, id: &str, expires_at_ms: i64) -> Result<bool, CostError> {
        let _ = (id, expires_at_ms);
        Ok(false)
    }

    /// Releases every reservation expired at `now_ms`; returns how many.
    async fn sweep(&self, now_ms: i64) -> Result<u64, CostError>;

    /// Records that `threshold` fired on `line`; `true` only for the first caller (fleet-wide).
    async fn mark_alert(&self, line: &str, threshold: u32) -> Result<bool, CostError>;

    /// Current state of one line (`limit` is reported as zero).
    async fn line_state(&self, key: &str) -> Result<LineState, CostError>;

    /// Number of reservations still held (expired ones included until swept).
    async fn outstanding(&self) -> Result<u64, CostError>;
}

#[derive(Debug, Default)]
struct Line {
    spent: i64,
    reserved: i64,
}

#[derive(Debug)]
struct Held {
    lines: Vec<String>,
    amount: i64,
    expires_at_ms: i64,
}

#[derive(Debug, Default)]
struct MemState {
    lines: HashMap<String, Line>,
    held: HashMap<String, Held>,
    by_expiry: BTreeSet<(i64, String)>,
    alerts: HashSet<(String, u32)>,
}

impl MemState {
    fn sweep(&mut self, now_ms: i64) -> u64 {
        let mut n = 0;
        while let Some((at, _)) = self.by_expiry.first() {
            if *at > now_ms {
                break;
            }
            if let Some((_, id)) = self.by_expiry.pop_first() {
                if self.drop_held(&id) {
                    n += 1;
                }
            }
        }
        n
    }

    fn drop_held(&mut self, id: &str) -> bool {
        match self.held.remove(id) {
            Some(h) => {
                for key in &h.lines {
                    if let Some(line) = self.lines.get_mut(key) {
                        line.reserved -= h.amount;
                    }
                }
                self.by_expiry.remove(&(h.expires_at_ms, id.to_owned()));
                true
            }
            None => false,
        }
    }

    fn state(&self, key: &str, limit: Usd) -> LineState {
        let line = self.lines.get(key);
        LineState {
            key: key.to_owned(),
            spent: Usd::from_nanos(line.map_or(0, |l| l.spent)),
            reserved: Usd::from_nanos(line.map_or(0, |l| l.reserved)),
            limit,
        }
    }
}

/// A ledger in this process's memory: budgets hold across the threads and tasks of one process.
///
/// ```
/// # tokio_test_block(async {
/// use perf_cost::{InMemoryLedger, Ledger, LineRequest, ReserveOutcome, ReserveRequest, Usd};
/// let ledger = InMemoryLedger::new();
/// let line = LineRequest { key: "global|total".into(), limit: Usd::from_cents(100) };
/// let req = |id: &str, cents| ReserveRequest {
///     id: id.into(), lines: vec![line.clone()], amount: Usd::from_cents(cents),
///     now_ms: 0, expires_at_ms: 60_000, enforce: true,
/// };
/// assert!(matches!(ledger.reserve(&req("a", 60)).await.unwrap(), ReserveOutcome::Granted { .. }));
/// assert!(matches!(ledger.reserve(&req("b", 60)).await.unwrap(), ReserveOutcome::Refused { .. }));
/// // After the first reservation expires, the room is back.
/// assert_eq!(ledger.sweep(60_000).await.unwrap(), 1);
/// assert!(matches!(ledger.reserve(&req("c", 60)).await.unwrap(), ReserveOutcome::Granted { .. }));
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct InMemoryLedger {
    state: Mutex<MemState>,
}

impl InMemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Ledger for InMemoryLedger {
    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveOutcome, CostError> {
        let mut st = self.lock();
        st.sweep(request.now_ms);
        let amount = request.amount.nanos();
        let mut seen = Vec::with_capacity(request.lines.len());
        for line in &request.lines {
            let s = st.state(&line.key, line.limit);
            let after =
                i128::from(s.spent.nanos()) + i128::from(s.reserved.nanos()) + i128::from(amount);
            if request.enforce && after > i128::from(line.limit.nanos()) {
                return Ok(ReserveOutcome::Refused { seen: s });
            }
            seen.push(s);
        }
        for line in &request.lines {
            st.lines.entry(line.key.clone()).or_default().reserved += amount;
        }
        st.held.insert(
            request.id.clone(),
            Held {
                lines: request.lines.iter().map(|l| l.key.clone()).collect(),
                amount,
                expires_at_ms: request.expires_at_ms,
            },
        );
        st.by_expiry
            .insert((request.expires_at_ms, request.id.clone()));
        Ok(ReserveOutcome::Granted { seen })
    }

    async fn commit(
        &self,
        id: &str,
        lines: &[LineRequest],
        actual: Usd,
        now_ms: i64,
    ) -> Result<Committed, CostError> {
        let mut st = self.lock();
        let reservation_found = st.drop_held(id);
        st.sweep(now_ms);
        for line in lines {
            st.lines.entry(line.key.clone()).or_default().spent += actual.nanos();
        }
        Ok(Committed {
            lines: lines.iter().map(|l| st.state(&l.key, l.limit)).collect(),
            reservation_found,
        })
    }

    async fn release(&self, id: &str, now_ms: i64) -> Result<bool, CostError> {
        let mut st = self.lock();
        let found = st.drop_held(id);
        st.sweep(now_ms);
        Ok(found)
    }

    async fn extend(&self, id: &str, expires_at_ms: i64) -> Result<bool, CostError> {
        let mut st = self.lock();
        let Some(held) = st.held.get_mut(id) else {
            return Ok(false);
        };
        let before = std::mem::replace(&mut held.expires_at_ms, expires_at_ms);
        st.by_expiry.remove(&(before, id.to_owned()));
        st.by_expiry.insert((expires_at_ms, id.to_owned()));
        Ok(true)
    }

    async fn sweep(&self, now_ms: i64) -> Result<u64, CostError> {
        Ok(self.lock().sweep(now_ms))
    }

    async fn mark_alert(&self, line: &str, threshold: u32) -> Result<bool, CostError> {
        Ok(self.lock().alerts.insert((line.to_owned(), threshold)))
    }

    async fn line_state(&self, key: &str) -> Result<LineState, CostError> {
        Ok(self.lock().state(key, Usd::ZERO))
    }

    async fn outstanding(&self) -> Result<u64, CostError> {
        Ok(self.lock().held.len() as u64)
    }
}
