//! `cargo xtask`: perfkit's developer tasks (services, test, bench, lint, ci) as one binary, so
//! the same steps run on a laptop, in `.ci/run` and in GitHub Actions.

mod postgres;
mod services;
mod tidy;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  services up       find or start Redis and PostgreSQL; prints REDIS_URL=... and DATABASE_URL=...
                    on stdout (so `export $(cargo xtask services up)` works), details on stderr
  services status   show what `up` would use, extensions, and what xtask started (exit 1 if a
                    service is unavailable)
  services down     stop what xtask started (throwaway instances, compose); never a server it found
  test [ARGS...]    services up, then `cargo test --workspace --all-features ARGS...` with
                    REDIS_URL, DATABASE_URL and PERFKIT_REQUIRE_SERVICES=1 exported
  bench [--quick] [FILTER...]
                    services up if possible (groups needing a missing service are skipped), then
                    `cargo run --release -p perfkit-benches --bin perf-bench -- ... --out target/perf-report`
  lint              cargo fmt --check, clippy -D warnings, cargo doc with RUSTDOCFLAGS=-D warnings
  ci                lint, then test
  help              this text (exit status 2, as for an unknown command)

service discovery order (per service):
  1. REDIS_URL / DATABASE_URL from the environment (must be reachable)
  2. servers already listening on 127.0.0.1:6379 / 127.0.0.1:5432
     (skipped when PERFKIT_SERVICES_SKIP_DEFAULT=1)
  3. throwaway instances from local binaries (redis-server, initdb/pg_ctl) under
     target/perfkit-services/, recorded in target/perfkit-services/state.json and reused
  4. `docker compose -f docker-compose.yml up -d --wait` when `docker info` works
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match (command, rest.first().map(String::as_str)) {
        ("services", Some("up")) => services::up_command(),
        ("services", Some("down")) => services::down_command(),
        ("services", Some("status")) => services::status_command(),
        ("test", _) => test(rest),
        ("bench", _) => bench(rest),
        ("lint", _) => lint(),
        ("ci", _) => lint().and_then(|()| test(rest)),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match manifest.parent() {
        Some(root) if root.join("Cargo.toml").is_file() => root.to_path_buf(),
        _ => perf_testkit::support::workspace_root().unwrap_or(manifest),
    }
}

/// `cargo`, as the one that launched us (`$CARGO`) when there is one.
fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs a command with inherited output, echoing it first; an error names the command.
fn run_step(label: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: $ {label}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not run `{label}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{label}` failed ({status})"))
    }
}

