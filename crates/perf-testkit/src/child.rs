//! Running one `#[ignore]`d test of the current test binary in a fresh child process, for tests
//! that must measure something (resident memory, allocations) no other test may disturb, and
//! reading the `MARKER name=value ...` line it prints.

use std::collections::HashMap;
use std::process::Command;

/// The fields of the result line a child test printed.
///
/// ```
/// let r = perf_testkit::ChildResult::parse("noise\nRESULT a=1 b=x\n", "RESULT").unwrap();
/// assert_eq!(r.u64("a"), 1);
/// assert_eq!(r.get("b"), Some("x"));
/// ```
#[derive(Debug, Clone)]
pub struct ChildResult {
    /// The line after the marker, for assertion messages.
    pub line: String,
    fields: HashMap<String, String>,
}

impl ChildResult {
    /// The first line of `stdout` containing `marker` followed by a space, split into
    /// whitespace-separated `name=value` fields (tokens without `=` are skipped); `None` when
    /// no line has the marker.
    ///
    /// ```
    /// assert!(perf_testkit::ChildResult::parse("x=1", "RESULT").is_none());
    /// ```
    pub fn parse(stdout: &str, marker: &str) -> Option<ChildResult> {
        let tag = format!("{marker} ");
        let line = stdout.lines().find_map(|l| Some(l.split_once(&tag)?.1))?;
        let fields = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(ChildResult {
            line: line.to_owned(),
            fields,
        })
    }

    /// The raw value of a field.
    ///
    /// ```
    /// let r = perf_testkit::ChildResult::parse("R k=v", "R").unwrap();
    /// assert_eq!(r.get("k"), Some("v"));
    /// assert_eq!(r.get("missing"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A field as an integer.
    ///
    /// # Panics
    ///
    /// When the field is missing or not an unsigned integer: the child and its parent disagree,
    /// which is a bug in the test.
    ///
    /// ```
    /// let r = perf_testkit::ChildResult::parse("R n=42", "R").unwrap();
    /// assert_eq!(r.u64("n"), 42);
    /// ```
    pub fn u64(&self, name: &str) -> u64 {
        match self.get(name).map(str::parse) {
            Some(Ok(v)) => v,
            _ => panic!(
                "the child's result has no integer field {name}: {}",
                self.line
            ),
        }
    }
}

/// Runs the ignored test `test` (its full path inside the test binary, e.g.
/// `"l1_memory::memory_child"`) of the current test binary in a child process with `env_var=1`
/// set, and returns the result line it printed after `marker`.
///
/// The child test must return at once when `env_var` is not set, so that running ignored tests
/// on purpose does nothing, and print its result with `println!("{marker} name=value ...")`.
///
/// # Panics
///
/// When the child cannot be spawned, fails, or prints no result line; the panic message carries
/// the child's output.
///
/// ```no_run
/// let r = perf_testkit::run_child_test("area::child_entry", "MY_CHILD", "RESULT");
/// assert!(r.u64("bytes") > 0);
/// ```
pub fn run_child_test(test: &str, env_var: &str, marker: &str) -> ChildResult {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("cannot find the test binary to re-run: {e}"),
    };
    let out = Command::new(exe)
        .args([
            "--exact",
            test,
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(env_var, "1")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot spawn the child test {test}: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child test {test} failed ({}): {stdout}{stderr}",
        out.status
    );
    match ChildResult::parse(&stdout, marker) {
        Some(result) => result,
        None => panic!("child test {test} printed no `{marker}` line: {stdout}{stderr}"),
    }
}
