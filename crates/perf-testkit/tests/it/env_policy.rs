//! The skip-or-fail policy of `redis_url` / `database_url`, checked in child processes so the
//! environment of this test process is never modified.

use std::process::Command;

use perf_testkit::support::free_port;

/// Reruns this test binary on one test (`probe_*` below) with the given environment.
fn run_probe(test: &str, env: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        test,
        "--exact",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ])
    .env_remove("REDIS_URL")
    .env_remove("DATABASE_URL")
    .env_remove("PERFKIT_REQUIRE_SERVICES")
    .env("PERFKIT_TESTKIT_PROBE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Called in a child process: asks for both URLs and prints what came back.
#[test]
#[ignore = "run by the env policy tests in a child process"]
fn probe_urls() {
    if std::env::var_os("PERFKIT_TESTKIT_PROBE").is_none() {
        return;
    }
    println!("redis={:?}", perf_testkit::redis_url());
    println!("database={:?}", perf_testkit::database_url());
}

#[test]
fn unset_urls_skip_with_a_message() {
    let out = run_probe("env_policy::probe_urls", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("redis=None"), "{stdout}");
    assert!(stdout.contains("database=None"), "{stdout}");
    assert!(
        stderr.contains("skipped: env_policy::probe_urls needs Redis (REDIS_URL is not set); run `cargo xtask test`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("needs PostgreSQL (DATABASE_URL is not set)"),
        "{stderr}"
    );
}

#[test]
fn unset_urls_fail_when_services_are_required() {
    let out = run_probe(
        "env_policy::probe_urls",
        &[("PERFKIT_REQUIRE_SERVICES", "1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "REDIS_URL is not set but PERFKIT_REQUIRE_SERVICES=1; run `cargo xtask services up`"
        ),
        "{stderr}"
    );
}

#[test]
fn unreachable_url_skips_or_fails() {
    let port = free_port().unwrap();
    let url = format!("redis://:secret@127.0.0.1:{port}");
    let out = run_probe("env_policy::probe_urls", &[("REDIS_URL", &url)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("not reachable at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "passwords are redacted: {stderr}"
    );

    let out = run_probe(
        "env_policy::probe_urls",
        &[("REDIS_URL", &url), ("PERFKIT_REQUIRE_SERVICES", "1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not reachable at"), "{stderr}");
}

#[test]
fn reachable_url_is_returned() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let out = run_probe(
        "env_policy::probe_urls",
        &[("DATABASE_URL", &url), ("PERFKIT_REQUIRE_SERVICES", "0")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("database=Some({url:?})")),
        "{stdout}"
    );
}
