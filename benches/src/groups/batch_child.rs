//! Child-process entry points of the `batch_*` groups that need a process of their own: the
//! MEMORY_BASED peak-RSS workload (so the bench process's memory does not count), the
//! allocation count (under glibc's allocation trace) and the distributed workers. `perf-bench` re-executes itself with [`CHILD_VAR`] set.

use std::process::{Command, ExitCode};

use super::{batch_alloc, batch_distributed, batch_memory};

/// The variable that turns a `perf-bench` process into a child: `batch_alloc`,
/// `batch_memory` or `batch_worker`. Parameters travel in further `PERFKIT_BENCH_*` variables.
pub(crate) const CHILD_VAR: &str = "PERFKIT_BENCH_CHILD";

/// Runs the requested child role and returns its exit code, or `None` in a normal run.
///
/// ```
/// // Not a child unless PERFKIT_BENCH_CHILD is set.
/// if std::env::var_os("PERFKIT_BENCH_CHILD").is_none() {
///     assert!(perfkit_benches::groups::run_child_if_requested().is_none());
/// }
/// ```
pub fn run_child_if_requested() -> Option<ExitCode> {
    let role = std::env::var(CHILD_VAR).ok()?;
    Some(match role.as_str() {
        "batch_alloc" => batch_alloc::child(),
        "batch_memory" => batch_memory::child(),
        "batch_worker" => batch_distributed::worker(),
        other => {
            eprintln!("perf-bench: unknown child role {other}");
            ExitCode::from(2)
        }
    })
}

/// A command that re-executes this binary as the child `role`.
pub(crate) fn child_command(role: &str) -> Command {
    // A benchmark whose setup fails should stop loudly, not report a figure.
    #[allow(clippy::expect_used)]
    let exe = std::env::current_exe().expect("the path of perf-bench");
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_VAR, role);
    cmd
}

/// A required `PERFKIT_BENCH_*` parameter of a child.
pub(crate) fn param<T: std::str::FromStr>(name: &str) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("perf-bench child: {name} missing or malformed"))
}

/// Runs `cmd` to completion and returns the text after `tag` on the first stdout line that has
/// it; panics with the child's output when it fails.
pub(crate) fn result_line(mut cmd: Command, tag: &str) -> String {
    // A benchmark whose setup fails should stop loudly, not report a figure.
    #[allow(clippy::expect_used)]
    let out = cmd.output().expect("a child perf-bench process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {tag} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| Some(l.split_once(tag)?.1.trim().to_owned()))
        .unwrap_or_else(|| panic!("child printed no {tag} line: {stdout}"))
}

/// The value of `name=value` in a result line.
pub(crate) fn field<T: std::str::FromStr>(line: &str, name: &str) -> T {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}