fn lint() -> Result<(), String> {
    let started = Instant::now();
    // (label, cargo arguments, extra environment variable)
    type Step<'a> = (&'a str, Vec<&'a str>, Option<(&'a str, &'a str)>);
    let steps: [Step<'_>; 3] = [
        (
            "cargo fmt --all -- --check",
            vec!["fmt", "--all", "--", "--check"],
            None,
        ),
        (
            "cargo clippy --workspace --all-targets --all-features -- -D warnings",
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            None,
        ),
        (
            "RUSTDOCFLAGS='-D warnings' cargo doc --workspace --all-features --no-deps",
            vec!["doc", "--workspace", "--all-features", "--no-deps"],
            Some(("RUSTDOCFLAGS", "-D warnings")),
        ),
    ];
    // Run every step even after a failure: one run shows all problems.
    let mut failures = Vec::new();
    for (label, args, env) in steps {
        let mut cmd = cargo();
        cmd.args(&args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        if let Err(e) = run_step(label, &mut cmd) {
            failures.push(e);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if failures.is_empty() {
        eprintln!("xtask lint: ok (fmt, clippy, doc) in {secs:.1}s");
        Ok(())
    } else {
        eprintln!("xtask lint: FAILED in {secs:.1}s");
        Err(failures.join("; "))
    }
}

/// Totals parsed from libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq)]
struct TestTotals {
    binaries: u32,
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    /// Adds one `test result: ok. 4 passed; 0 failed; 1 ignored; ...` line; ignores others.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        self.binaries += 1;
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

fn test(extra: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let found = services::up_and_report()?;
    let (redis, postgres) = match (found.redis, found.postgres) {
        (Ok(r), Ok(p)) => (r, p),
        (r, p) => {
            let mut problems = Vec::new();
            if let Err(e) = r {
                problems.push(format!("Redis: {e}"));
            }
            if let Err(e) = p {
                problems.push(format!("PostgreSQL: {e}"));
            }
            return Err(format!(
                "services are required for `cargo xtask test`:\n  {}\n{}",
                problems.join("\n  "),
                services::INSTALL_HINT
            ));
        }
    };

    let mut cmd = cargo();
    cmd.arg("test");
    // `--workspace` would override a package selection given by the caller.
    let names_package = extra
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a.starts_with("--package"));
    if !names_package {
        cmd.arg("--workspace");
    }
    cmd.arg("--all-features")
        .args(extra)
        .env(perf_testkit::REDIS_URL_VAR, &redis.url)
        .env(perf_testkit::DATABASE_URL_VAR, &postgres.url)
        .env(perf_testkit::REQUIRE_SERVICES_VAR, "1")
        .stdout(Stdio::piped());
    eprintln!(
        "xtask: $ REDIS_URL={} DATABASE_URL={} PERFKIT_REQUIRE_SERVICES=1 cargo test{} --all-features {}",
        redis.url,
        postgres.url,
        if names_package { "" } else { " --workspace" },
        extra.join(" ")
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not run cargo test: {e}"))?;
    let mut totals = TestTotals::default();
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            totals.add_line(&line);
            let _ = writeln!(out, "{line}");
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo test: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    let verdict = if status.success() { "ok" } else { "FAILED" };
    println!(
        "xtask test: {verdict}. {} passed; {} failed; {} ignored; {} test binaries/doctest runs; \
         Redis: {} ({}); PostgreSQL: {} ({}); {secs:.1}s",
        totals.passed,
        totals.failed,
        totals.ignored,
        totals.binaries,
        redis.source,
        redis.url,
        postgres.source,
        postgres.url,
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
}

fn bench(args: &[String]) -> Result<(), String> {
    let found = services::up_and_report()?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "perfkit-benches",
        "--bin",
        "perf-bench",
        "--",
    ]);
    if !args.iter().any(|a| a == "--out") {
        let out = perf_testkit::support::target_dir().join("perf-report");
        cmd.arg("--out").arg(out);
    }
    cmd.args(args);
    // Do not let a URL from the caller's environment leak through when it was not verified.
    cmd.env_remove(perf_testkit::REDIS_URL_VAR)
        .env_remove(perf_testkit::DATABASE_URL_VAR);
    match &found.redis {
        Ok(r) => {
            cmd.env(perf_testkit::REDIS_URL_VAR, &r.url);
        }
        Err(e) => {
            eprintln!("xtask bench: Redis unavailable, groups needing it will be skipped: {e}")
        }
    }
    match &found.postgres {
        Ok(p) => {
            cmd.env(perf_testkit::DATABASE_URL_VAR, &p.url);
        }
        Err(e) => {
            eprintln!("xtask bench: PostgreSQL unavailable, groups needing it will be skipped: {e}")
        }
    }
    run_step(
        &format!(
            "cargo run --release -p perfkit-benches --bin perf-bench -- {}",
            args.join(" ")
        ),
        &mut cmd,
    )
}

#[cfg(test)]
mod tests {
    use super::TestTotals;

    #[test]
    fn totals_sum_libtest_result_lines() {
        let mut t = TestTotals::default();
        t.add_line("test result: ok. 4 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.02s");
        t.add_line("test foo ... ok");
        t.add_line("test result: FAILED. 6 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.06s");
        assert_eq!(
            t,
            TestTotals {
                binaries: 2,
                passed: 10,
                failed: 2,
                ignored: 1
            }
        );
    }

    #[test]
    fn workspace_root_holds_the_lockfile() {
        assert!(super::workspace_root().join("Cargo.lock").is_file());
    }
}
