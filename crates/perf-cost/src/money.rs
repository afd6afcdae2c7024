//! Exact money: integer nano-dollars, and prices in micro-dollars per million tokens.
//!
//! Why nano-dollars: one token of gpt-5-nano input costs $0.00000005, i.e. 0.05 micro-dollars, so
//! integer micro-dollars would round a cheap call to zero (or, rounding up, overstate it 20-fold).
//! Prices are stored as micro-dollars per million tokens (`$0.075/M` = 75,000), which is exact for
//! every published price (at most six decimals per million). The cost of `n` tokens at price `p`
//! is `n * p / 1000` nano-dollars, computed in `u128`, **rounded up** to a whole nano-dollar once
//! per priced line (so a budget is never under-charged; the error is below $0.000000001 per line).
//! Sums of costs are exact integer additions, so totals never drift. An `i64` of nano-dollars
//! holds ±$9.2 billion.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::{Deserialize, Serialize};

/// An amount of US dollars, held as integer nano-dollars (10⁻⁹ $).
///
/// ```
/// use perf_cost::Usd;
/// let a = Usd::from_nanos(1_500_000_000);
/// assert_eq!(a.to_string(), "$1.500000000");
/// assert_eq!(a + Usd::from_micros(1), Usd::from_nanos(1_500_001_000));
/// assert_eq!(Usd::from_dollars_f64(0.1).unwrap().nanos(), 100_000_000);
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Usd(i64);

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(0);

    /// From nano-dollars.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// From micro-dollars.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros.saturating_mul(1000))
    }

    /// From whole cents.
    pub const fn from_cents(cents: i64) -> Self {
        Self(cents.saturating_mul(10_000_000))
    }

    /// From a configuration value in dollars (such as `daily_budget_usd = 12.5`), rounded to the
    /// nearest nano-dollar; `None` for NaN, infinite or out-of-range values.
    pub fn from_dollars_f64(dollars: f64) -> Option<Self> {
        let nanos = (dollars * 1e9).round();
        if nanos.is_finite() && nanos.abs() < 9.0e18 {
            Some(Self(nanos as i64))
        } else {
            None
        }
    }

    /// Nano-dollars.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Dollars as a float, for display and export only (never for arithmetic).
    pub fn as_dollars_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// Exact decimal dollars without the sign `$`, such as `1.500000000` (for CSV and JSON).
    pub fn to_decimal_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
    }

    /// Saturating addition.
    pub const fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// Saturating subtraction.
    pub const fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(
            f,
            "{sign}${}.{:09}",
            abs / 1_000_000_000,
            abs % 1_000_000_000
        )
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        self.saturating_add(rhs)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        *self = *self + rhs;
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, rhs: Usd) -> Usd {
        self.saturating_sub(rhs)
    }
}

impl SubAssign for Usd {
    fn sub_assign(&mut self, rhs: Usd) {
        *self = *self - rhs;
    }
}

impl std::iter::Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

/// A price in micro-dollars per million tokens (`$2.50/M` = `2_500_000`).
///
/// ```
/// use perf_cost::{PerMillion, Usd};
/// let p = PerMillion::from_micros(75_000); // $0.075 per million tokens
/// assert_eq!(p.cost(1), Usd::from_nanos(75));
/// assert_eq!(p.cost(1_000_000), Usd::from_micros(75_000));
/// // $0.0375/M: one token is 37.5 nano-dollars, rounded up.
/// assert_eq!(PerMillion::from_micros(37_500).cost(1), Usd::from_nanos(38));
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct PerMillion(u64);

impl PerMillion {
    /// From micro-dollars per million tokens.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Parses a decimal dollar string such as `"0.075"` exactly (no float), at most 6 decimals.
    ///
    /// ```
    /// use perf_cost::PerMillion;
    /// assert_eq!(PerMillion::parse_dollars("2.50"), Some(PerMillion::from_micros(2_500_000)));
    /// assert_eq!(PerMillion::parse_dollars("0.0000001"), None);
    /// ```
    pub fn parse_dollars(s: &str) -> Option<Self> {
        let s = s.trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        if frac.len() > 6
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut frac_micros: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        for _ in frac.len()..6 {
            frac_micros *= 10;
        }
        whole
            .checked_mul(1_000_000)?
            .checked_add(frac_micros)
            .map(Self)
    }

    /// Micro-dollars per million tokens.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// The cost of `tokens` tokens, rounded up to a whole nano-dollar.
    pub fn cost(self, tokens: u64) -> Usd {
        Usd::from_nanos(cost_nanos(&[(tokens, self)]))
    }
}

impl fmt::Display for PerMillion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:06}/M", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Exact cost of several (tokens, price) lines in nano-dollars: the pico-dollar sum, rounded up
/// once.
pub(crate) fn cost_nanos(lines: &[(u64, PerMillion)]) -> i64 {
    let pico: u128 = lines
        .iter()
        .map(|&(tokens, price)| u128::from(tokens) * u128::from(price.0))
        .sum();
    let nanos = pico.div_ceil(1000);
    i64::try_from(nanos).unwrap_or(i64::MAX)
}
