//! Reproducible pseudo-random data for tests and benchmarks without a dependency: xorshift64*
//! numbers, and the LCG text that perf-cost's golden data (`make_golden.py`) is generated from.

/// xorshift64*: a small, fast, reproducible generator. Not for anything that must be
/// unpredictable.
///
/// ```
/// use perf_testkit::XorShift;
///
/// let (mut a, mut b) = (XorShift::new(7), XorShift::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// assert!((0.0..1.0).contains(&a.unit()));
/// ```
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed`; a zero seed (which xorshift would never leave) is replaced by a
    /// fixed odd constant.
    ///
    /// ```
    /// assert_ne!(perf_testkit::XorShift::new(0).next_u64(), 0);
    /// ```
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// let mut r = perf_testkit::XorShift::new(1);
    /// assert_ne!(r.next_u64(), r.next_u64());
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is irrelevant for tests).
    ///
    /// ```
    /// assert!(perf_testkit::XorShift::new(3).below(5) < 5);
    /// ```
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// An index in `0..len` (`len` > 0).
    ///
    /// ```
    /// assert!(perf_testkit::XorShift::new(3).index(4) < 4);
    /// ```
    pub fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len as u64) as usize
    }

    /// One element of a non-empty slice.
    ///
    /// ```
    /// let mut r = perf_testkit::XorShift::new(5);
    /// assert!([1, 2, 3].contains(r.pick(&[1, 2, 3])));
    /// ```
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// A float in `[0, 1)` with 53 random bits.
    ///
    /// ```
    /// let u = perf_testkit::XorShift::new(9).unit();
    /// assert!((0.0..1.0).contains(&u));
    /// ```
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` characters of `alphabet` from a 64-bit LCG: the `pseudo_random` generator of perf-cost's
/// golden token counts (`crates/perf-cost/tests/data/make_golden.py`), so Rust and Python build
/// the same text.
///
/// ```
/// let text = perf_testkit::lcg_text("ab", 8, 1);
/// assert_eq!(text.chars().count(), 8);
/// assert!(text.chars().all(|c| c == 'a' || c == 'b'));
/// ```
pub fn lcg_text(alphabet: &str, n: usize, seed: u64) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            chars[((x >> 33) % chars.len() as u64) as usize]
        })
        .collect()
}
