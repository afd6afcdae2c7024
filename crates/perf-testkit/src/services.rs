//! The environment contract for shared test servers: `REDIS_URL`, `DATABASE_URL` and the
//! skip-or-fail policy switched by `PERFKIT_REQUIRE_SERVICES`.

use std::io::Write;
use std::time::Duration;

use crate::support::{host_port, redact_url, tcp_reachable};

/// Name of the variable holding the Redis URL, e.g. `redis://127.0.0.1:6379`.
pub const REDIS_URL_VAR: &str = "REDIS_URL";
/// Name of the variable holding the PostgreSQL URL, e.g. `postgres://postgres@127.0.0.1:5432/test`.
pub const DATABASE_URL_VAR: &str = "DATABASE_URL";
/// Name of the variable that turns "skip" into "fail" when a service is missing. `cargo xtask
/// test` sets it to `1`.
pub const REQUIRE_SERVICES_VAR: &str = "PERFKIT_REQUIRE_SERVICES";

/// How long a reachability probe waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Whether missing services must fail tests (`PERFKIT_REQUIRE_SERVICES=1`, or `true`/`yes`).
///
/// ```
/// let _strict: bool = perf_testkit::require_services();
/// ```
pub fn require_services() -> bool {
    std::env::var(REQUIRE_SERVICES_VAR)
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// The URL of the shared Redis server, or `None` (after printing why) when the test should be
/// skipped.
///
/// Reads `REDIS_URL` and checks that something accepts TCP connections at its host and port.
/// When the variable is unset or the server unreachable, this panics if
/// `PERFKIT_REQUIRE_SERVICES=1`, and otherwise prints
/// `skipped: <test> needs Redis (...); run `cargo xtask test`` to stderr and returns `None`.
/// The skip line is written to the process's stderr directly, not through `eprintln!`, so the
/// test harness's output capture does not hide it.
///
/// ```
/// match perf_testkit::redis_url() {
///     Some(url) => assert!(url.starts_with("redis")),
///     None => { /* skipped, and said so on stderr */ }
/// }
/// ```
///
/// # Panics
///
/// When `PERFKIT_REQUIRE_SERVICES=1` and Redis is not configured or not reachable.
pub fn redis_url() -> Option<String> {
    service_url(REDIS_URL_VAR, "Redis")
}

/// The URL of the shared PostgreSQL server, or `None` (after printing why) when the test should
/// be skipped. Same policy as [`redis_url`], for `DATABASE_URL`.
///
/// ```
/// if let Some(url) = perf_testkit::database_url() {
///     assert!(url.starts_with("postgres"));
/// }
/// ```
///
/// # Panics
///
/// When `PERFKIT_REQUIRE_SERVICES=1` and PostgreSQL is not configured or not reachable.
pub fn database_url() -> Option<String> {
    service_url(DATABASE_URL_VAR, "PostgreSQL")
}

fn service_url(var: &str, what: &str) -> Option<String> {
    let problem = match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => {
            let url = url.trim().to_string();
            match host_port(&url) {
                Some((host, port)) if tcp_reachable(&host, port, PROBE_TIMEOUT) => {
                    return Some(url)
                }
                Some((host, port)) => format!(
                    "{var}={} is not reachable at {host}:{port}",
                    redact_url(&url)
                ),
                None => format!("{var}={} is not a URL with a TCP host", redact_url(&url)),
            }
        }
        _ => format!("{var} is not set"),
    };
    if require_services() {
        panic!(
            "{problem} but {REQUIRE_SERVICES_VAR}=1; run `cargo xtask services up` and export \
             the URLs it prints, or run the tests with `cargo xtask test`"
        );
    }
    skip_notice(&format!("needs {what} ({problem}); run `cargo xtask test`"));
    None
}

/// The current test's name as libtest sets it on the thread, or `"this test"`.
pub(crate) fn current_test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

/// Prints `skipped: <test> <reason>` straight to stderr, bypassing libtest's capture.
pub(crate) fn skip_notice(reason: &str) {
    let line = format!("skipped: {} {reason}\n", current_test_name());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Expands to the Redis URL, or returns from the enclosing function when the test must be
/// skipped (see [`redis_url`](crate::redis_url)). Pass a value to return it instead of `()`,
/// e.g. `require_redis!(Ok(()))` in a test returning `Result`.
///
/// ```
/// fn my_test() {
///     let url: String = perf_testkit::require_redis!();
///     assert!(url.starts_with("redis"));
/// }
/// my_test();
/// ```
#[macro_export]
macro_rules! require_redis {
    () => {
        match $crate::redis_url() {
            ::core::option::Option::Some(url) => url,
            ::core::option::Option::None => return,
        }
    };
    ($ret:expr) => {
        match $crate::redis_url() {
            ::core::option::Option::Some(url) => url,
            ::core::option::Option::None => return $ret,
        }
    };
}

/// Expands to the PostgreSQL URL, or returns from the enclosing function when the test must be
/// skipped (see [`database_url`](crate::database_url)). Pass a value to return it instead of
/// `()`.
///
/// ```
/// fn my_test() -> Result<(), String> {
///     let url: String = perf_testkit::require_postgres!(Ok(()));
///     assert!(url.starts_with("postgres"));
///     Ok(())
/// }
/// my_test().unwrap();
/// ```
#[macro_export]
macro_rules! require_postgres {
    () => {
        match $crate::database_url() {
            ::core::option::Option::Some(url) => url,
            ::core::option::Option::None => return,
        }
    };
    ($ret:expr) => {
        match $crate::database_url() {
            ::core::option::Option::Some(url) => url,
            ::core::option::Option::None => return $ret,
        }
    };
}
