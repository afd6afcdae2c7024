//! `TempPostgres`: start, crash (immediate shutdown), restart, each time accepting connections.

use std::process::Command;
use std::time::Duration;

use perf_testkit::support::{find_binary, tcp_reachable};
use perf_testkit::TempPostgres;

/// `pg_isready` against the server, when the tool is installed.
fn pg_isready(port: u16) -> Option<bool> {
    let tool = find_binary("pg_isready")?;
    let status = Command::new(tool)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-t",
            "5",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    Some(status.success())
}

/// Runs one query through `psql`, when installed, and returns its trimmed output.
fn psql(url: &str, sql: &str) -> Option<String> {
    let tool = find_binary("psql")?;
    let out = Command::new(tool)
        .args([url, "-XAtqc", sql])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn start_stop_restart_accepts_connections() {
    let Some(mut pg) = TempPostgres::start_or_skip() else {
        return;
    };
    let port = pg.port();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );
    assert!(pg.is_running());
    assert!(tcp_reachable("127.0.0.1", port, Duration::from_secs(1)));
    assert_ne!(pg_isready(port), Some(false));
    if let Some(one) = psql(&pg.url(), "select 1") {
        assert_eq!(one, "1");
    }
    if pg.has_pg_stat_statements() {
        if let Some(libs) = psql(&pg.url(), "show shared_preload_libraries") {
            assert!(libs.contains("pg_stat_statements"), "{libs}");
        }
    }
    // Data written before a crash survives it (the commit reached the WAL in the OS cache).
    psql(
        &pg.url(),
        "create table survivor(x int); insert into survivor values (42)",
    );

    pg.stop().unwrap();
    assert!(!pg.is_running());
    assert!(!tcp_reachable(
        "127.0.0.1",
        port,
        Duration::from_millis(300)
    ));

    pg.start_again().unwrap();
    assert_eq!(pg.port(), port);
    assert_ne!(pg_isready(port), Some(false));
    if let Some(x) = psql(&pg.url(), "select x from survivor") {
        assert_eq!(x, "42");
    }

    pg.restart().unwrap();
    assert!(tcp_reachable("127.0.0.1", port, Duration::from_secs(1)));

    let data = pg.data_dir().to_path_buf();
    drop(pg);
    assert!(!data.exists(), "drop removes {}", data.display());
    assert!(!tcp_reachable(
        "127.0.0.1",
        port,
        Duration::from_millis(300)
    ));
}
