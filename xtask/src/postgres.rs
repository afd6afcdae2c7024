//! PostgreSQL chores for `cargo xtask services`, done through `psql` when it is installed:
//! finding a working URL on the default port, creating the `test` database and the
//! `pg_stat_statements` / `hypopg` extensions, and reporting on them.

use std::path::{Path, PathBuf};
use std::process::Command;

use perf_testkit::support::{find_binary, postgres_bin_dir, redact_url};

/// `psql` from `PATH`, else from the PostgreSQL binary directory.
fn psql_binary() -> Option<PathBuf> {
    find_binary("psql").or_else(|| {
        postgres_bin_dir()
            .map(|d| d.join("psql"))
            .filter(|p| p.is_file())
    })
}

/// Runs one statement and returns psql's unaligned, tuples-only output.
fn psql_with(psql: &Path, url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(psql)
        .args(["-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(url)
        .args(["-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let bin = psql_binary().ok_or("psql not found")?;
    psql_with(&bin, url, sql)
}

/// A working URL for the server on 127.0.0.1:5432: users `postgres` then `root`, database
/// `test` then `postgres` (creating `test` there when `create` is set). Without `psql`, the
/// conventional `postgres://postgres@127.0.0.1:5432/test` is assumed.
pub(crate) fn default_port_url(create: bool) -> Result<String, String> {
    let Some(psql) = psql_binary() else {
        return Ok("postgres://postgres@127.0.0.1:5432/test".into());
    };
    let mut errors = Vec::new();
    for db in ["test", "postgres"] {
        for user in ["postgres", "root"] {
            let url = format!("postgres://{user}@127.0.0.1:5432/{db}");
            match psql_with(&psql, &url, "select 1") {
                Ok(_) if db == "test" => return Ok(url),
                Ok(_) => {
                    let test_url = format!("postgres://{user}@127.0.0.1:5432/test");
                    if create && psql_with(&psql, &url, "CREATE DATABASE test").is_ok() {
                        return Ok(test_url);
                    }
                    return Ok(url);
                }
                Err(e) => errors.push(format!("{url}: {}", e.lines().next().unwrap_or(""))),
            }
        }
    }
    Err(format!(
        "PostgreSQL on 127.0.0.1:5432 accepted no login: {}",
        errors.join("; ")
    ))
}

/// Creates database `name` through `admin_url` unless it exists.
pub(crate) fn ensure_database(bin_dir: &Path, admin_url: &str, name: &str) -> Result<(), String> {
    let psql = psql_binary()
        .or_else(|| Some(bin_dir.join("psql")).filter(|p| p.is_file()))
        .ok_or("psql not found; cannot create the test database")?;
    let exists = psql_with(
        &psql,
        admin_url,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    )?;
    if exists != "1" {
        psql_with(&psql, admin_url, &format!("CREATE DATABASE {name}"))?;
    }
    Ok(())
}

/// The Debian package that provides HypoPG for this server's major version.
fn hypopg_package(url: &str) -> String {
    let major = psql(url, "SHOW server_version_num")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(15, |n| n / 10000);
    format!("postgresql-{major}-hypopg")
}

/// `CREATE EXTENSION IF NOT EXISTS` for `pg_stat_statements` and `hypopg`; one line per
/// extension saying what happened.
pub(crate) fn create_extensions(url: &str) -> Vec<String> {
    if psql_binary().is_none() {
        return vec!["extensions: psql not found, not created".into()];
    }
    let mut lines = Vec::new();
    for ext in ["pg_stat_statements", "hypopg"] {
        match psql(url, &format!("CREATE EXTENSION IF NOT EXISTS {ext}")) {
            Ok(_) => lines.push(format!("extension {ext}: created (or already present)")),
            Err(e) => {
                let hint = if ext == "hypopg" {
                    format!(" (install {})", hypopg_package(url))
                } else {
                    " (install postgresql-contrib)".to_string()
                };
                lines.push(format!(
                    "extension {ext}: not created: {}{hint}",
                    e.lines().next().unwrap_or("")
                ));
            }
        }
    }
    lines.extend(preload_line(url));
    lines
}

fn preload_line(url: &str) -> Option<String> {
    let libs = psql(url, "SHOW shared_preload_libraries").ok()?;
    Some(if libs.contains("pg_stat_statements") {
        format!("shared_preload_libraries = '{libs}': pg_stat_statements is preloaded")
    } else {
        format!(
            "shared_preload_libraries = '{libs}': pg_stat_statements is NOT preloaded (its view \
             will error); ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements' and \
             restart the server"
        )
    })
}

/// Availability and installation of the two extensions plus the preload setting, for `status`.
pub(crate) fn extension_report(url: &str) -> Vec<String> {
    if psql_binary().is_none() {
        return vec!["extensions: psql not found, cannot inspect".into()];
    }
    let rows = match psql(
        url,
        "SELECT name || '|' || coalesce(default_version, '') || '|' || \
         coalesce(installed_version, '') FROM pg_available_extensions \
         WHERE name IN ('pg_stat_statements', 'hypopg')",
    ) {
        Ok(rows) => rows,
        Err(e) => {
            return vec![format!(
                "cannot query {}: {}",
                redact_url(url),
                e.lines().next().unwrap_or("")
            )]
        }
    };
    let mut lines = Vec::new();
    for ext in ["pg_stat_statements", "hypopg"] {
        let row = rows
            .lines()
            .map(|l| l.split('|').collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&ext));
        lines.push(match row {
            None => {
                let package = if ext == "hypopg" {
                    hypopg_package(url)
                } else {
                    "postgresql-contrib".into()
                };
                format!("extension {ext}: not available (install {package})")
            }
            Some(cols) => {
                let available = cols.get(1).copied().unwrap_or("");
                match cols.get(2).copied().unwrap_or("") {
                    "" => format!(
                        "extension {ext}: available ({available}), not created in this database"
                    ),
                    installed => {
                        format!("extension {ext}: available ({available}), created ({installed})")
                    }
                }
            }
        });
    }
    lines.extend(preload_line(url));
    lines
}
