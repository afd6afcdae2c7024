//! Unique names for Redis key prefixes and PostgreSQL schemas, so parallel tests never collide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest identifier PostgreSQL keeps without truncation.
const MAX_LEN: usize = 63;

/// A name unique across processes and parallel tests: `t_<prefix>_<pid>_<counter>_<hex>`.
///
/// The result is lowercase `[a-z0-9_]`, starts with a letter and has at most 63 characters, so
/// it is valid both as a Redis key prefix and as an unquoted PostgreSQL schema or table name.
/// The prefix is lowercased, other characters become `_`, and it is shortened to fit. The hex
/// part hashes the time, pid and counter, so names from a rerun do not repeat those of a run
/// whose data was left behind.
///
/// ```
/// let a = perf_testkit::unique_name("Cache Tests");
/// let b = perf_testkit::unique_name("Cache Tests");
/// assert_ne!(a, b);
/// assert!(a.starts_with("t_cache_tests_"));
/// assert!(a.len() <= 63);
/// assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
/// ```
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&pid.to_le_bytes());
    hasher.update(&count.to_le_bytes());
    let hash = hasher.finalize();
    let hex: String = hash.as_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let suffix = format!("_{pid}_{count}_{hex}");

    let mut clean: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Collapse runs of `_` and trim them at the ends, so "a::b" becomes "a_b".
    while clean.contains("__") {
        clean = clean.replace("__", "_");
    }
    let clean = clean.trim_matches('_');
    let room = MAX_LEN - "t_".len() - suffix.len();
    let clean: String = clean.chars().take(room).collect();
    let clean = clean.trim_end_matches('_');
    if clean.is_empty() {
        format!("t{suffix}")
    } else {
        format!("t_{clean}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::unique_name;
    use std::collections::HashSet;

    fn valid(name: &str) -> bool {
        name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    #[test]
    fn names_are_valid_for_odd_prefixes() {
        for prefix in [
            "",
            "___",
            "perf_cache::tests::roundtrip",
            "ÜNICODE ✓ name",
            "9starts_with_digit",
            &"x".repeat(200),
        ] {
            let name = unique_name(prefix);
            assert!(valid(&name), "{name:?} from {prefix:?}");
        }
        assert!(unique_name("a::b").starts_with("t_a_b_"));
    }

    #[test]
    fn names_are_unique_across_threads() {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..500).map(|_| unique_name("p")).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for name in h.join().unwrap() {
                assert!(seen.insert(name.clone()), "duplicate {name}");
            }
        }
        assert_eq!(seen.len(), 4000);
    }
}
